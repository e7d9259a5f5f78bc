/**
 * OAuth 2.0 Token Exchange (RFC 8693) between this server's own clients: a confidential client hands
 * in a token it received (the subject: one of our access tokens or ID tokens, for a user) and gets an
 * access token for that user, usually for another API, never with more scopes than the subject had.
 *
 * - Impersonation: no actor token; the new token is simply the user's (if the client's policy allows).
 * - Delegation: with an actor token (the acting party's own token); the new token names the actor in
 *   an `act` claim, nesting any actor the subject token already carried (RFC 8693 §4.1).
 *
 * Who may exchange what is a policy in the requesting client's metadata, `token_exchange`:
 *
 *   { "subject_clients": ["spa"],            whose tokens may be handed in ("*": any client's)
 *     "audiences": ["https://orders.example"], registered APIs the new token may be for
 *     "actor_clients": ["svc-b"],            whose tokens may act (default: the requesting client's own)
 *     "impersonation": false }               whether an exchange without actor token is allowed
 *
 * A client needs both the grant type in `grant_types` and the policy. Exchanges are audited through
 * `onExchanged`. The subject may not be sender-constrained (its holder's key is not ours to prove).
 */
import { createLocalJWKSet, decodeJwt, errors as joseErrors, jwtVerify, type JWK } from 'jose';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type Provider from 'oidc-provider';
// oidc-provider's grant helpers (DPoP proof validation, binding, required-proof check) are not part of
// its typed public API, but they are what its own grants use; oidc-provider is pinned in package.json.
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';

import type { ResourceServers } from './resource-servers.js';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPES = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;

export interface TokenExchangePolicy {
  subject_clients: string[];
  audiences?: string[];
  actor_clients?: string[];
  impersonation?: boolean;
}

/** What an exchange produced, for the audit trail. */
export interface TokenExchanged {
  clientId: string;
  accountId: string;
  subjectClientId: string;
  subjectTokenType: string;
  actor?: { sub: string; client_id: string };
  audience?: string;
  scope: string;
  expiresIn: number;
}

export interface TokenExchangeDeps {
  resourceServers: ResourceServers;
  /** The public keys our JWT access tokens are signed with. */
  publicJwks(): JWK[];
  /** Whether the user a token is for may still use it (exists and is active). */
  userActive(accountId: string): Promise<boolean>;
  /** Whether an API key (by id) may still be used: a token minted from one stays tied to it. */
  apiKeyUsable?(keyId: string): Promise<boolean>;
  onExchanged?(exchanged: TokenExchanged): void | Promise<void>;
}

/** A token handed in as subject or actor, as far as an exchange needs to know it. */
interface Presented {
  clientId: string;
  accountId?: string;
  /** Undefined for an ID token (it carries no scope). */
  scope?: Set<string>;
  /** Seconds since the epoch. */
  exp: number;
  act?: Record<string, unknown>;
  apiKeyId?: string;
  bound: boolean;
}

const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/;
const CLIENT_REF = /^(?:\*|[A-Za-z0-9_.:-]{1,128})$/;

