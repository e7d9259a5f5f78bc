/**
 * LatchkeyClient: typed calls to Latchkey's management API (/v2) and gateway API (/api/v1/auth), with
 * bearer authentication from a fixed token, a callback, or client credentials (a token fetched from
 * the token endpoint and reused until shortly before it expires), and the retries of http.ts.
 */
import { LatchkeyError } from './errors.js';
import { HttpTransport, type FetchLike, type HttpRequest, type RetryOptions } from './http.js';
import { paginate } from './pagination.js';
import type {
  AuthorizeDecision,
  AuthorizeRequest,
  ApiKey,
  BulkCreateOptions,
  BulkResult,
  CreateApiKeyInput,
  CreateRoleInput,
  CreateUserInput,
  DeleteResult,
  IssuedApiKey,
  ListUsersQuery,
  LogMessageInput,
  LogMessageResult,
  Page,
  Plan,
  PlanInput,
  Role,
  RoleSummary,
  SearchUsersQuery,
  TokenResponse,
  UpdateRoleInput,
  UpdateUserInput,
  Usage,
  UsageAdjustment,
  UserPlan,
  User,
  UserInclude,
  VerifyKeyResult,
} from './types.js';

export interface ClientCredentialsOptions {
  clientId: string;
  clientSecret: string;
  /** Space-separated scopes to ask for; default: all the client may have. */
  scope?: string;
  /** RFC 8707 resource indicator, for a token bound to one API. */
  resource?: string;
}

export interface LatchkeyClientOptions extends RetryOptions {
  /** The server's issuer URL, e.g. https://auth.example.com */
  baseUrl: string;
  /** A fixed access token. */
  token?: string;
  /** Called before each request for the access token (it may cache). */
  getToken?: () => Promise<string>;
  /** Fetch and cache a token with the client-credentials grant. */
  clientCredentials?: ClientCredentialsOptions;
  /** Per attempt. Default 10 s. */
  timeoutMs?: number;
  fetch?: FetchLike;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface MutationOptions extends CallOptions {
  /** Sent as `Idempotency-Key`; also makes a POST safe to retry after a network error. */
  idempotencyKey?: string;
}

const enc = encodeURIComponent;

/** Keeps one client-credentials token, refreshing it a little before it expires. */
class ClientCredentialsTokens {
  private cached: { token: string; refreshAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly http: HttpTransport,
    private readonly credentials: ClientCredentialsOptions,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<string> {
    if (this.cached && this.now() < this.cached.refreshAt) return Promise.resolve(this.cached.token);
    this.pending ??= this.fetchToken().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private async fetchToken(): Promise<string> {
    const { clientId, clientSecret, scope, resource } = this.credentials;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scope) form.set('scope', scope);
    if (resource) form.set('resource', resource);
    // RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined and base64-encoded.
    const basic = Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64');
    const started = this.now();
    const { body } = await this.http.request<TokenResponse>({
      method: 'POST',
      path: '/oauth/token',
      form,
      headers: { authorization: `Basic ${basic}` },
      // Asking for a token twice does no harm.
      idempotent: true,
    });
    const lifetimeMs = Math.max(0, (body.expires_in ?? 0) * 1000);
    const margin = Math.min(60_000, lifetimeMs / 10);
    this.cached = { token: body.access_token, refreshAt: started + lifetimeMs - margin };
    return body.access_token;
  }
}

function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

export class LatchkeyClient {
  private readonly http: HttpTransport;
  private readonly tokens: ClientCredentialsTokens | undefined;
  private readonly getToken: (() => Promise<string>) | undefined;

  constructor(options: LatchkeyClientOptions) {
    if (!options.baseUrl) throw new TypeError('LatchkeyClient needs a baseUrl');
    const sources = [options.token, options.getToken, options.clientCredentials].filter(Boolean).length;
    if (sources > 1) throw new TypeError('Give only one of token, getToken and clientCredentials');
    this.http = new HttpTransport(options);
    if (options.clientCredentials) {
      this.tokens = new ClientCredentialsTokens(this.http, options.clientCredentials);
      this.getToken = () => this.tokens!.get();
    } else if (options.getToken) {
      this.getToken = options.getToken;
    } else if (options.token) {
      const token = options.token;
      this.getToken = async () => token;
    }
  }

