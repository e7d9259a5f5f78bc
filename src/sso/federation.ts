/**
 * Signing in through an upstream OpenID provider: the authorization request (code + PKCE, state,
 * nonce) toward the connection's issuer, and the callback that validates what comes back
 * (openid-client: ID token signature, issuer, audience, nonce, expiry), fetches userinfo when the
 * ID token lacks mapped claims, and finds, links or provisions the local user.
 *
 * The state is an artifact (any instance may receive the callback) taken once: a counter whose
 * first increment wins makes the take atomic on every backend, then the artifact is destroyed.
 */
import { randomBytes } from 'node:crypto';

import * as oidc from 'openid-client';

import { AppError } from '../errors/app-error.js';
import type { AuditService, RequestFacts } from '../services/audit.js';
import type { UserService, Context as UserContext } from '../services/users.js';
import { StoreConflictError } from '../store/errors.js';
import {
  SSO_PROVIDERS,
  type ArtifactStore,
  type CounterStore,
  type DurableStore,
  type JsonObject,
  type SsoConnection,
  type User,
} from '../store/ports.js';
import { protocolOf, type SsoConnections } from './connections.js';
import { rememberIdp } from './last-idp.js';
import { upstreamFetch, type UpstreamHttpOptions } from './upstream-fetch.js';

export const STATE_MODEL = 'SsoState';
const STATE_TTL_S = 600;
const CONFIG_TTL_MS = 5 * 60_000;

/** Why an upstream sign-in was refused; each has its own message on the error page. */
export type FederationFailure =
  | 'unknown_connection'
  | 'disabled'
  | 'unsupported'
  | 'no_sign_in'
  | 'state'
  | 'upstream_error'
  | 'discovery'
  | 'validation'
  | 'no_email'
  | 'foreign_domain'
  | 'not_provisioned'
  | 'inactive'
  | 'idp_initiated';

export class FederationError extends Error {
  override readonly name = 'FederationError';
  constructor(
    readonly reason: FederationFailure,
    message: string,
    readonly connectionId?: string,
  ) {
    super(message);
  }
}

interface StoredState {
  [key: string]: unknown;
  connection_id: string;
  interaction_uid: string;
  code_verifier: string;
  nonce: string;
}

export interface FederationOptions {
  issuer: string;
  http: UpstreamHttpOptions;
  sessionTtlS: number;
}

/** What the callback hands to the interaction: the user and how they signed in. */
export interface FederatedSignIn {
  user: User;
  connection: SsoConnection;
  interactionUid: string;
  created: boolean;
  linked: boolean;
}

const domainOf = (email: string) => email.slice(email.lastIndexOf('@') + 1).toLowerCase();
const claimText = (v: unknown) => (typeof v === 'string' ? v.trim() : typeof v === 'number' ? String(v) : '');

/** An openid-client error with its causes (which name the failed check, e.g. the `nonce` claim). */
function describe(err: unknown): string {
  const parts: string[] = [];
  let current = err as { message?: unknown; code?: unknown; cause?: unknown; claim?: unknown } | undefined;
  for (let depth = 0; current && typeof current === 'object' && depth < 4; depth += 1) {
    if (typeof current.message === 'string') parts.push(current.message);
    if (typeof current.claim === 'string') parts.push(`claim ${current.claim}`);
    current = current.cause as typeof current;
  }
  return [...new Set(parts)].join('; ');
}

export class Federation {
  private readonly configs = new Map<
    string,
    { at: number; key: string; config: Promise<oidc.Configuration> }
  >();
  private readonly fetch: ReturnType<typeof upstreamFetch>;

  constructor(
    private readonly store: DurableStore,
    private readonly artifacts: ArtifactStore,
    private readonly counters: CounterStore,
    readonly connections: SsoConnections,
    private readonly users: UserService,
    private readonly audit: AuditService,
    private readonly options: FederationOptions,
  ) {
    this.fetch = upstreamFetch(options.http);
  }

  redirectUri(connection: SsoConnection): string {
    return `${this.options.issuer}/sso/oidc/${connection.id}/callback`;
  }