/** The client metadata validator's rule for `token_exchange` (oidc-provider's extraClientMetadata). */
export function validateTokenExchangePolicy(value: unknown, metadata: Record<string, unknown>): void {
  const grants = Array.isArray(metadata.grant_types) ? (metadata.grant_types as unknown[]) : [];
  const wantsGrant = grants.includes(TOKEN_EXCHANGE_GRANT);
  if (value === undefined || value === null) {
    if (wantsGrant) {
      throw new errors.InvalidClientMetadata(
        'token_exchange (the policy of which tokens may be exchanged) is required with the token-exchange grant type',
      );
    }
    return;
  }
  if (!wantsGrant) {
    throw new errors.InvalidClientMetadata(
      `token_exchange needs the grant type ${TOKEN_EXCHANGE_GRANT} in grant_types`,
    );
  }
  if (metadata.token_endpoint_auth_method === 'none') {
    throw new errors.InvalidClientMetadata('token_exchange is for confidential clients only');
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new errors.InvalidClientMetadata('token_exchange must be an object');
  }
  const policy = value as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (!['subject_clients', 'audiences', 'actor_clients', 'impersonation'].includes(key)) {
      throw new errors.InvalidClientMetadata(`token_exchange has an unknown member ${key}`);
    }
  }
  const list = (key: string, pattern: RegExp, required: boolean) => {
    const v = policy[key];
    if (v === undefined && !required) return;
    if (
      !Array.isArray(v) ||
      (required && v.length === 0) ||
      v.length > 50 ||
      !v.every((s) => typeof s === 'string' && pattern.test(s))
    ) {
      throw new errors.InvalidClientMetadata(
        `token_exchange.${key} must be ${required ? 'a non-empty' : 'an'} array of at most 50 ${
          key === 'audiences' ? 'API identifiers' : 'client ids (or "*")'
        }`,
      );
    }
  };
  list('subject_clients', CLIENT_REF, true);
  list('actor_clients', CLIENT_REF, false);
  list('audiences', /^[\x21-\x7E]{1,2000}$/, false);
  if (policy.impersonation !== undefined && typeof policy.impersonation !== 'boolean') {
    throw new errors.InvalidClientMetadata('token_exchange.impersonation must be a boolean');
  }
}

const listed = (list: string[] | undefined, clientId: string) =>
  list?.includes('*') || list?.includes(clientId) || false;

const nowS = () => Math.floor(Date.now() / 1000);

function oneValue(ctx: KoaContextWithOIDC, name: string): string | undefined {
  const v = (ctx.oidc.params as Record<string, unknown> | undefined)?.[name];
  if (v === undefined || v === null || v === '') return undefined;
  if (Array.isArray(v)) {
    if (v.length > 1) throw new errors.InvalidTarget(`only one ${name} value is supported`);
    return v[0] === undefined ? undefined : String(v[0]);
  }
  return String(v);
}

async function presentedAccessToken(
  provider: Provider,
  deps: TokenExchangeDeps,
  value: string,
): Promise<Presented | undefined> {
  if (value.split('.').length === 3) {
    try {
      const { payload } = await jwtVerify(value, createLocalJWKSet({ keys: deps.publicJwks() }), {
        issuer: provider.issuer,
        typ: 'at+jwt',
      });
      const clientId = String(payload.client_id ?? '');
      const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
      return {
        clientId,
        accountId: sub && sub !== clientId ? sub : undefined,
        scope: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []),
        exp: Number(payload.exp),
        act: payload.act as Record<string, unknown> | undefined,
        apiKeyId: typeof payload.api_key_id === 'string' ? payload.api_key_id : undefined,
        bound: Boolean(payload.cnf && Object.keys(payload.cnf as object).length),
      };
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return undefined;
      throw err;
    }
  }
  const [access, credentials] = await Promise.all([
    provider.AccessToken.find(value),
    provider.ClientCredentials.find(value),
  ]);
  const found = access ?? credentials;
  if (!found || found.isExpired) return undefined;
  const extra = (found as { extra?: Record<string, unknown> }).extra;
  return {
    clientId: found.clientId!,
    accountId: access?.accountId,
    scope: new Set((found.scope ?? '').split(' ').filter(Boolean)),
    exp: Number(found.exp),
    act: extra?.act as Record<string, unknown> | undefined,
    apiKeyId: typeof extra?.api_key_id === 'string' ? extra.api_key_id : undefined,
    bound: Boolean(found.jkt || found['x5t#S256']),
  };
}

async function presentedIdToken(provider: Provider, value: string): Promise<Presented | undefined> {
  let claims;
  try {
    claims = decodeJwt(value);
  } catch {
    return undefined;
  }
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const clientId = typeof claims.azp === 'string' ? claims.azp : aud[0];
  if (typeof clientId !== 'string') return undefined;
  const client = await provider.Client.find(clientId);
  if (!client) return undefined;
  try {
    await provider.IdToken.validate(value, client);
  } catch {
    return undefined;
  }
  // IdToken.validate is made for id_token_hint and ignores expiry; an exchange must not.
  if (typeof claims.exp !== 'number' || claims.exp <= nowS() || typeof claims.sub !== 'string')
    return undefined;
  return { clientId, accountId: claims.sub, exp: claims.exp, bound: false };
}

