/**
 * The timing proxies around the store ports: every asynchronous operation is counted under its
 * store, backend and method name, failures included, while behaviour stays exactly the adapter's own
 * (`this`, private fields, plain properties, synchronous helpers, errors and their classes).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { instrumentStores } from '../../src/observability/instrument-stores.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStores } from '../../src/store/create-stores.js';
import { StoreConflictError } from '../../src/store/errors.js';
import type { Stores } from '../../src/store/ports.js';
import { tempDir } from '../helpers/backends.js';

async function countOf(metrics: Metrics, labels: Record<string, string>): Promise<number> {
  const { values } = await metrics.storeDuration.get();
  const found = values.find(
    (v) =>
      v.metricName === 'latchkey_store_operation_duration_seconds_count' &&
      Object.entries(labels).every(([k, value]) => (v.labels as Record<string, unknown>)[k] === value),
  );
  return found?.value ?? 0;
}

describe('instrumentStores on the embedded stores', () => {
  const dir = tempDir();
  let raw: Stores;
  let stores: Stores;
  let metrics: Metrics;
  beforeAll(async () => {
    raw = await createStores({
      dataDir: dir.path,
      mongodbUri: undefined,
      redisUrl: undefined,
      redisKeyPrefix: 'unused:',
      embeddedSweepIntervalS: 60,
      nodeEnv: 'test',
    });
    metrics = new Metrics();
    stores = instrumentStores(raw, metrics.storeDuration);
  });
  afterAll(async () => {
    await raw.close();
    dir.remove();
  });

  it('passes plain properties through and keeps wrapped objects stable', () => {
    expect(stores.durable.kind).toBe('embedded');
    expect(stores.artifacts.kind).toBe('embedded');
    expect(stores.counters.kind).toBe('embedded');
    expect(stores.durable.users).toBe(stores.durable.users);
    expect(stores.durable.users.findById).toBe(stores.durable.users.findById);
    expect(stores.artifacts.adapterFor('Session')).toBe(stores.artifacts.adapterFor('Session'));
    expect(stores.events).toBe(raw.events);
  });

  it('times repository calls under repository.method, and they behave as without the proxy', async () => {
    const created = await stores.durable.users.create({
      email: 'timed@example.com',
      first_name: 'Timed',
      last_name: 'User',
    });
    expect(await raw.durable.users.findById(created.id)).toEqual(created);
    expect(await stores.durable.users.findById(created.id)).toEqual(created);
    expect(await countOf(metrics, { store: 'durable', backend: 'embedded', operation: 'users.create' })).toBe(
      1,
    );
    expect(
      await countOf(metrics, { store: 'durable', backend: 'embedded', operation: 'users.findById' }),
    ).toBe(1);
  });

  it('times failed operations too and rethrows the adapter error unchanged', async () => {
    const input = { email: 'twice@example.com', first_name: 'A', last_name: 'B' };
    await stores.durable.users.create(input);
    const error = await stores.durable.users.create(input).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(StoreConflictError);
    expect((error as StoreConflictError).field).toBe('email');
    expect(await countOf(metrics, { store: 'durable', operation: 'users.create' })).toBe(3);
  });

  it('times artifact adapters under their model and counters under their method', async () => {
    const session = stores.artifacts.adapterFor('Session');
    await session.upsert('s1', { uid: 'u1', accountId: 'a1' }, 60);
    expect(await session.findByUid('u1')).toMatchObject({ accountId: 'a1' });
    await stores.counters.increment('k', 60);
    expect((await stores.counters.get('k'))?.value).toBe(1);
    expect(await countOf(metrics, { store: 'artifacts', operation: 'Session.upsert' })).toBe(1);
    expect(await countOf(metrics, { store: 'artifacts', operation: 'Session.findByUid' })).toBe(1);
    expect(await countOf(metrics, { store: 'counters', operation: 'increment' })).toBe(1);
    expect(await countOf(metrics, { store: 'counters', operation: 'get' })).toBe(1);
  });
});

describe('instrumentStores on an adapter with private state', () => {
  class PrivateCounter {
    readonly kind = 'embedded' as const;
    #value = 0;
    get current(): number {
      return this.#value;
    }
    /** Synchronous: returned as is, not timed. */
    peek(): number {
      return this.#value;
    }
    async increment(): Promise<{ value: number; resetAt: Date }> {
      this.#value += 1;
      return { value: this.#value, resetAt: new Date(0) };
    }
    async get() {
      return null;
    }
    async reset() {
      this.#value = 0;
    }
  }

  it('runs methods and getters on the real object, so private fields work', async () => {
    const counter = new PrivateCounter();
    const metrics = new Metrics();
    const stores = instrumentStores(
      { counters: counter, durable: {}, artifacts: {} } as unknown as Stores,
      metrics.storeDuration,
    );
    const timed = stores.counters as unknown as PrivateCounter;
    expect((await timed.increment()).value).toBe(1);
    expect(timed.current).toBe(1);
    expect(timed.peek()).toBe(1);
    expect(await countOf(metrics, { store: 'counters', operation: 'increment' })).toBe(1);
    expect(await countOf(metrics, { store: 'counters', operation: 'peek' })).toBe(0);
  });
});
