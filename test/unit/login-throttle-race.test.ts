/**
 * The login throttle under an adversarial interleaving that parallel requests can produce: one
 * request reads "not locked", then stalls while another crosses the limit, sets the lock and
 * restarts the attempt count; the stalled request's count then starts again from 1. It must still
 * be refused, or a burst of guesses gets more password checks than the limit allows.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { LoginThrottle } from '../../src/services/login-throttle.js';
import { EmbeddedCounterStore } from '../../src/store/embedded/counter-store.js';
import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import type { CounterStore, CounterValue } from '../../src/store/ports.js';
import { tempDir } from '../helpers/backends.js';

/** Holds the second increment of `key` until `key` has been reset. */
class StallingCounters implements CounterStore {
  readonly kind = 'embedded' as const;
  private increments = 0;
  private released!: () => void;
  private readonly resetSeen = new Promise<void>((resolve) => (this.released = resolve));

  constructor(
    private readonly inner: CounterStore,
    private readonly key: string,
  ) {}

  async increment(key: string, windowSeconds: number, by?: number): Promise<CounterValue> {
    if (key === this.key && by === undefined) {
      this.increments += 1;
      if (this.increments === 2) await this.resetSeen;
    }
    return this.inner.increment(key, windowSeconds, by);
  }

  get(key: string): Promise<CounterValue | null> {
    return this.inner.get(key);
  }

  async reset(key: string): Promise<void> {
    await this.inner.reset(key);
    if (key === this.key) this.released();
  }

  consumeQuota: CounterStore['consumeQuota'] = (key, request) => this.inner.consumeQuota(key, request);
  setQuota: CounterStore['setQuota'] = (key, request, values) => this.inner.setQuota(key, request, values);
  admit: CounterStore['admit'] = (request) => this.inner.admit(request);
}

describe('LoginThrottle with interleaved parallel attempts', () => {
  const dir = tempDir();
  let counters: EmbeddedCounterStore;
  beforeAll(() => {
    counters = new EmbeddedCounterStore(EmbeddedDatabase.open(dir.path));
  });
  afterAll(async () => {
    await counters.close();
    dir.remove();
  });

  it('refuses an attempt whose count restarted after another attempt set the lock', async () => {
    const account = 'victim@example.com';
    const stalling = new StallingCounters(counters, `login:attempts:account:${account}`);
    const throttle = new LoginThrottle(stalling, {
      maxFailures: 1,
      ipMaxFailures: 1000,
      windowS: 900,
      lockoutBaseS: 60,
      lockoutMaxS: 3600,
    });
    // The one attempt the limit allows; it is the first increment, so it is not stalled.
    expect(await throttle.begin(account, '10.0.0.1')).toEqual({ allowed: true });
    // Two at once: both read "not locked"; the first counts 2 and locks, the second is stalled until
    // the count was reset, then counts 1.
    const decisions = await Promise.all([
      throttle.begin(account, '10.0.0.2'),
      throttle.begin(account, '10.0.0.3'),
    ]);
    expect(decisions.map((d) => d.allowed)).toEqual([false, false]);
  });
});
