/**
 * GET|POST|… /gateway/auth: forward authentication for API gateways (nginx `auth_request`, Traefik
 * ForwardAuth, Envoy `ext_authz` over HTTP). The gateway forwards the request's credentials; we answer
 * 200 with who is calling in X-User-ID, X-User-Email, X-User-Scope and X-Client-ID, 401 with an
 * RFC 6750 challenge when the credentials are missing or unusable, or 403 when a required scope or a
 * Cedar decision says no.
 *
 * Credentials: `Authorization: Bearer <access token>` (a JWT access token is verified locally against
 * our signing keys; an opaque one is looked up in the store), a DPoP-bound access token as
 * `Authorization: DPoP <token>` with the client's `DPoP` proof for the original request (its method
 * and URL as the gateway reports them; ../http/dpop.ts), or an API key (`Authorization: Bearer
 * sk_…` or `X-API-Key`). What to require comes from the gateway's configuration, never from the
 * client: query parameters of the auth URL (`scope`, `audience`, `action`, `resource_type`,
 * `resource_id`) or X-Auth-* headers the gateway adds (Envoy cannot add query parameters). The
 * original request's query string is never read as options.
 *
 * A token's identity is kept in memory for GATEWAY_AUTH_CACHE_TTL_S by the token's SHA-256 (never
 * past the token's expiry); a revocation, a revoked grant or a changed user announced on the event
 * bus drops the entries concerned on every instance.
 */
import Router from '@koa/router';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWK } from 'jose';
import type { Context } from 'koa';

import { bearerChallenges } from '../admin/management-api.js';
import type { Principal } from '../admin/principal.js';
import { AppError } from '../errors/app-error.js';
import { presentedToken, type DPoPPresentation, type PresentedToken } from '../http/dpop.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { ApiKeyService } from '../services/api-keys.js';
import { EVALUATE_SCOPE, type PolicyService } from '../services/policies.js';
import type { EventBus, UserRepository } from '../store/ports.js';

/**
 * The bus channel on which revoked tokens (`{"jti"}`), revoked grants (`{"grant"}`) and changed users
 * (`{"user"}`: suspended, deleted, e-mail changed) are announced.
 */
export const TOKEN_REVOCATIONS_CHANNEL = 'tokens:revoked';

const MAX_ENTRIES = 50_000;
const API_KEY = /^sk_(?:live|test)_/;

export interface ForwardAuthDeps {
  host: ProviderHost;
  users: UserRepository;
  apiKeys: ApiKeyService;
  policies: PolicyService;
  events: EventBus;
  /** Checks how a token is presented: a DPoP-bound one only with its proof. */
  dpop: DPoPPresentation;
  issuer: string;
  /** GATEWAY_AUTH_CACHE_TTL_S in milliseconds; 0 keeps nothing. */
  cacheTtlMs: number;
  /** GATEWAY_RESOURCE_PATTERN: its first capture group in the original URI is the resource id. */
  resourcePattern: RegExp | undefined;
  now?: () => number;
}

/** Who a credential stands for. */
interface Identity {
  userId: string | undefined;
  email: string | undefined;
  clientId: string | undefined;
  scopes: ReadonlySet<string>;
  audiences: readonly string[];
  /** Token id and grant, to drop the entry when either is revoked. */
  jti: string | undefined;
  grantId: string | undefined;
  /** The thumbprint of the DPoP key the token is bound to (`cnf.jkt`). */
  jkt: string | undefined;
  /** When the credential stops being valid (ms), if it does. */
  expiresAt: number | undefined;
  /** Minted from an API key: checked on every request, as the key may be revoked at any moment. */
  fromApiKey?: boolean;
}

interface Options {
  scopes: string[];
  audience: string | undefined;
  action: string | undefined;
  resourceType: string | undefined;
  resourceId: string | undefined;
}

const invalid = (message: string) => new AppError('AUTH_TOKEN_INVALID', { message });

