/**
 * Koa middleware guarding routes with Latchkey credentials (see ../authenticate.ts): on success the
 * identity is in `ctx.state.latchkey`; otherwise the request is answered here (401, 403, 429 or 503)
 * and later middleware does not run. Typed structurally, so the SDK needs no Koa at run time.
 */
import { LatchkeyAuthenticator, type AuthenticateOptions, type LatchkeyIdentity } from '../authenticate.js';

/** The part of a Koa context the middleware uses. */
export interface KoaLikeContext {
  get(field: string): string;
  set(field: string, value: string): void;
  status: number;
  body: unknown;
  /** Any state type: the identity is added as `latchkey`. */
  state: object;
  /** The request's method and full URL: what a DPoP proof must name. */
  method?: string;
  href?: string;
}

/** For typing Koa apps: `new Koa<LatchkeyKoaState>()` or `Router<LatchkeyKoaState>`. */
export interface LatchkeyKoaState {
  latchkey: LatchkeyIdentity;
}

export type LatchkeyKoaMiddleware = ((ctx: KoaLikeContext, next: () => Promise<unknown>) => Promise<void>) & {
  authenticator: LatchkeyAuthenticator;
};

/** Accepts options, or an authenticator shared with other middleware (one cache for all). */
export function latchkeyKoa(options: AuthenticateOptions | LatchkeyAuthenticator): LatchkeyKoaMiddleware {
  const authenticator =
    options instanceof LatchkeyAuthenticator ? options : new LatchkeyAuthenticator(options);
  const middleware = async (ctx: KoaLikeContext, next: () => Promise<unknown>): Promise<void> => {
    const result = await authenticator.authenticate({
      authorization: ctx.get('authorization') || undefined,
      apiKey: ctx.get('x-api-key') || undefined,
      requestId: ctx.get('x-request-id') || undefined,
      dpop: ctx.get('dpop') || undefined,
      method: ctx.method,
      // Koa's href follows X-Forwarded-Proto/-Host only with app.proxy (or see dpop.publicOrigin).
      url: ctx.href,
    });
    if (!result.ok) {
      ctx.status = result.failure.status;
      for (const [name, value] of Object.entries(result.failure.headers)) ctx.set(name, value);
      ctx.body = result.failure.body;
      return;
    }
    (ctx.state as { latchkey?: LatchkeyIdentity }).latchkey = result.identity;
    await next();
  };
  return Object.assign(middleware, { authenticator });
}