  /**
   * The connection named in a URL: its id, one of its domains, or a provider name (`okta`) when
   * exactly one enabled connection is of that provider (shared/API.md's /sso/login/{provider}).
   */
  async find(ref: string): Promise<SsoConnection> {
    const connection =
      (await this.store.ssoConnections.findById(ref)) ??
      (await this.store.ssoConnections.findByDomain(ref.toLowerCase())) ??
      (await this.byProvider(ref));
    if (!connection) throw new FederationError('unknown_connection', 'no such connection');
    if (!connection.enabled)
      throw new FederationError('disabled', 'the connection is disabled', connection.id);
    return connection;
  }

  /** The connection named in a URL, which must speak OpenID Connect to its IdP. */
  private async findOidc(ref: string): Promise<SsoConnection> {
    const connection = await this.find(ref);
    if (protocolOf(connection) !== 'oidc') {
      throw new FederationError('unsupported', 'this is not an OpenID Connect connection', connection.id);
    }
    return connection;
  }

  private async byProvider(ref: string): Promise<SsoConnection | null> {
    if (!(SSO_PROVIDERS as readonly string[]).includes(ref)) return null;
    const matching = (await this.store.ssoConnections.list()).filter((c) => c.enabled && c.provider === ref);
    return matching.length === 1 ? matching[0]! : null;
  }

  private configFor(connection: SsoConnection): Promise<oidc.Configuration> {
    const key = `${connection.updated_at.getTime()}`;
    const cached = this.configs.get(connection.id);
    if (cached && cached.key === key && Date.now() - cached.at < CONFIG_TTL_MS) return cached.config;
    const secret = this.connections.clientSecret(connection);
    const insecure = this.options.http.allowHttp && connection.issuer!.startsWith('http:');
    const config = oidc
      .discovery(
        new URL(connection.issuer!),
        connection.client_id!,
        { redirect_uris: [this.redirectUri(connection)], response_types: ['code'] },
        secret ? oidc.ClientSecretPost(secret) : oidc.None(),
        {
          [oidc.customFetch]: this.fetch as unknown as oidc.CustomFetch,
          timeout: Math.ceil(this.options.http.timeoutMs / 1000),
          ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
        },
      )
      .catch((err: unknown) => {
        this.configs.delete(connection.id);
        throw new FederationError('discovery', `discovery failed: ${describe(err)}`, connection.id);
      });
    this.configs.set(connection.id, { at: Date.now(), key, config });
    return config;
  }

