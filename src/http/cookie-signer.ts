/**
 * Signs and checks the `.sig` companions of signed cookies (sessions, interactions, CSRF), in place
 * of the keygrip instance Koa's cookies would otherwise build from a key list on every request.
 *
 * Same signatures as keygrip's defaults (HMAC-SHA1, base64url without padding), so cookies issued
 * before and after stay valid and key rotation works the same: the first key signs, any key
 * verifies. The difference is cost: the keys become KeyObjects once, and a presented signature is
 * compared with `timingSafeEqual` rather than by hashing both sides again. A sign-in reads and
 * writes a dozen signed cookies, so this is measurable there.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

export class CookieSigner {
  private readonly keys: KeyObject[];

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error('at least one cookie key is required');
    this.keys = secrets.map((secret) => createSecretKey(Buffer.from(secret, 'utf8')));
  }

  /** The signature of `data` with the current (first) key. */
  sign(data: string): string {
    return this.signWith(this.keys[0]!, data);
  }

  verify(data: string, digest: string): boolean {
    return this.index(data, digest) > -1;
  }

  /** Which key signed `data` to give `digest` (0 is the current one), or -1 for none. */
  index(data: string, digest: string): number {
    if (typeof digest !== 'string') return -1;
    const presented = Buffer.from(digest, 'utf8');
    for (let i = 0; i < this.keys.length; i += 1) {
      const expected = Buffer.from(this.signWith(this.keys[i]!, data), 'utf8');
      // A signature's length is no secret (it is fixed by the hash); only equal lengths compare.
      if (expected.length === presented.length && timingSafeEqual(expected, presented)) return i;
    }
    return -1;
  }

  private signWith(key: KeyObject, data: string): string {
    return createHmac('sha1', key).update(data).digest('base64url');
  }
}
