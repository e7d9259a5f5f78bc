/**
 * Authenticates management-API requests by bearer access token, in process (no HTTP call to
 * ourselves): opaque tokens are looked up through oidc-provider's own models, JWT access tokens for
 * the management API (audience `<issuer>/v2`) are verified against our signing keys. Tokens bound to
 * another API, mTLS-bound tokens, and tokens of inactive users are refused. A DPoP-bound token is
 * accepted only with the DPoP scheme and a proof for the request (../http/dpop.ts). A user token's
 * scopes are narrowed to the permissions of the user's roles.
 */
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWK } from 'jose';
import type { Context, Next } from 'koa';

import { AppError } from '../errors/app-error.js';
import { presentedToken, type DPoPPresentation } from '../http/dpop.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { DurableStore } from '../store/ports.js';
import type { Principal } from './principal.js';

export const managementAudience = (issuer: string) => `${issuer}/v2`;

interface TokenFacts {
  jti: string;
  clientId: string;
  accountId: string | undefined;
  scope: string | undefined;
  aud: unknown;
  /** The thumbprint of the DPoP key the token is bound to (`cnf.jkt`). */
  jkt: string | undefined;
  /** Bound to a client certificate (mTLS), which nothing here can check. */
  certificateBound: boolean;
  /** Set on tokens minted from an API key. */
  apiKeyId?: string;
  /** When the token expires (ms), if known. */
  expiresAt?: number;
  grantId?: string;
}

/** Who a token stands for, with what a cache of it needs: when it expires, and its grant. */
export interface Authenticated {
  principal: Principal;
  expiresAt: number | undefined;
  grantId: string | undefined;
  /**
   * The DPoP key the token is bound to: such a token may be used only after
   * `DPoPPresentation.check` accepted its proof for the request.
   */
  jkt: string | undefined;
}

/** Reads the bearer token; undefined when there is none. */
export function bearerToken(ctx: Context): string | undefined {
  const header = ctx.get('Authorization');
  if (!header) return undefined;
  const match = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  if (!match)
    throw new AppError('AUTH_TOKEN_INVALID', {
      message: 'The Authorization header must be "Bearer <token>"',
    });
  return match[1];
}

/** What a JWT's `cnf` claim binds the token to. */
function confirmationOf(cnf: unknown): { jkt: string | undefined; certificateBound: boolean } {
  const members = cnf !== null && typeof cnf === 'object' ? (cnf as Record<string, unknown>) : {};
  const jkt = typeof members.jkt === 'string' ? members.jkt : undefined;
  // Any confirmation other than a DPoP key (a certificate, or one we do not know) cannot be checked.
  const others = Object.keys(members).filter((k) => k !== 'jkt');
  return { jkt, certificateBound: others.length > 0 };
}

export class BearerAuthenticator {
  constructor(
    private readonly host: ProviderHost,
    private readonly store: DurableStore,
    private readonly issuer: string,
    /** Whether an API key (by id) may still be used; tokens minted from it follow the key. */
    private readonly apiKeyUsable?: (keyId: string) => Promise<boolean>,
  ) {}

  private async opaque(token: string): Promise<TokenFacts | undefined> {
    const provider = this.host.current;
    const [access, credentials] = await Promise.all([
      provider.AccessToken.find(token),
      provider.ClientCredentials.find(token),
    ]);
    const found = access ?? credentials;
    if (!found || found.isExpired) return undefined;
    return {
      jti: found.jti,
      clientId: found.clientId!,
      accountId: access?.accountId,
      scope: found.scope,
      aud: found.aud,
      jkt: typeof found.jkt === 'string' ? found.jkt : undefined,
      certificateBound: Boolean(found['x5t#S256']),
      apiKeyId: typeof found.extra?.api_key_id === 'string' ? found.extra.api_key_id : undefined,
      expiresAt: typeof found.exp === 'number' ? found.exp * 1000 : undefined,
      grantId: typeof access?.grantId === 'string' ? access.grantId : undefined,
    };
  }