  /** One call to the management API with the client's bearer token. */
  async request<T>(req: Omit<HttpRequest, 'authorization'>): Promise<T> {
    const authorization = this.getToken
      ? async () => `Bearer ${await this.getToken!()}`
      : async () => undefined;
    try {
      return (await this.http.request<T>({ ...req, authorization })).body;
    } catch (err) {
      // A cached client-credentials token may have been revoked or outlived its signing key: get a
      // new one once and try again.
      if (
        this.tokens &&
        err instanceof LatchkeyError &&
        (err.code === 'AUTH_TOKEN_INVALID' || err.code === 'AUTH_TOKEN_EXPIRED')
      ) {
        this.tokens.invalidate();
        return (await this.http.request<T>({ ...req, authorization })).body;
      }
      throw err;
    }
  }

  /** Walks any cursor-paginated list; see `pagination.ts`. */
  readonly paginate = paginate;

  readonly users = {
    list: (query: ListUsersQuery = {}, options: CallOptions = {}) =>
      this.request<Page<User>>({ method: 'GET', path: '/v2/users', query: { ...query }, ...options }),

    /** Every user matching `query`, page after page by cursor. */
    iterate: (query: Omit<ListUsersQuery, 'cursor' | 'offset'> = {}, options: CallOptions = {}) =>
      paginate((cursor) => this.users.list({ ...query, cursor }, options)),

    search: (query: SearchUsersQuery = {}, options: CallOptions = {}) =>
      this.request<Page<Partial<User> & { id: string }>>({
        method: 'GET',
        path: '/v2/users/search',
        query: {
          limit: query.limit,
          offset: query.offset,
          cursor: query.cursor,
          q: query.q,
          filters: query.filters && JSON.stringify(query.filters),
          sort: query.sort && JSON.stringify(query.sort),
          fields: query.fields && JSON.stringify(query.fields),
        },
        ...options,
      }),

    /** Every search hit, page after page by cursor. */
    iterateSearch: (query: Omit<SearchUsersQuery, 'cursor' | 'offset'> = {}, options: CallOptions = {}) =>
      paginate((cursor) => this.users.search({ ...query, cursor }, options)),

    get: (id: string, options: CallOptions & { include?: UserInclude[] } = {}) =>
      this.request<User>({
        method: 'GET',
        path: `/v2/users/${enc(id)}`,
        query: { include: options.include?.join(',') },
        signal: options.signal,
      }),

    create: (input: CreateUserInput, options: MutationOptions = {}) =>
      this.request<User>({ method: 'POST', path: '/v2/users', json: input, ...options }),

    update: (id: string, patch: UpdateUserInput, options: CallOptions = {}) =>
      this.request<User>({ method: 'PUT', path: `/v2/users/${enc(id)}`, json: patch, ...options }),

    /** Erases the user, or with `softDelete` hides a restorable record. */
    delete: (id: string, options: CallOptions & { softDelete?: boolean } = {}) =>
      this.request<DeleteResult>({
        method: 'DELETE',
        path: `/v2/users/${enc(id)}`,
        query: { soft_delete: options.softDelete ? 'true' : undefined },
        signal: options.signal,
      }),

    restore: (id: string, options: MutationOptions = {}) =>
      this.request<User>({ method: 'POST', path: `/v2/users/${enc(id)}/restore`, ...options }),

    /** Up to 100 users; each gets its own result (or none is created with `fail_on_error`). */
    bulkCreate: (
      users: CreateUserInput[],
      bulkOptions: BulkCreateOptions = {},
      options: MutationOptions = {},
    ) =>
      this.request<BulkResult>({
        method: 'POST',
        path: '/v2/users/bulk',
        json: { users, options: bulkOptions },
        ...options,
      }),
  };