/** The identities of recently seen tokens, by token digest, with indexes for revocation. */
class IdentityCache {
  private readonly entries = new Map<string, { identity: Identity; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  get(digest: string): Identity | undefined {
    const entry = this.entries.get(digest);
    if (!entry) return undefined;
    if (entry.until <= this.now()) {
      this.entries.delete(digest);
      return undefined;
    }
    return entry.identity;
  }

  set(digest: string, identity: Identity): void {
    if (this.ttlMs <= 0 || identity.fromApiKey) return;
    const until = Math.min(this.now() + this.ttlMs, identity.expiresAt ?? Number.POSITIVE_INFINITY);
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(digest, { identity, until });
  }

  /** Drops every entry whose identity matches. */
  drop(matches: (identity: Identity) => boolean): void {
    for (const [digest, entry] of this.entries) if (matches(entry.identity)) this.entries.delete(digest);
  }
}

const digestOf = (token: string) => createHash('sha256').update(token).digest('base64url');

function headerOption(ctx: Context, name: string): string | undefined {
  const value = ctx.get(`X-Auth-${name}`).trim();
  return value === '' ? undefined : value;
}

function queryOption(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  const text = Array.isArray(value) ? value.join(' ') : value;
  return text === undefined || text.trim() === '' ? undefined : text.trim();
}

/** The original request's URI: what the gateway says it was, or the path after /gateway/auth. */
function originalUri(ctx: Context, suffix: string | undefined): string | undefined {
  const forwarded = ctx.get('X-Forwarded-Uri') || ctx.get('X-Original-URI');
  if (forwarded) return forwarded;
  return suffix === undefined ? undefined : `/${suffix}${ctx.querystring ? `?${ctx.querystring}` : ''}`;
}

/** The first of a header's comma-separated values (a proxy chain appends its own). */
function firstValue(ctx: Context, name: string): string | undefined {
  const value = ctx.get(name).split(',')[0]!.trim();
  return value === '' ? undefined : value;
}

/**
 * The URL the client called, for a DPoP proof's `htu`: the scheme and host the gateway reports
 * (X-Forwarded-Proto, X-Forwarded-Host; else this request's own) and the original URI.
 */
function originalUrl(ctx: Context, suffix: string | undefined): string | undefined {
  const uri = originalUri(ctx, suffix);
  const host = firstValue(ctx, 'X-Forwarded-Host') ?? firstValue(ctx, 'Host');
  if (uri === undefined || host === undefined) return undefined;
  if (/^https?:\/\//i.test(uri)) return uri;
  const proto = (firstValue(ctx, 'X-Forwarded-Proto') ?? ctx.protocol).toLowerCase();
  return `${proto}://${host}${uri.startsWith('/') ? '' : '/'}${uri}`;
}

/** The original request's method, as the gateway reports it. */
const originalMethod = (ctx: Context) => (ctx.get('X-Forwarded-Method') || ctx.method).toUpperCase();

/** What a revocation announcement names. */
export interface Revoked {
  jti?: string;
  grant?: string;
  user?: string;
}

export function forwardAuthRouter(
  deps: ForwardAuthDeps,
): Router & { close(): void; forget(revoked: Revoked): void } {
  const now = deps.now ?? Date.now;
  const cache = new IdentityCache(deps.cacheTtlMs, now);
  const forget = (revoked: Revoked) =>
    cache.drop(
      (i) =>
        (revoked.jti !== undefined && i.jti === revoked.jti) ||
        (revoked.grant !== undefined && i.grantId === revoked.grant) ||
        (revoked.user !== undefined && i.userId === revoked.user),
    );
  const unsubscribe = [
    deps.events.subscribe(TOKEN_REVOCATIONS_CHANNEL, (message) => {
      try {
        forget(JSON.parse(message) as Revoked);
      } catch {
        // Not ours to read.
      }
    }),
  ];

  let jwks: { source: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
  const keySet = () => {
    const keys = deps.host.publicJwks() as JWK[];
    const source = keys.map((k) => k.kid).join(' ');
    if (jwks?.source !== source) jwks = { source, set: createLocalJWKSet({ keys }) };
    return jwks.set;
  };

  async function userFacts(userId: string): Promise<string | undefined> {
    const user = await deps.users.findById(userId);
    if (!isActiveUser(user)) throw invalid('The user of this token is not active');
    return user.email;
  }

  async function fromJwt(token: string): Promise<Identity> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keySet(), { issuer: deps.issuer, typ: 'at+jwt' }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new AppError('AUTH_TOKEN_EXPIRED');
      throw invalid('The access token is invalid');
    }
    const cnf = (payload.cnf ?? {}) as Record<string, unknown>;
    // A DPoP key is checked against the proof; any other confirmation (mTLS) cannot be, here.
    if (Object.keys(cnf).some((k) => k !== 'jkt')) {
      throw invalid('Certificate-bound (mTLS) tokens cannot be checked by a gateway');
    }
    const clientId = typeof payload.client_id === 'string' ? payload.client_id : undefined;
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    const userId = sub !== undefined && sub !== clientId ? sub : undefined;
    const aud = payload.aud;
    return {
      userId,
      email: userId ? await userFacts(userId) : undefined,
      clientId,
      scopes: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []),
      audiences: Array.isArray(aud) ? aud.map(String) : typeof aud === 'string' ? [aud] : [],
      jti: typeof payload.jti === 'string' ? payload.jti : undefined,
      grantId: undefined,
      jkt: typeof cnf.jkt === 'string' ? cnf.jkt : undefined,
      expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
    };
  }

