/**
 * Windowed counters in Redis: each increment is one Lua script (INCRBY, and the window's PEXPIRE when
 * the key is new), so parallel requests on any number of instances count exactly.
 */
import { checkGuard, checkTtl, checkUnits } from '../embedded/counter-store.js';
import type {
  AdmitRequest,
  AdmitResult,
  AttemptGuard,
  AttemptVerdict,
  CounterChange,
  CounterStore,
  CounterValue,
  DistinctAddition,
  QuotaRequest,
  QuotaState,
} from '../ports.js';
import type { RedisConnection } from './connection.js';
import type { KeyLayout } from './keys.js';
import {
  ADD_DISTINCT,
  ADD_LABELS,
  ADMIT,
  CONSUME_QUOTA,
  COUNT_DISTINCT,
  GUARD_ATTEMPT,
  INCREMENT_COUNTER,
  LIST_LABELS,
  READ_COUNTER,
  READ_COUNTERS,
  SET_QUOTA,
  UPDATE_COUNTERS,
} from './scripts.js';

/** The scripts answer `[value, window end in epoch ms]`, or null for a missing counter. */
function toCounterValue(reply: unknown): CounterValue | null {
  if (!Array.isArray(reply)) return null;
  const [value, resetAtMs] = reply as [number, number];
  return { value: Number(value), resetAt: new Date(Number(resetAtMs)) };
}

/** The increment and the window in ms the counter scripts take, checked before any round trip. */
function incrementArgs(windowSeconds: number, by: number): [number, number] {
  if (!(windowSeconds > 0) || !Number.isFinite(windowSeconds)) {
    throw new RangeError('windowSeconds must be a positive, finite number');
  }
  // INCRBY takes integers only; refuse here rather than with a script error.
  if (!Number.isSafeInteger(by)) throw new RangeError('by must be an integer');
  return [by, Math.ceil(windowSeconds * 1000)];
}

