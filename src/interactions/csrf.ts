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

  /** `value`, bound to `binding` and signed, valid for `ttlS`: the browser can carry it but not alter it. */
  seal(binding: string, value: string, ttlS: number): string {
    const expires = Math.floor(Date.now() / 1000) + ttlS;
    const mac = createHmac('sha256', this.secret)
      .update(`seal\n${binding}\n${value}\n${expires}`)
      .digest('base64url');
    return `${value}.${expires}.${mac}`;
  }

  /** The value of a sealed token made for `binding`, if it is intact and not expired. */
  unseal(binding: string, sealed: string | undefined): string | undefined {
    const parts = sealed?.split('.');
    if (!parts || parts.length !== 3) return undefined;
    const [value, expires, mac] = parts as [string, string, string];
    const expected = createHmac('sha256', this.secret)
      .update(`seal\n${binding}\n${value}\n${expires}`)
      .digest('base64url');
    const ok = expected.length === mac.length && timingSafeEqual(Buffer.from(expected), Buffer.from(mac));
    return ok && Number(expires) > Date.now() / 1000 ? value : undefined;
  }

  /**
   * A token only this server can make for `secret` (a session's id, never shown): for forms outside
   * /interaction, whose CSRF cookie they do not receive.
   */
  derive(purpose: string, secret: string): string {
    return createHmac('sha256', this.secret).update(`derive\n${purpose}\n${secret}`).digest('base64url');
  }

  verifyDerived(purpose: string, secret: string, token: unknown): boolean {
    if (typeof token !== 'string') return false;
    const expected = Buffer.from(this.derive(purpose, secret));
    const actual = Buffer.from(token);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }

  verify(ctx: Context, binding: string, token: unknown): boolean {
    const browserValue = ctx.cookies.get(CSRF_COOKIE);
    if (!browserValue || typeof token !== 'string') return false;
    const expected = Buffer.from(this.sign(browserValue, binding));
    const actual = Buffer.from(token);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}