  async function fromOpaque(token: string): Promise<Identity> {
    const provider = deps.host.current;
    const [access, credentials] = await Promise.all([
      provider.AccessToken.find(token),
      provider.ClientCredentials.find(token),
    ]);
    const found = access ?? credentials;
    if (!found || found.isExpired) throw invalid('The access token is invalid, expired or revoked');
    if (found['x5t#S256']) {
      throw invalid('Certificate-bound (mTLS) tokens cannot be checked by a gateway');
    }
    const apiKeyId = found.extra?.api_key_id;
    if (typeof apiKeyId === 'string' && !(await deps.apiKeys.usable(apiKeyId))) {
      throw invalid('The API key of this token was revoked or has expired');
    }
    const userId = access?.accountId;
    const aud = found.aud as unknown;
    return {
      userId,
      email: userId ? await userFacts(userId) : undefined,
      clientId: found.clientId,
      scopes: new Set((found.scope ?? '').split(' ').filter(Boolean)),
      audiences: Array.isArray(aud) ? aud.map(String) : typeof aud === 'string' ? [aud] : [],
      jti: found.jti,
      grantId: access?.grantId,
      jkt: typeof found.jkt === 'string' ? found.jkt : undefined,
      fromApiKey: typeof apiKeyId === 'string',
      expiresAt: typeof found.exp === 'number' ? found.exp * 1000 : undefined,
    };
  }

  async function fromApiKey(key: string, ip: string): Promise<Identity> {
    try {
      const { key: record, owner } = await deps.apiKeys.verify(key, ip);
      return {
        userId: owner.type === 'user' ? owner.id : undefined,
        email: owner.email ?? undefined,
        clientId: owner.type === 'client' ? owner.id : undefined,
        scopes: new Set(record.scopes),
        audiences: [],
        jti: undefined,
        grantId: undefined,
        jkt: undefined,
        expiresAt: record.expires_at?.getTime(),
      };
    } catch (err) {
      // A key that is unknown, revoked or expired is an unusable credential: 401 with a challenge.
      if (err instanceof AppError && err.status === 401) throw invalid(err.message);
      throw err;
    }
  }

  /** The presented token's identity, from the cache when it was seen recently. */
  async function tokenIdentity(token: string): Promise<Identity> {
    const digest = digestOf(token);
    const cached = cache.get(digest);
    if (cached) return cached;
    const identity = token.split('.').length === 3 ? await fromJwt(token) : await fromOpaque(token);
    cache.set(digest, identity);
    return identity;
  }

  /** The presented credential's identity; a token's presentation (DPoP proof) checked every time. */
  async function identify(ctx: Context, suffix: string | undefined): Promise<Identity> {
    const presented: PresentedToken | undefined = presentedToken(ctx);
    const apiKeyHeader = ctx.get('X-API-Key').trim();
    if (!presented && !apiKeyHeader) throw new AppError('AUTH_TOKEN_MISSING');
    if (!presented) return fromApiKey(apiKeyHeader, ctx.ip);
    // API keys are checked on every request: the key service keeps its own cache and quota state.
    if (presented.scheme === 'bearer' && API_KEY.test(presented.token)) {
      return fromApiKey(presented.token, ctx.ip);
    }
    const identity = await tokenIdentity(presented.token);
    await deps.dpop.check(presented, identity.jkt, {
      proof: ctx.get('DPoP') || undefined,
      method: originalMethod(ctx),
      url: originalUrl(ctx, suffix),
    });
    return identity;
  }