export class RedisCounterStore implements CounterStore {
  readonly kind = 'redis' as const;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: KeyLayout,
  ) {}

  async increment(key: string, windowSeconds: number, by = 1): Promise<CounterValue> {
    const reply = await this.redis.run(
      INCREMENT_COUNTER,
      [this.keys.counter(key)],
      incrementArgs(windowSeconds, by),
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

  async update(changes: CounterChange[]): Promise<void> {
    if (changes.length === 0) return;
    const args: (string | number)[] = [];
    for (const change of changes) {
      if ('reset' in change) {
        args.push('reset', '', '');
        continue;
      }
      args.push('increment', ...incrementArgs(change.windowSeconds, change.by ?? 1));
    }
    const keys = changes.map((c) => this.keys.counter('reset' in c ? c.reset : c.increment));
    await this.redis.run(UPDATE_COUNTERS, keys, args);
  }

  async guardAttempt(request: AttemptGuard): Promise<AttemptVerdict> {
    checkGuard(request);
    if (request.subjects.length === 0) return { allowed: true };
    const ms = (seconds: number) => Math.ceil(seconds * 1000);
    const reply = (await this.redis.run(
      GUARD_ATTEMPT,
      request.subjects.flatMap((s) => [s.attempts, s.lock, s.lockouts].map((k) => this.keys.counter(k))),
      [
        ms(request.windowSeconds),
        ms(request.lockoutBaseSeconds),
        ms(request.lockoutMaxSeconds),
        ms(request.lockoutMemorySeconds),
        ...request.subjects.map((s) => s.limit),
      ],
    )) as [number, number];
    const subject = Number(reply[0]);
    if (subject === 0) return { allowed: true };
    return { allowed: false, subject: subject - 1, lockedUntil: new Date(Number(reply[1])) };
  }

  async consumeQuota(
    key: string,
    request: QuotaRequest & { amount: number },
  ): Promise<QuotaState & { granted: boolean }> {
    checkUnits(request.amount, 'amount');
    const reply = await this.redis.run(
      CONSUME_QUOTA,
      [this.keys.quota(key)],
      [...quotaArgs(request), request.amount],
    );
    return toQuotaState(reply);
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    const keys = request.windows.map((w) => this.keys.counter(w.key));
    const args: (string | number)[] = [request.windows.length];
    for (const w of request.windows) {
      if (!(w.windowSeconds > 0) || !Number.isFinite(w.windowSeconds)) {
        throw new RangeError('windowSeconds must be a positive, finite number');
      }
      args.push(Math.ceil(w.windowSeconds * 1000), w.limit);
    }
    if (request.quota) {
      const { key, amount, ...quota } = request.quota;
      checkUnits(amount, 'amount');
      keys.push(this.keys.quota(key));
      args.push(...quotaArgs(quota), amount);
    }
    const reply = await this.redis.run(ADMIT, keys, args);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from ${ADMIT.name}`);
    const values = (reply as unknown[]).map(Number);
    const windows = request.windows.map((_, i) => ({
      value: values[1 + 2 * i]!,
      resetAt: new Date(values[2 + 2 * i]!),
    }));
    const limited = values[0] === 1;
    if (limited || !request.quota) return { windows, limited };
    const q = values.slice(1 + 2 * request.windows.length);
    return {
      windows,
      limited,
      quota: {
        granted: q[0] === 1,
        remaining: q[1]!,
        used: q[2]!,
        credits: q[3]!,
        periodEnd: new Date(q[4]!),
      },
    };
  }

  async setQuota(
    key: string,
    request: QuotaRequest,
    values: { remaining?: number; credits?: number },
  ): Promise<QuotaState> {
    if (values.remaining !== undefined) checkUnits(values.remaining, 'remaining');
    if (values.credits !== undefined) checkUnits(values.credits, 'credits');
    const reply = await this.redis.run(
      SET_QUOTA,
      [this.keys.quota(key)],
      [...quotaArgs(request), values.remaining ?? '', values.credits ?? ''],
    );
    const { granted: _granted, ...state } = toQuotaState(reply);
    return state;
  }

  async getMany(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const reply = await this.redis.run(
      READ_COUNTERS,
      keys.map((k) => this.keys.counter(k)),
      [],
    );
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from ${READ_COUNTERS.name}`);
    return (reply as unknown[]).map(Number);
  }

  async addDistinct(additions: readonly DistinctAddition[]): Promise<void> {
    if (additions.length === 0) return;
    const args: (string | number)[] = [];
    for (const addition of additions) {
      checkTtl(addition.ttlSeconds);
      args.push(Math.ceil(addition.ttlSeconds * 1000), addition.members.length, ...addition.members);
    }
    await this.redis.run(
      ADD_DISTINCT,
      additions.map((a) => this.keys.distinct(a.key)),
      args,
    );
  }

  async countDistinct(keys: readonly string[]): Promise<number> {
    return (await this.countDistinctMany([keys]))[0]!;
  }

  async countDistinctMany(unions: readonly (readonly string[])[]): Promise<number[]> {
    if (unions.length === 0) return [];
    const reply = await this.redis.run(
      COUNT_DISTINCT,
      unions.flatMap((keys) => keys.map((k) => this.keys.distinct(k))),
      unions.map((keys) => keys.length),
    );
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from ${COUNT_DISTINCT.name}`);
    return (reply as unknown[]).map(Number);
  }

  async addLabels(key: string, labels: readonly string[], ttlSeconds: number): Promise<void> {
    checkTtl(ttlSeconds);
    if (labels.length === 0) return;
    await this.redis.run(ADD_LABELS, [this.keys.labels(key)], [Math.ceil(ttlSeconds * 1000), ...labels]);
  }

  async listLabels(key: string, limit: number): Promise<string[]> {
    const reply = await this.redis.run(LIST_LABELS, [this.keys.labels(key)], []);
    if (!Array.isArray(reply)) throw new Error(`unexpected reply from ${LIST_LABELS.name}`);
    return (reply as string[]).map(String).sort().slice(0, limit);
  }
}

function quotaArgs(request: QuotaRequest): number[] {
  checkUnits(request.quota, 'quota');
  checkUnits(request.credits, 'credits');
  return [request.now.getTime(), request.quota, request.credits, request.periodEnd.getTime()];
}

function toQuotaState(reply: unknown): QuotaState & { granted: boolean } {
  if (!Array.isArray(reply) || reply.length !== 5) throw new Error('unexpected reply from a quota script');
  const [granted, remaining, used, credits, periodEnd] = (reply as unknown[]).map(Number) as number[];
  return {
    granted: granted === 1,
    remaining: remaining!,
    used: used!,
    credits: credits!,
    periodEnd: new Date(periodEnd!),
  };
}
