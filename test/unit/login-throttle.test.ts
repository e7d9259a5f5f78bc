import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { LoginThrottle } from '../../src/services/login-throttle.js';
import { EmbeddedCounterStore } from '../../src/store/embedded/counter-store.js';
import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { tempDir } from '../helpers/backends.js';

describe('LoginThrottle (embedded counters, injected clock)', () => {
  const dir = tempDir();
  let now = Date.parse('2026-06-01T00:00:00Z');
  let counters: EmbeddedCounterStore;
  let throttle: LoginThrottle;
  const options = { maxFailures: 3, ipMaxFailures: 100, windowS: 900, lockoutBaseS: 60, lockoutMaxS: 200 };

  beforeAll(() => {
    counters = new EmbeddedCounterStore(EmbeddedDatabase.open(dir.path), { now: () => now });
    throttle = new LoginThrottle(counters, { ...options, now: () => now });
  });
  afterAll(async () => {
    await counters.close();
    dir.remove();
  });

  it('allows the limit, locks with Retry-After, and doubles each further lockout up to the maximum', async () => {
    const account = 'victim@example.com';
    for (let i = 0; i < 3; i += 1)
      expect(await throttle.begin(account, '10.0.0.1')).toEqual({ allowed: true });
    // The attempt that finds the account locked first says so; later refusals do not.
    expect(await throttle.begin(account, '10.0.0.1')).toEqual({
      allowed: false,
      retryAfterS: 60,
      accountLockedNow: true,
    });
    now += 30_000;
    expect(await throttle.begin(account, '10.0.0.2')).toEqual({
      allowed: false,
      retryAfterS: 30,
      accountLockedNow: false,
    });

    now += 31_000; // first lock (60 s) over
    for (let i = 0; i < 3; i += 1) expect((await throttle.begin(account, '10.0.0.1')).allowed).toBe(true);
    expect(await throttle.begin(account, '10.0.0.1')).toMatchObject({ allowed: false, retryAfterS: 120 });

    now += 121_000;
    for (let i = 0; i < 3; i += 1) await throttle.begin(account, '10.0.0.1');
    expect(await throttle.begin(account, '10.0.0.1')).toMatchObject({ allowed: false, retryAfterS: 200 }); // capped
  });

  it('lets exactly the limit through when attempts race', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, () => throttle.begin('race@example.com', '10.1.1.1')),
    );
    expect(results.filter((r) => r.allowed)).toHaveLength(3);
    expect(results.filter((r) => !r.allowed)).toHaveLength(47);
    // However many race, one refusal reports the new lock (user.locked is emitted once).
    expect(results.filter((r) => !r.allowed && r.accountLockedNow)).toHaveLength(1);
  });

  it('forgets failures after a success, and a success does not count against the address', async () => {
    const account = 'ok@example.com';
    await throttle.begin(account, '10.2.2.2');
    await throttle.begin(account, '10.2.2.2');
    await throttle.succeeded(account, '10.2.2.2');
    for (let i = 0; i < 3; i += 1) expect((await throttle.begin(account, '10.2.2.2')).allowed).toBe(true);
  });

  it('locks an address that tries many accounts', async () => {
    const ipThrottle = new LoginThrottle(counters, { ...options, ipMaxFailures: 5, now: () => now });
    for (let i = 0; i < 5; i += 1)
      expect((await ipThrottle.begin(`a${i}@example.com`, '10.9.9.9')).allowed).toBe(true);
    // Refused by the address: the account itself is not locked.
    expect(await ipThrottle.begin('fresh@example.com', '10.9.9.9')).toEqual({
      allowed: false,
      retryAfterS: 60,
      accountLockedNow: false,
    });
  });
});