async function presented(
  provider: Provider,
  deps: TokenExchangeDeps,
  value: string | undefined,
  type: string | undefined,
  role: 'subject' | 'actor',
): Promise<Presented> {
  if (!value) throw new errors.InvalidRequest(`missing required parameter: ${role}_token`);
  if (!type) throw new errors.InvalidRequest(`missing required parameter: ${role}_token_type`);
  let found: Presented | undefined;
  if (type === TOKEN_TYPES.accessToken) found = await presentedAccessToken(provider, deps, value);
  else if (type === TOKEN_TYPES.idToken) found = await presentedIdToken(provider, value);
  else {
    throw new errors.InvalidRequest(
      `unsupported ${role}_token_type; supported: ${Object.values(TOKEN_TYPES).join(', ')}`,
    );
  }
  if (!found) throw new errors.InvalidRequest(`${role}_token is invalid, expired or revoked`);
  if (found.bound) {
    throw new errors.InvalidRequest(`sender-constrained (DPoP or mTLS) ${role} tokens cannot be exchanged`);
  }
  if (found.accountId && !(await deps.userActive(found.accountId))) {
    throw new errors.InvalidRequest(`the user of the ${role}_token is not active`);
  }
  if (found.apiKeyId && deps.apiKeyUsable && !(await deps.apiKeyUsable(found.apiKeyId))) {
    throw new errors.InvalidRequest(`${role}_token was minted from an API key that is no longer usable`);
  }
  return found;
}

