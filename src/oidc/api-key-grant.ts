/**
 * Access tokens for API keys, minted by oidc-provider's own models so they are ordinary tokens:
 * stored like any other, introspectable, revocable (RFC 7009), accepted by /v2. Two ways in:
 *
 * - the token endpoint, with the grant type `urn:latchkey:params:oauth:grant-type:api-key` and an
 *   `api_key` parameter (the public client `latchkey-api-keys`, or any client allowed that grant);
 * - POST /v2/auth/token, which calls issueApiKeyToken directly.
 *
 * A user's key yields an access token for the user (accountId) through the `latchkey-api-keys`
 * client; a service client's key yields a client-credentials token of that client. Either carries
 * the key's scopes and `extra.api_key_id`, so revoking the key ends its tokens' use at once
 * (introspection and /v2 check the key).
 */
import { errors, type ClientMetadata, type KoaContextWithOIDC } from 'oidc-provider';
import type Provider from 'oidc-provider';

import { AppError } from '../errors/app-error.js';
import type { VerifiedKey } from '../services/api-keys.js';

export const API_KEY_CLIENT_ID = 'latchkey-api-keys';
export const API_KEY_GRANT_TYPE = 'urn:latchkey:params:oauth:grant-type:api-key';

export interface ApiKeyTokenDeps {
  verify(key: string, ip: string): Promise<VerifiedKey>;
  /** Whether the key a token was minted from may still be used. */
  usable(keyId: string): Promise<boolean>;
  tokenTtlS: number;
  onIssued?(verified: VerifiedKey, token: IssuedToken): void | Promise<void>;
}

export interface IssuedToken {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  /** The token's identifier in the artifact store (for the audit trail; not a credential for JWTs). */
  jti: string;
}

/** The static public client API keys are exchanged through. */
export function apiKeyClient(): ClientMetadata {
  return {
    client_id: API_KEY_CLIENT_ID,
    client_name: 'API keys',
    token_endpoint_auth_method: 'none',
    grant_types: [API_KEY_GRANT_TYPE],
    response_types: [],
    redirect_uris: [],
    first_party: true,
  };
}

export async function issueApiKeyToken(
  provider: Provider,
  verified: VerifiedKey,
  ttlS: number,
): Promise<IssuedToken> {
  const { key, owner } = verified;
  const scope = key.scopes.join(' ');
  const extra = { api_key_id: key.id };
  // A token never outlives its key.
  const expiresIn = key.expires_at
    ? Math.max(1, Math.min(ttlS, Math.floor((key.expires_at.getTime() - Date.now()) / 1000)))
    : ttlS;
  let token;
  if (owner.type === 'user') {
    const client = await provider.Client.find(API_KEY_CLIENT_ID);
    if (!client) throw new Error('the API key client is not registered');
    token = new provider.AccessToken({
      client,
      accountId: owner.id,
      scope,
      expiresIn,
      gty: API_KEY_GRANT_TYPE,
      extra,
    } as never);
  } else {
    const client = await provider.Client.find(owner.id);
    if (!client) throw new AppError('API_KEY_INVALID');
    token = new provider.ClientCredentials({ client, scope, expiresIn, extra } as never);
  }
  const value = await token.save();
  return { access_token: value, token_type: 'Bearer', expires_in: expiresIn, scope, jti: token.jti };
}

/** Registers the API-key grant on a provider (each provider instance the host builds). */
export function registerApiKeyGrant(provider: Provider, deps: ApiKeyTokenDeps): void {
  provider.registerGrantType(
    API_KEY_GRANT_TYPE,
    async (ctx: KoaContextWithOIDC) => {
      const presented = String(ctx.oidc.params?.api_key ?? '');
      if (!presented) throw new errors.InvalidRequest('missing required parameter: api_key');
      let verified: VerifiedKey;
      try {
        verified = await deps.verify(presented, ctx.ip);
      } catch (err) {
        if (err instanceof AppError && err.status < 500) throw new errors.InvalidGrant(err.message);
        throw err;
      }
      const issued = await issueApiKeyToken(provider, verified, deps.tokenTtlS);
      await deps.onIssued?.(verified, issued);
      const { jti: _jti, ...body } = issued;
      ctx.body = body;
    },
    'api_key',
  );
}

/** For introspection and /v2: a token minted from a key is usable only while the key is. */
export async function apiKeyTokenUsable(
  token: { extra?: Record<string, unknown> },
  usable: (keyId: string) => Promise<boolean>,
): Promise<boolean> {
  const keyId = token.extra?.api_key_id;
  if (typeof keyId !== 'string') return true;
  return usable(keyId);
}