  private async jwt(token: string): Promise<TokenFacts> {
    const keys = this.host.publicJwks() as JWK[];
    try {
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet({ keys }), {
        issuer: this.issuer,
        audience: managementAudience(this.issuer),
        typ: 'at+jwt',
      });
      void protectedHeader;
      return {
        jti: String(payload.jti ?? ''),
        clientId: String(payload.client_id ?? ''),
        accountId: payload.sub && payload.sub !== payload.client_id ? String(payload.sub) : undefined,
        scope: typeof payload.scope === 'string' ? payload.scope : undefined,
        aud: managementAudience(this.issuer),
        ...confirmationOf(payload.cnf),
        expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
      };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new AppError('AUTH_TOKEN_EXPIRED');
      throw new AppError('AUTH_TOKEN_INVALID');
    }
  }

  /** The permissions a user holds through their primary role and linked roles. */
  async permissionsOf(userId: string, primaryRole: string): Promise<Set<string>> {
    const [primary, linked] = await Promise.all([
      this.store.roles.findByName(primaryRole),
      this.store.roles.listForUser(userId),
    ]);
    return new Set([...(primary?.permissions ?? []), ...linked.flatMap((r) => r.permissions)]);
  }

  /**
   * Who a token stands for, with its expiry, grant and DPoP key. A DPoP-bound token is returned
   * too: the caller checks its presentation (DPoPPresentation.check) before using it.
   */
  async authenticateToken(token: string): Promise<Authenticated> {
    const facts = token.split('.').length === 3 ? await this.jwt(token) : await this.opaque(token);
    if (!facts) throw new AppError('AUTH_TOKEN_INVALID');
    if (facts.certificateBound) {
      throw new AppError('AUTH_TOKEN_INVALID', {
        message: 'Certificate-bound (mTLS) tokens are not accepted here',
      });
    }
    if (facts.apiKeyId && this.apiKeyUsable && !(await this.apiKeyUsable(facts.apiKeyId))) {
      throw new AppError('AUTH_TOKEN_INVALID', {
        message: 'The API key of this token was revoked or has expired',
      });
    }
    const audiences = Array.isArray(facts.aud) ? facts.aud : facts.aud === undefined ? [] : [facts.aud];
    if (audiences.length > 0 && !audiences.includes(managementAudience(this.issuer))) {
      throw new AppError('AUTH_TOKEN_INVALID', { message: 'The access token is for another API' });
    }
    // The client must still exist: deleting a client ends its tokens' use here at once.
    const client = await this.host.current.Client.find(facts.clientId);
    if (!client)
      throw new AppError('AUTH_TOKEN_INVALID', { message: 'The client of this token no longer exists' });
    const requested = new Set((facts.scope ?? '').split(' ').filter(Boolean));
    const authenticated = (principal: Principal): Authenticated => ({
      principal,
      expiresAt: facts.expiresAt,
      grantId: facts.grantId,
      jkt: facts.jkt,
    });
    if (!facts.accountId) {
      // A service token carries at most what its client is (now) allowed.
      const allowed = new Set((client.scope ?? '').split(' '));
      return authenticated({
        kind: 'client',
        clientId: facts.clientId,
        userId: undefined,
        scopes: new Set([...requested].filter((s) => allowed.has(s))),
        tokenId: facts.jti,
        apiKeyId: facts.apiKeyId,
      });
    }
    const user = await this.store.users.findById(facts.accountId);
    if (!isActiveUser(user)) throw new AppError('AUTH_TOKEN_INVALID');
    const allowed = await this.permissionsOf(user.id, user.role);
    return authenticated({
      kind: 'user',
      clientId: facts.clientId,
      userId: user.id,
      scopes: new Set([...requested].filter((s) => allowed.has(s))),
      tokenId: facts.jti,
      apiKeyId: facts.apiKeyId,
    });
  }
}

/**
 * Resolves ctx.state.principal when a token is present; remembers (without throwing yet) why a
 * presented token was refused, so the rate limiter can still answer with its headers first.
 */
export function resolvePrincipal(auth: BearerAuthenticator, dpop: DPoPPresentation, issuer: string) {
  return async (ctx: Context, next: Next) => {
    try {
      const presented = presentedToken(ctx);
      if (presented) {
        const found = await auth.authenticateToken(presented.token);
        await dpop.check(presented, found.jkt, {
          proof: ctx.get('DPoP') || undefined,
          method: ctx.method,
          url: `${issuer.replace(/\/+$/, '')}${ctx.path}`,
        });
        ctx.state.principal = found.principal;
      }
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      ctx.state.authError = err;
    }
    await next();
  };
}

/** Requires an authenticated principal holding `scope`. */
export function requireScope(ctx: Context, scope: string | undefined): Principal | undefined {
  if (scope === undefined) return ctx.state.principal as Principal | undefined;
  if (ctx.state.authError) throw ctx.state.authError as AppError;
  const principal = ctx.state.principal as Principal | undefined;
  if (!principal) throw new AppError('AUTH_TOKEN_MISSING');
  if (!principal.scopes.has(scope)) {
    throw new AppError('AUTH_INSUFFICIENT_SCOPE', {
      message: `This operation needs the scope "${scope}"`,
      details: [{ field: 'scope', issue: `Required: ${scope}` }],
      requiredScope: scope,
    });
  }
  return principal;
}
