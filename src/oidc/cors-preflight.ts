/**
 * CORS preflights of the provider's endpoints. oidc-provider answers every preflight with the
 * request's own Origin (it cannot know the client before the real request), and only checks
 * clientBasedCORS on the real request. A preflight that echoes any origin (`null` included) tells
 * browsers and scanners more than the policy allows, so this answers preflights from the same policy
 * the real request meets (provider.ts clientBasedCORS):
 *
 *  - token, revocation, PAR, device authorization: origins of public clients' redirect URIs;
 *  - userinfo: origins of any client's redirect URIs;
 *  - introspection: none (only confidential clients may introspect, and they are not browsers);
 *  - JWKS and discovery: any origin (public documents);
 *  - the `null` origin (sandboxed frames, file: pages): never.
 *
 * A refused preflight is a 204 without Access-Control-Allow-* headers, which browsers treat as a
 * refusal; an allowed one goes on to the provider, which answers it as before.
 */
import type { Context, Next } from 'koa';

import type { JsonObject } from '../store/ports.js';

type Audience = 'public-clients' | 'all-clients' | 'anyone' | 'nobody';

export interface PreflightDeps {
  /** Every client's metadata (the stored ones and the provider's static ones). */
  clients(): Promise<JsonObject[]>;
  /** How long the origin lists may be served from memory (client changes apply within it). */
  cacheMs: number;
  routes: {
    token: string;
    revocation: string;
    introspection: string;
    userinfo: string;
    jwks: string;
    pushed_authorization_request: string;
    device_authorization: string;
  };
}

function originsOf(metadata: JsonObject): string[] {
  const uris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris : [];
  return uris.flatMap((uri) => {
    const origin = typeof uri === 'string' ? URL.parse(uri)?.origin : undefined;
    return origin && origin !== 'null' ? [origin] : [];
  });
}

export function corsPreflight(deps: PreflightDeps) {
  const audiences = new Map<string, Audience>([
    [deps.routes.token, 'public-clients'],
    [deps.routes.revocation, 'public-clients'],
    [deps.routes.pushed_authorization_request, 'public-clients'],
    [deps.routes.device_authorization, 'public-clients'],
    [deps.routes.userinfo, 'all-clients'],
    [deps.routes.introspection, 'nobody'],
    [deps.routes.jwks, 'anyone'],
    ['/.well-known/openid-configuration', 'anyone'],
    ['/.well-known/oauth-authorization-server', 'anyone'],
  ]);

  let cached: { at: number; publicOrigins: Set<string>; allOrigins: Set<string> } | undefined;
  const origins = async () => {
    if (cached && Date.now() - cached.at < deps.cacheMs) return cached;
    const clients = await deps.clients();
    const publicOrigins = new Set(
      clients.filter((c) => c.token_endpoint_auth_method === 'none').flatMap(originsOf),
    );
    cached = { at: Date.now(), publicOrigins, allOrigins: new Set(clients.flatMap(originsOf)) };
    return cached;
  };

  const allowed = async (audience: Audience, origin: string): Promise<boolean> => {
    if (origin === 'null') return false;
    switch (audience) {
      case 'anyone':
        return true;
      case 'nobody':
        return false;
      case 'public-clients':
        return (await origins()).publicOrigins.has(origin);
      case 'all-clients':
        return (await origins()).allOrigins.has(origin);
    }
  };

  return async function checkPreflight(ctx: Context, next: Next): Promise<void> {
    const audience = ctx.method === 'OPTIONS' ? audiences.get(ctx.path) : undefined;
    const origin = ctx.get('Origin');
    if (!audience || !origin || !ctx.get('Access-Control-Request-Method')) return next();
    if (await allowed(audience, origin)) return next();
    ctx.vary('Origin');
    ctx.status = 204;
  };
}