  readonly roles = {
    list: async (options: CallOptions = {}) =>
      (await this.request<{ data: Role[] }>({ method: 'GET', path: '/v2/roles', ...options })).data,

    get: (id: string, options: CallOptions = {}) =>
      this.request<Role>({ method: 'GET', path: `/v2/roles/${enc(id)}`, ...options }),

    create: (input: CreateRoleInput, options: MutationOptions = {}) =>
      this.request<Role>({ method: 'POST', path: '/v2/roles', json: input, ...options }),

    update: (id: string, patch: UpdateRoleInput, options: CallOptions = {}) =>
      this.request<Role>({ method: 'PUT', path: `/v2/roles/${enc(id)}`, json: patch, ...options }),

    /** The user's primary role and linked roles. */
    ofUser: async (userId: string, options: CallOptions = {}) =>
      (
        await this.request<{ data: RoleSummary[] }>({
          method: 'GET',
          path: `/v2/users/${enc(userId)}/roles`,
          ...options,
        })
      ).data,

    /** Links a role to a user; answers the user's roles. Assigning twice changes nothing. */
    assign: async (userId: string, roleId: string, options: CallOptions = {}) =>
      (
        await this.request<{ data: RoleSummary[] }>({
          method: 'POST',
          path: `/v2/users/${enc(userId)}/roles/${enc(roleId)}`,
          idempotent: true,
          ...options,
        })
      ).data,

    remove: async (userId: string, roleId: string, options: CallOptions = {}) =>
      (
        await this.request<{ data: RoleSummary[] }>({
          method: 'DELETE',
          path: `/v2/users/${enc(userId)}/roles/${enc(roleId)}`,
          ...options,
        })
      ).data,
  };

  /** API keys of users (`/v2/users/{id}/api-keys`). */
  readonly apiKeys = this.keyCalls('users');

  /** API keys of service clients (`/v2/clients/{id}/api-keys`). */
  readonly clientApiKeys = this.keyCalls('clients');

  private keyCalls(owners: 'users' | 'clients') {
    const base = (ownerId: string) => `/v2/${owners}/${enc(ownerId)}/api-keys`;
    return {
      /** The answer's `key` is shown only here: store it now. */
      create: (ownerId: string, input: CreateApiKeyInput, options: MutationOptions = {}) =>
        this.request<IssuedApiKey>({ method: 'POST', path: base(ownerId), json: input, ...options }),

      /** Every key of the owner, revoked ones too (with `revoked_at`). */
      list: async (ownerId: string, options: CallOptions = {}) =>
        (await this.request<{ data: ApiKey[] }>({ method: 'GET', path: base(ownerId), ...options })).data,

      get: (ownerId: string, keyId: string, options: CallOptions = {}) =>
        this.request<ApiKey>({ method: 'GET', path: `${base(ownerId)}/${enc(keyId)}`, ...options }),

      /** A new secret for the key; the old one stops working. The new `key` is shown only here. */
      rotate: (ownerId: string, keyId: string, options: MutationOptions = {}) =>
        this.request<IssuedApiKey>({
          method: 'POST',
          path: `${base(ownerId)}/${enc(keyId)}/rotate`,
          ...options,
        }),

      /** The key, and tokens obtained with it, stop working at once. Revoking twice changes nothing. */
      revoke: async (ownerId: string, keyId: string, options: CallOptions = {}): Promise<void> => {
        await this.request<unknown>({ method: 'DELETE', path: `${base(ownerId)}/${enc(keyId)}`, ...options });
      },
    };
  }

  readonly plans = {
    list: async (options: CallOptions = {}) =>
      (await this.request<{ data: Plan[] }>({ method: 'GET', path: '/v2/plans', ...options })).data,

    get: (name: string, options: CallOptions = {}) =>
      this.request<Plan>({ method: 'GET', path: `/v2/plans/${enc(name)}`, ...options }),

    create: (plan: PlanInput, options: MutationOptions = {}) =>
      this.request<Plan>({ method: 'POST', path: '/v2/plans', json: plan, ...options }),

    update: (name: string, patch: Partial<Omit<PlanInput, 'name'>>, options: CallOptions = {}) =>
      this.request<Plan>({ method: 'PUT', path: `/v2/plans/${enc(name)}`, json: patch, ...options }),

    delete: async (name: string, options: CallOptions = {}): Promise<void> => {
      await this.request<unknown>({ method: 'DELETE', path: `/v2/plans/${enc(name)}`, ...options });
    },

    /** Puts a user on a plan. */
    assign: (userId: string, plan: string, options: CallOptions = {}) =>
      this.request<UserPlan>({
        method: 'PUT',
        path: `/v2/users/${enc(userId)}/plan`,
        json: { plan },
        ...options,
      }),
  };