export function registerTokenExchangeGrant(provider: Provider, deps: TokenExchangeDeps): void {
  const helpers = grantHelpers as unknown as {
    validateDpop(
      p: Provider,
      ctx: KoaContextWithOIDC,
    ): Promise<{ thumbprint: string; jti: string } | undefined>;
    checkDpopRequired(p: Provider, ctx: KoaContextWithOIDC, dPoP: unknown): void;
    checkDpopReplay(p: Provider, ctx: KoaContextWithOIDC, dPoP: unknown, clientId: string): Promise<void>;
  };

  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx: KoaContextWithOIDC) => {
      const client = ctx.oidc.client!;
      if (client.clientAuthMethod === 'none') {
        throw new errors.UnauthorizedClient('token exchange is for confidential clients only');
      }
      const policy = client.metadata().token_exchange as TokenExchangePolicy | undefined;
      if (!policy) throw new errors.UnauthorizedClient('this client has no token_exchange policy');
      const params = ctx.oidc.params as Record<string, string | undefined>;

      const requestedType = params.requested_token_type;
      if (requestedType !== undefined && requestedType !== TOKEN_TYPES.accessToken) {
        throw new errors.InvalidRequest(
          `unsupported requested_token_type; only ${TOKEN_TYPES.accessToken} is issued`,
        );
      }

      // Which API the new token is for: `resource` (RFC 8707) or `audience` (RFC 8693), one of them.
      const resource = oneValue(ctx, 'resource');
      const audience = oneValue(ctx, 'audience');
      if (resource && audience && resource !== audience) {
        throw new errors.InvalidTarget('resource and audience name different targets; send one');
      }
      const target = resource ?? audience;
      if (target && !policy.audiences?.includes(target)) {
        throw new errors.InvalidTarget('this client may not exchange tokens for the requested audience');
      }

      const subject = await presented(
        provider,
        deps,
        params.subject_token,
        params.subject_token_type,
        'subject',
      );
      if (!subject.accountId) {
        throw new errors.InvalidRequest('subject_token must be a token for a user');
      }
      if (!listed(policy.subject_clients, subject.clientId)) {
        throw new errors.UnauthorizedClient(
          `this client may not exchange tokens of client ${subject.clientId} (token_exchange.subject_clients)`,
        );
      }

      let actor: Presented | undefined;
      if (params.actor_token !== undefined || params.actor_token_type !== undefined) {
        actor = await presented(provider, deps, params.actor_token, params.actor_token_type, 'actor');
        if (!listed(policy.actor_clients ?? [client.clientId], actor.clientId)) {
          throw new errors.UnauthorizedClient(
            `tokens of client ${actor.clientId} may not act through this client (token_exchange.actor_clients)`,
          );
        }
      } else if (policy.impersonation !== true) {
        throw new errors.UnauthorizedClient(
          'this client may not impersonate (token_exchange.impersonation); send an actor_token to delegate',
        );
      }

      // Down-scoping only: what the subject token carried; an ID token carries no scope, so the
      // client's own registered scopes (for an API: the API scopes granted to the client) bound it.
      const info = target ? await deps.resourceServers.infoFor(target, client, !subject.scope) : undefined;
      const allowed =
        subject.scope ??
        new Set([...(client.scope?.split(' ') ?? []), ...(info ? info.scope.split(' ') : [])]);
      const requested = params.scope ? params.scope.split(' ').filter(Boolean) : undefined;
      for (const scope of requested ?? []) {
        if (!SCOPE_TOKEN.test(scope))
          throw new errors.InvalidScope('scope contains invalid characters', scope);
        if (!allowed.has(scope)) {
          throw new errors.InvalidScope('requested scope exceeds what the subject token carries', scope);
        }
      }
      const apiScopes = info ? new Set(info.scope.split(' ').filter(Boolean)) : undefined;
      if (apiScopes && requested) {
        for (const scope of requested) {
          if (!apiScopes.has(scope))
            throw new errors.InvalidScope('requested scope is not a scope of the target', scope);
        }
      }
      const scope = (requested ?? [...allowed]).filter((s) => !apiScopes || apiScopes.has(s)).join(' ');

      const act = actor
        ? {
            sub: actor.accountId ?? actor.clientId,
            client_id: actor.clientId,
            ...(subject.act ? { act: subject.act } : {}),
          }
        : subject.act;
      const dPoP = await helpers.validateDpop(provider, ctx);

      const remaining = Math.min(subject.exp, actor?.exp ?? Infinity) - nowS();
      if (remaining <= 0) throw new errors.InvalidRequest('subject_token is invalid, expired or revoked');
      const token = new provider.AccessToken({
        client,
        accountId: subject.accountId,
        scope: scope || undefined,
        gty: 'token_exchange',
        extra: {
          ...(act ? { act } : {}),
          ...(subject.apiKeyId ? { api_key_id: subject.apiKeyId } : {}),
        },
      } as never);
      if (info && target) {
        (token as unknown as { resourceServer: unknown }).resourceServer = new provider.ResourceServer(
          target,
          info,
        );
      }
      // Never outlive what it was exchanged from.
      (token as unknown as { expiresIn: number }).expiresIn = Math.min(token.expiration, remaining);
      if (dPoP) {
        await helpers.checkDpopReplay(provider, ctx, dPoP, client.clientId);
        token.setThumbprint('jkt', dPoP.thumbprint);
      }
      helpers.checkDpopRequired(provider, ctx, dPoP);

      ctx.oidc.entity('AccessToken', token);
      const value = await token.save();
      await deps.onExchanged?.({
        clientId: client.clientId,
        accountId: subject.accountId,
        subjectClientId: subject.clientId,
        subjectTokenType: params.subject_token_type!,
        ...(act && actor ? { actor: { sub: String(act.sub), client_id: actor.clientId } } : {}),
        ...(target ? { audience: target } : {}),
        scope,
        expiresIn: token.expiration,
      });
      ctx.body = {
        access_token: value,
        issued_token_type: TOKEN_TYPES.accessToken,
        token_type: token.tokenType,
        expires_in: token.expiration,
        ...(scope ? { scope } : {}),
      };
    },
    [
      'subject_token',
      'subject_token_type',
      'actor_token',
      'actor_token_type',
      'requested_token_type',
      'audience',
      'scope',
      'resource',
    ],
    ['resource', 'audience'],
  );
}
