import { createRequire } from 'node:module';

import { describe, expect, it } from '@jest/globals';

import { CookieSigner } from '../../src/http/cookie-signer.js';

// keygrip is what Koa's cookies use when given a key list; signatures must match it exactly so
// cookies issued before this signer (or by another instance still running the old code) verify.
type Keygrip = { sign(d: string): string; index(d: string, s: string): number };
const require = createRequire(import.meta.url);
const Keygrip = require('keygrip') as (keys: string[]) => Keygrip;

describe('CookieSigner', () => {
  const data = '_lk_session=Xy9-abc_DEF; path=/';

  it('signs exactly as keygrip does with the same keys', () => {
    const keys = ['first-cookie-key-0123456789abcdef', 'second-key-ünïcode'];
    const ours = new CookieSigner(keys);
    const theirs = Keygrip(keys);
    for (const value of [data, '', 'a'.repeat(500), 'ünïcode ✓']) {
      expect(ours.sign(value)).toBe(theirs.sign(value));
    }
    expect(ours.sign(data)).toMatch(/^[A-Za-z0-9_-]{27}$/);
  });

  it('names the key that signed a value: the current one, a retired one, or none', () => {
    const retired = new CookieSigner(['old-key-0123456789abcdef0123456789']);
    const rotated = new CookieSigner([
      'new-key-0123456789abcdef0123456789',
      'old-key-0123456789abcdef0123456789',
    ]);
    expect(rotated.index(data, rotated.sign(data))).toBe(0);
    expect(rotated.index(data, retired.sign(data))).toBe(1);
    expect(rotated.verify(data, retired.sign(data))).toBe(true);
    expect(retired.index(data, rotated.sign(data))).toBe(-1);
  });

  it('refuses altered data, altered, truncated or missing signatures', () => {
    const signer = new CookieSigner(['a-cookie-key-0123456789abcdef0123']);
    const sig = signer.sign(data);
    expect(signer.verify(`${data}x`, sig)).toBe(false);
    const flipped = `${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`;
    expect(signer.verify(data, flipped)).toBe(false);
    expect(signer.verify(data, sig.slice(0, -1))).toBe(false);
    expect(signer.verify(data, '')).toBe(false);
    expect(signer.index(data, undefined as unknown as string)).toBe(-1);
  });

  it('needs at least one key', () => {
    expect(() => new CookieSigner([])).toThrow(/cookie key/);
  });
});
