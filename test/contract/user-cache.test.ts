import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { CachedUserRepository, USER_CHANGES_CHANNEL } from '../../src/store/cached-users.js';
import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { LocalEventBus } from '../../src/store/local-event-bus.js';
import type { EventBus, User, UserRepository } from '../../src/store/ports.js';
import { openRedisShortLived } from '../../src/store/redis/index.js';
import { describeWithBackend, REDIS_URL, tempDir, uniqueName } from '../helpers/backends.js';

/**
 * The user cache in front of a durable store across the network (MongoDB): a hit spares the round
 * trip, and no entry outlives a change made through any instance. The store behind it here is the
 * embedded one (a real store; what is measured is which reads reach it); the MongoDB wiring runs in
 * the multi-instance end-to-end test.
 */

/**
 * The real repository, counting the lookups by id that reach it; while `hold` is set, a lookup
 * answers what it read only once that promise settles (a slow round trip).
 */
function counted(inner: UserRepository) {
  let reads = 0;
  const control: { hold?: Promise<void> } = {};
  const repo = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'findById') {
        return async (...args: Parameters<UserRepository['findById']>) => {
          reads += 1;
          const found = await target.findById(...args);
          if (control.hold) await control.hold;
          return found;
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { repo, control, reads: () => reads };
}

describe('user cache in front of a durable store', () => {
  const dir = tempDir();
  const store = new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path));
  const { repo, control, reads } = counted(store.users);
  let clock = 1_000_000;
  const now = () => clock;
  const bus = new LocalEventBus();
  const a = new CachedUserRepository(repo, bus, { ttlMs: 30_000, now });
  const b = new CachedUserRepository(repo, bus, { ttlMs: 30_000, now });
  let seq = 0;
  const newUser = () =>
    store.users.create({ email: `cache-${(seq += 1)}@example.com`, first_name: 'C', last_name: 'U' });

  afterAll(async () => {
    a.close();
    b.close();
    await store.close();
    dir.remove();
  });

  it('answers repeated lookups from memory with the same frozen record', async () => {
    const user = await newUser();
    const before = reads();
    const first = await a.findById(user.id);
    const second = await a.findById(user.id);
    expect(first).toEqual(user);
    expect(second).toBe(first);
    expect(reads() - before).toBe(1);
    expect(Object.isFrozen(first)).toBe(true);
    expect(() => {
      (first as { status: string }).status = 'suspended';
    }).toThrow(TypeError);
  });

  it('drops a user changed through this instance or another on the same bus', async () => {
    const user = await newUser();
    expect((await a.findById(user.id))?.status).toBe('active');
    expect((await b.findById(user.id))?.status).toBe('active');

    await a.update(user.id, { status: 'suspended' });
    expect((await a.findById(user.id))?.status).toBe('suspended');
    expect((await b.findById(user.id))?.status).toBe('suspended');

    await b.recordLogin(user.id, new Date('2026-12-01T00:00:00Z'));
    expect((await a.findById(user.id))?.login_count).toBe(1);

    await b.update(user.id, { deleted_at: new Date() });
    expect(await a.findById(user.id)).toBeNull();
    expect((await a.findById(user.id, 'include'))?.id).toBe(user.id);

    await a.update(user.id, { deleted_at: null }, 'only');
    expect((await b.findById(user.id))?.id).toBe(user.id);
    await a.remove(user.id);
    expect(await b.findById(user.id)).toBeNull();
  });

  it('does not keep a record read while a change was being announced', async () => {
    const user = await newUser();
    // A's read gets the old record, then the change lands and is announced before the answer arrives.
    let release!: () => void;
    control.hold = new Promise<void>((resolve) => (release = resolve));
    const reading = a.findById(user.id);
    await new Promise((r) => setImmediate(r));
    await b.update(user.id, { first_name: 'Changed' });
    control.hold = undefined;
    release();
    expect((await reading)?.first_name).toBe('C');
    expect((await a.findById(user.id))?.first_name).toBe('Changed');
  });

  it('reads again after the TTL, which bounds changes no instance announced', async () => {
    const user = await newUser();
    await a.findById(user.id);
    await store.users.update(user.id, { status: 'suspended' }); // directly in the store: no message
    expect((await a.findById(user.id))?.status).toBe('active');
    clock += 30_000;
    expect((await a.findById(user.id))?.status).toBe('suspended');
  });
});

describeWithBackend('user cache across instances: redis event bus', 'REDIS_URL', REDIS_URL, (url) => {
  const dir = tempDir();
  const store = new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path));
  const keyPrefix = `${uniqueName('lk_test')}:`;
  const buses: { events: EventBus; close(): Promise<void> }[] = [];
  let a: CachedUserRepository;
  let b: CachedUserRepository;

  beforeAll(async () => {
    for (let i = 0; i < 2; i += 1) {
      const opened = await openRedisShortLived({ url, keyPrefix, connectTimeoutMs: 3000 });
      buses.push({
        events: opened.events,
        close: async () => {
          await opened.events.close();
          await opened.artifacts.close();
        },
      });
    }
    a = new CachedUserRepository(store.users, buses[0]!.events, { ttlMs: 60_000 });
    b = new CachedUserRepository(store.users, buses[1]!.events, { ttlMs: 60_000 });
    // Subscribing completes in the background; wait until B's connection hears A's messages.
    let heard = false;
    const stop = buses[1]!.events.subscribe(USER_CHANGES_CHANNEL, (id) => {
      if (id === 'probe') heard = true;
    });
    for (let i = 0; i < 100 && !heard; i += 1) {
      await buses[0]!.events.publish(USER_CHANGES_CHANNEL, 'probe');
      await new Promise((r) => setTimeout(r, 20));
    }
    stop();
    expect(heard).toBe(true);
  });
  afterAll(async () => {
    a?.close();
    b?.close();
    await Promise.all(buses.map((bus) => bus.close()));
    await store.close();
    dir.remove();
  });

  it('a change through one instance reaches the other through Redis', async () => {
    const user = await store.users.create({
      email: 'redis-cache@example.com',
      first_name: 'R',
      last_name: 'C',
    });
    expect((await b.findById(user.id))?.status).toBe('active');
    await a.update(user.id, { status: 'suspended' });
    // Pub/sub delivers on B's subscriber connection shortly after A's publish returns.
    let seen: User | null = null;
    for (let i = 0; i < 100; i += 1) {
      seen = await b.findById(user.id);
      if (seen?.status === 'suspended') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(seen?.status).toBe('suspended');
  });
});