  readonly usage = {
    get: (userId: string, options: CallOptions = {}) =>
      this.request<Usage>({ method: 'GET', path: `/v2/users/${enc(userId)}/usage`, ...options }),

    /** An administrator's adjustment of the remaining quota or credits. */
    set: (userId: string, adjustment: UsageAdjustment, options: CallOptions = {}) =>
      this.request<Usage>({
        method: 'PUT',
        path: `/v2/users/${enc(userId)}/usage`,
        json: adjustment,
        ...options,
      }),
  };

  readonly auth = {
    /** Exchanges an API key for an access token carrying the key's scopes (`POST /v2/auth/token`). */
    token: (apiKey: string, options: CallOptions = {}) =>
      this.http
        .request<TokenResponse>({
          method: 'POST',
          path: '/v2/auth/token',
          json: { api_key: apiKey, grant_type: 'client_credentials' },
          // Asking for a token twice does no harm.
          idempotent: true,
          ...options,
        })
        .then((r) => r.body),

    /** A fresh token for a current one obtained from `token()` (`POST /v2/auth/refresh`). */
    refresh: (accessToken: string, options: CallOptions = {}) =>
      this.http
        .request<TokenResponse>({
          method: 'POST',
          path: '/v2/auth/refresh',
          headers: { authorization: `Bearer ${accessToken}` },
          idempotent: true,
          ...options,
        })
        .then((r) => r.body),
  };

  /**
   * Checks an API key (`POST /api/v1/auth/verify-key`); by default it consumes one unit of the
   * owner's quota, so it is retried after a network error only with `consume: false`.
   */
  async verifyKey(
    apiKey: string,
    options: CallOptions & { consume?: boolean } = {},
  ): Promise<VerifyKeyResult> {
    const consume = options.consume ?? true;
    const { body } = await this.http.request<VerifyKeyResult>({
      method: 'POST',
      path: '/api/v1/auth/verify-key',
      headers: { authorization: `Bearer ${apiKey}` },
      json: { consume },
      idempotent: !consume,
      signal: options.signal,
    });
    return body;
  }

  /** Records usage for an API key (`POST /api/v1/auth/log-message`). */
  async logMessage(
    apiKey: string,
    message: LogMessageInput,
    options: MutationOptions = {},
  ): Promise<LogMessageResult> {
    const { body } = await this.http.request<LogMessageResult>({
      method: 'POST',
      path: '/api/v1/auth/log-message',
      headers: { authorization: `Bearer ${apiKey}` },
      json: message,
      ...options,
    });
    return body;
  }

  /**
   * Asks for a policy decision (`POST /v1/authorize`). With the client's own token it needs the
   * scope `policy:evaluate`; `token` sends another one instead (a user's own token may ask about
   * that user). Decisions are questions, so the call is retried like a read.
   */
  async authorize(
    check: AuthorizeRequest,
    options: CallOptions & { token?: string } = {},
  ): Promise<AuthorizeDecision> {
    return this.decisionCall<AuthorizeDecision>('/v1/authorize', check, options);
  }

  /** Asks up to 100 questions at once (`POST /v1/authorize/batch`); decisions in the same order. */
  async authorizeBatch(
    checks: AuthorizeRequest[],
    options: CallOptions & { token?: string } = {},
  ): Promise<AuthorizeDecision[]> {
    const body = await this.decisionCall<{ results: AuthorizeDecision[] }>(
      '/v1/authorize/batch',
      { requests: checks },
      options,
    );
    return body.results;
  }

  private async decisionCall<T>(
    path: string,
    json: unknown,
    options: CallOptions & { token?: string },
  ): Promise<T> {
    const req = { method: 'POST' as const, path, json, idempotent: true, signal: options.signal };
    if (options.token === undefined) return this.request<T>(req);
    const { body } = await this.http.request<T>({
      ...req,
      headers: { authorization: `Bearer ${options.token}` },
    });
    return body;
  }
}