  function optionsOf(ctx: Context, suffix: string | undefined): Options {
    // With the path form (Envoy), the query string is the client's own: options come from headers only.
    const fromQuery = suffix === undefined;
    const option = (query: string, header: string) =>
      headerOption(ctx, header) ?? (fromQuery ? queryOption(ctx, query) : undefined);
    const scopes = (option('scope', 'Scope') ?? '').split(/[\s,]+/).filter(Boolean);
    const resourceType = option('resource_type', 'Resource-Type');
    let resourceId = option('resource_id', 'Resource-Id');
    if (resourceType !== undefined && resourceId === undefined && deps.resourcePattern) {
      const uri = originalUri(ctx, suffix);
      const path = uri?.split('?')[0];
      const match = path === undefined ? null : deps.resourcePattern.exec(path);
      if (match?.[1] !== undefined) resourceId = decodeURIComponent(match[1]);
    }
    return {
      scopes,
      audience: option('audience', 'Audience'),
      action: option('action', 'Action'),
      resourceType,
      resourceId,
    };
  }

  async function check(identity: Identity, options: Options, ctx: Context, suffix: string | undefined) {
    if (options.audience !== undefined && !identity.audiences.includes(options.audience)) {
      throw invalid(`The access token is not for ${options.audience}`);
    }
    const missing = options.scopes.filter((s) => !identity.scopes.has(s));
    if (missing.length > 0) {
      throw new AppError('AUTH_INSUFFICIENT_SCOPE', {
        message: `The credential lacks the scope ${missing.join(' ')}`,
        requiredScope: options.scopes.join(' '),
      });
    }
    if (options.action === undefined) return;
    if (options.resourceType === undefined || options.resourceId === undefined) {
      throw new AppError('ACCESS_DENIED', { message: 'The request names no resource for the policy check' });
    }
    const principal = identity.userId
      ? { type: 'User', id: identity.userId }
      : { type: 'Client', id: identity.clientId ?? '' };
    const uri = originalUri(ctx, suffix);
    const asker: Principal = {
      kind: 'client',
      clientId: 'gateway',
      userId: undefined,
      scopes: new Set([EVALUATE_SCOPE]),
      tokenId: '',
      apiKeyId: undefined,
    };
    const [decision] = await deps.policies.authorize(
      [
        {
          principal,
          action: { type: 'Action', id: options.action },
          resource: { type: options.resourceType, id: options.resourceId },
          context: {
            method: originalMethod(ctx),
            path: uri?.split('?')[0] ?? '',
            ip: ctx.ip,
          },
        },
      ],
      asker,
    );
    if (decision?.decision !== 'Allow') {
      throw new AppError('ACCESS_DENIED', {
        message: `The policies do not allow ${options.action} on ${options.resourceType}::"${options.resourceId}"`,
      });
    }
  }

  const router = new Router();
  router.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    await next();
  });
  router.use(bearerChallenges(deps.issuer));
  const handle = async (ctx: Context, suffix: string | undefined) => {
    const options = optionsOf(ctx, suffix);
    const identity = await identify(ctx, suffix);
    await check(identity, options, ctx, suffix);
    if (identity.userId) ctx.set('X-User-ID', identity.userId);
    if (identity.email) ctx.set('X-User-Email', identity.email);
    ctx.set('X-User-Scope', [...identity.scopes].join(' '));
    if (identity.clientId) ctx.set('X-Client-ID', identity.clientId);
    ctx.status = 200;
    ctx.body = '';
  };
  router.all('/gateway/auth', (ctx) => handle(ctx, undefined));
  // Envoy's ext_authz appends the original path to the configured prefix.
  router.all('/gateway/auth/*rest', (ctx) => {
    const rest = (ctx.params as Record<string, unknown>).rest;
    return handle(ctx, Array.isArray(rest) ? rest.join('/') : String(rest ?? ''));
  });

  return Object.assign(router, {
    /** Drops at once what this instance knows of a revoked token, grant or changed user. */
    forget,
    close: () => {
      for (const stop of unsubscribe) stop();
    },
  });
}
