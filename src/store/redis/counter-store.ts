/**
 * Windowed counters in Redis: each increment is one Lua script (INCRBY, and the window's PEXPIRE when
 * the key is new), so parallel requests on any number of instances count exactly.
 */
import type { CounterStore, CounterValue } from '../ports.js';
import type { RedisConnection } from './connection.js';
import type { KeyLayout } from './keys.js';
import { INCREMENT_COUNTER, READ_COUNTER } from './scripts.js';

/** The scripts answer `[value, window end in epoch ms]`, or null for a missing counter. */
function toCounterValue(reply: unknown): CounterValue | null {
  if (!Array.isArray(reply)) return null;
  const [value, resetAtMs] = reply as [number, number];
  return { value: Number(value), resetAt: new Date(Number(resetAtMs)) };
}

export class RedisCounterStore implements CounterStore {
  readonly kind = 'redis' as const;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: KeyLayout,
  ) {}

  async increment(key: string, windowSeconds: number, by = 1): Promise<CounterValue> {
    if (!(windowSeconds > 0) || !Number.isFinite(windowSeconds)) {
      throw new RangeError('windowSeconds must be a positive, finite number');
    }
    // INCRBY takes integers only; refuse here rather than with a script error.
    if (!Number.isSafeInteger(by)) throw new RangeError('by must be an integer');
    const reply = await this.redis.run(
      INCREMENT_COUNTER,
      [this.keys.counter(key)],
      [by, Math.ceil(windowSeconds * 1000)],
    );
    const counted = toCounterValue(reply);
    if (!counted) throw new Error(`unexpected reply from ${INCREMENT_COUNTER.name}`);
    return counted;
  }

  async get(key: string): Promise<CounterValue | null> {
    return toCounterValue(await this.redis.run(READ_COUNTER, [this.keys.counter(key)], []));
  }

  async reset(key: string): Promise<void> {
    await this.redis.del(this.keys.counter(key));
  }
}