  /** The upstream authorization URL for the interaction `interactionUid`; stores the state. */
  async start(connection: SsoConnection, interactionUid: string, loginHint?: string): Promise<string> {
    if (protocolOf(connection) !== 'oidc') throw new FederationError('unsupported', 'not an OIDC connection');
    const config = await this.configFor(connection);
    const state = randomBytes(24).toString('base64url');
    const nonce = oidc.randomNonce();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const stored: StoredState = {
      connection_id: connection.id,
      interaction_uid: interactionUid,
      code_verifier: codeVerifier,
      nonce,
    };
    await this.artifacts.adapterFor(STATE_MODEL).upsert(state, stored, STATE_TTL_S);
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri(connection),
      scope: (connection.scopes.length > 0 ? connection.scopes : ['openid']).join(' '),
      response_type: 'code',
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(loginHint ? { login_hint: loginHint } : {}),
    });
    return url.href;
  }

  /** Takes the stored state once, on any instance: a second take (a replay) finds nothing. */
  private async takeState(state: string): Promise<StoredState | null> {
    if (!state || state.length > 200) return null;
    const adapter = this.artifacts.adapterFor(STATE_MODEL);
    const stored = (await adapter.find(state)) as StoredState | undefined;
    if (!stored || typeof stored.interaction_uid !== 'string') return null;
    const taken = await this.counters.increment(`sso-state-used:${state}`, STATE_TTL_S);
    if (taken.value !== 1) return null;
    await adapter.destroy(state);
    return stored;
  }

  /**
   * The callback: validates the upstream answer and resolves the local user. `query` is the
   * callback's query string.
   */
  async callback(connectionRef: string, query: string, request: RequestFacts): Promise<FederatedSignIn> {
    const params = new URLSearchParams(query);
    const stored = await this.takeState(params.get('state') ?? '');
    if (!stored) throw new FederationError('state', 'unknown, expired or used state');
    const connection = await this.findOidc(connectionRef);
    if (stored.connection_id !== connection.id) {
      throw new FederationError('state', 'the state belongs to another connection', connection.id);
    }
    const fail = async (reason: FederationFailure, message: string): Promise<never> => {
      await this.recordFailure(connection, reason, message, request);
      throw new FederationError(reason, message, connection.id);
    };
    if (params.has('error')) {
      return fail(
        'upstream_error',
        `the identity provider answered ${params.get('error')}: ${params.get('error_description') ?? ''}`.trim(),
      );
    }
    let config: oidc.Configuration;
    try {
      config = await this.configFor(connection);
    } catch (err) {
      return fail('discovery', (err as Error).message);
    }
    const current = new URL(this.redirectUri(connection));
    current.search = params.toString();
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: stored.code_verifier,
        expectedState: params.get('state')!,
        expectedNonce: stored.nonce,
        idTokenExpected: true,
      });
      claims = { ...(tokens.claims() ?? {}) };
      const mapped = Object.values(connection.attribute_mapping);
      const wanted = ['email', ...mapped.filter((c) => !c.includes('/'))];
      if (wanted.some((c) => claims[c] === undefined) && config.serverMetadata().userinfo_endpoint) {
        const info = await oidc.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        claims = { ...info, ...claims };
      }
    } catch (err) {
      if (err instanceof FederationError) throw err;
      return fail('validation', `the identity provider's answer was refused: ${describe(err)}`);
    }
    return this.complete(connection, claims, stored.interaction_uid, request);
  }

  /**
   * What every protocol does with a validated upstream answer (OIDC claims, or a SAML assertion's
   * attributes with `sub` its NameID): finds, links or provisions the user through the connection's
   * rules and mapping, remembers the connection for the `idp` claim, and audits the outcome
   * (`sso.login`, or `sso.login_failed` with the reason before the FederationError is thrown).
   */
  async complete(
    connection: SsoConnection,
    claims: Record<string, unknown>,
    interactionUid: string,
    request: RequestFacts,
  ): Promise<FederatedSignIn> {
    try {
      const resolved = await this.resolveUser(connection, claims, request);
      await rememberIdp(this.artifacts, resolved.user.id, connection.id, this.options.sessionTtlS);
      await this.audit.record({
        actor_type: 'user',
        actor_id: resolved.user.id,
        actor_client_id: null,
        action: 'sso.login',
        target_type: 'sso_connection',
        target_id: connection.id,
        request,
        details: { subject: String(claims.sub), created: resolved.created, linked: resolved.linked },
      });
      return { ...resolved, connection, interactionUid };
    } catch (err) {
      if (err instanceof FederationError) {
        await this.recordFailure(connection, err.reason, err.message, request);
        throw new FederationError(err.reason, err.message, connection.id);
      }
      throw err;
    }
  }

  /** Records a refusal of an upstream answer in the audit trail (`sso.login_failed`). */
  async recordFailure(
    connection: SsoConnection,
    reason: FederationFailure,
    message: string,
    request: RequestFacts,
  ): Promise<void> {
    await this.audit.record({
      actor_type: 'system',
      actor_id: `sso:${connection.id}`,
      actor_client_id: null,
      action: 'sso.login_failed',
      target_type: 'sso_connection',
      target_id: connection.id,
      request,
      details: { reason, message },
    });
  }

  /** Records a refusal before the callback (discovery at the start) in the audit trail. */
  async refusedAtStart(
    connection: SsoConnection,
    err: FederationError,
    request: RequestFacts,
  ): Promise<void> {
    await this.recordFailure(connection, err.reason, err.message, request);
  }

  /** Our fields from the upstream claims, through the connection's attribute mapping. */
  private mapped(connection: SsoConnection, claims: Record<string, unknown>) {
    const m = connection.attribute_mapping;
    const email = claimText(claims[m.email ?? 'email']);
    const first = claimText(claims[m.first_name ?? 'given_name']);
    const last = claimText(claims[m.last_name ?? 'family_name']);
    const metadata: JsonObject = {};
    for (const [field, claim] of Object.entries(m)) {
      if (!field.startsWith('metadata.')) continue;
      const value = claims[claim];
      if (value !== undefined) metadata[field.slice('metadata.'.length)] = value as JsonObject[string];
    }
    const verified = claims.email_verified === true || claims.email_verified === 'true';
    return { email, first_name: first, last_name: last, metadata, verified };
  }

  private contextFor(connection: SsoConnection, request: RequestFacts): UserContext {
    return {
      actor: { actor_type: 'system', actor_id: `sso:${connection.id}`, actor_client_id: null },
      request,
      grants: 'all',
    };
  }

  private async resolveUser(
    connection: SsoConnection,
    claims: Record<string, unknown>,
    request: RequestFacts,
  ): Promise<{ user: User; created: boolean; linked: boolean }> {
    const subject = claimText(claims.sub);
    if (!subject) throw new FederationError('validation', "the identity provider's answer names no subject");
    const fields = this.mapped(connection, claims);
    const context = this.contextFor(connection, request);
    const identity = await this.store.ssoConnections.findIdentity(connection.id, subject);
    if (identity) {
      const user = await this.store.users.findById(identity.user_id);
      if (!user || user.status !== 'active')
        throw new FederationError('inactive', 'the linked user is not active');
      return { user: await this.refresh(user, fields, context), created: false, linked: false };
    }
    if (!fields.email) throw new FederationError('no_email', 'the identity provider sent no e-mail address');
    if (!connection.domains.includes(domainOf(fields.email))) {
      throw new FederationError(
        'foreign_domain',
        `the e-mail domain ${domainOf(fields.email)} is not one of the connection's`,
      );
    }
    const existing = await this.store.users.findByEmail(fields.email);
    if (existing) {
      // Linking only by an address the IdP vouches for, in the connection's own domain (checked above).
      if (!fields.verified) {
        throw new FederationError(
          'not_provisioned',
          'an account with this address exists, and the identity provider did not assert the address verified',
        );
      }
      if (existing.status !== 'active' || existing.deleted_at)
        throw new FederationError('inactive', 'the user is not active');
      await this.link(connection, subject, existing.id);
      return { user: await this.refresh(existing, fields, context), created: false, linked: true };
    }
    if (!connection.auto_provision) {
      throw new FederationError(
        'not_provisioned',
        'no account for this address and the connection does not provision',
      );
    }
    const user = await this.provision(connection, fields, context);
    await this.link(connection, subject, user.id);
    return { user, created: true, linked: true };
  }

  /** Creates the user through the user service (user.created, audit), or says why it cannot be. */
  private async provision(
    connection: SsoConnection,
    fields: ReturnType<Federation['mapped']>,
    context: UserContext,
  ): Promise<User> {
    try {
      return await this.users.create(
        {
          email: fields.email,
          first_name: fields.first_name,
          last_name: fields.last_name,
          ...(connection.default_role ? { role: connection.default_role } : {}),
          email_verified: fields.verified,
          metadata: fields.metadata,
        },
        context,
      );
    } catch (err) {
      // A soft-deleted user keeps the address; a look-alike address is refused as on sign-up.
      if (err instanceof AppError && ['USER_ALREADY_EXISTS', 'CONFUSABLE_EMAIL'].includes(err.code)) {
        throw new FederationError('not_provisioned', `the account cannot be created: ${err.code}`);
      }
      throw err;
    }
  }

  private async link(connection: SsoConnection, subject: string, userId: string): Promise<void> {
    try {
      await this.store.ssoConnections.linkIdentity({
        connection_id: connection.id,
        subject,
        user_id: userId,
      });
    } catch (err) {
      // A parallel first sign-in of the same person linked it already.
      if (!(err instanceof StoreConflictError)) throw err;
    }
  }

  /** Attribute updates on each sign-in: the names and mapped metadata as the IdP now has them. */
  private async refresh(
    user: User,
    fields: ReturnType<Federation['mapped']>,
    context: UserContext,
  ): Promise<User> {
    const patch: {
      first_name?: string;
      last_name?: string;
      metadata?: JsonObject;
      email_verified?: boolean;
    } = {};
    if (fields.first_name && fields.first_name !== user.first_name) patch.first_name = fields.first_name;
    if (fields.last_name && fields.last_name !== user.last_name) patch.last_name = fields.last_name;
    const changedMeta = Object.entries(fields.metadata).filter(
      ([k, v]) => JSON.stringify(user.metadata[k]) !== JSON.stringify(v),
    );
    if (changedMeta.length > 0) patch.metadata = { ...user.metadata, ...Object.fromEntries(changedMeta) };
    if (fields.verified && !user.email_verified && fields.email.toLowerCase() === user.email.toLowerCase()) {
      patch.email_verified = true;
    }
    if (Object.keys(patch).length === 0) return user;
    return this.users.update(user.id, patch, context);
  }
}
