/**
 * CSRF tokens for the interaction forms: a random per-browser value in an HttpOnly cookie, and in
 * each form an HMAC of it bound to the interaction. A form posted from another site carries neither
 * a matching cookie (SameSite) nor a token it could compute.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { Context } from 'koa';

export const CSRF_COOKIE = '_lk_csrf';

export class Csrf {
  constructor(private readonly secret: string) {}

  private sign(browserValue: string, binding: string): string {
    return createHmac('sha256', this.secret).update(`${binding}\n${browserValue}`).digest('base64url');
  }

  /** The token to embed in a form bound to `binding` (the interaction uid); sets the cookie if needed. */
  issue(ctx: Context, binding: string): string {
    let browserValue = ctx.cookies.get(CSRF_COOKIE);
    if (!browserValue || !/^[A-Za-z0-9_-]{22,64}$/.test(browserValue)) {
      browserValue = randomBytes(18).toString('base64url');
      ctx.cookies.set(CSRF_COOKIE, browserValue, {
        httpOnly: true,
        sameSite: 'lax',
        secure: ctx.secure,
        path: '/interaction',
        overwrite: true,
      });
    }
    return this.sign(browserValue, binding);
  }

  verify(ctx: Context, binding: string, token: unknown): boolean {
    const browserValue = ctx.cookies.get(CSRF_COOKIE);
    if (!browserValue || typeof token !== 'string') return false;
    const expected = Buffer.from(this.sign(browserValue, binding));
    const actual = Buffer.from(token);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}
