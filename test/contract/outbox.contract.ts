/**
 * The outbox contract: every OutboxRepository adapter must pass this suite unchanged. Each adapter's
 * *.test.ts file supplies a harness whose open() gives a new store instance on one data set it owns,
 * so two instances can race for the same deliveries.
 *
 * claimDue sees every due delivery of the data set, so each test works in its own stretch of the
 * past (epoch(): ten days before the previous test's), and what earlier tests left due is never
 * due at a later test's clock. Events and deliveries stamped with the real clock are newer still.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { eventUser, newEvent, toOutboxEvent } from '../../src/events/catalog.js';
import { StoreConflictError } from '../../src/store/errors.js';
import type { DurableStore, OutboxDelivery, OutboxEvent, OutboxRepository } from '../../src/store/ports.js';
import { QueryError } from '../../src/store/query.js';

export interface OutboxHarness {
  /** Opens a new store instance on the harness's data set (a second call must see the same data). */
  open(): Promise<DurableStore>;
  /** Drops the data set. */
  destroy(): Promise<void>;
}

const tag = () => randomBytes(6).toString('hex');
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

let nextEpoch = Date.parse('2020-01-01T00:00:00.000Z');
/** A base time for one test, ten days before the previous one's. */
function epoch(): number {
  nextEpoch -= 10 * DAY;
  return nextEpoch;
}

const at = (ms: number) => new Date(ms);

function event(
  timestamp: Date,
  type = 'ping',
  data: OutboxEvent['data'] = { message: 'hello' },
): OutboxEvent {
  return {
    id: `evt_${tag()}${tag()}`,
    type,
    timestamp,
    actor: { type: 'system', id: 'test' },
    data,
  };
}

export function describeOutboxContract(harness: OutboxHarness): void {
  let store: DurableStore;
  let other: DurableStore;
  let outbox: OutboxRepository;
  let rival: OutboxRepository;

  beforeAll(async () => {
    store = await harness.open();
    await store.migrate();
    other = await harness.open();
    outbox = store.outbox;
    rival = other.outbox;
  });

  afterAll(async () => {
    await other?.close();
    await store?.close();
    await harness.destroy();
  });

  /** Appends one event at `t` and enqueues it for each endpoint, due at `due` (default `t`). */
  async function deliveries(t: number, endpoints: string[], due = t): Promise<OutboxDelivery[]> {
    const e = event(at(t));
    await outbox.append([e]);
    return outbox.enqueue(
      endpoints.map((endpoint_id) => ({ event_id: e.id, endpoint_id, next_attempt_at: at(due), now: at(t) })),
    );
  }

  describe('events', () => {
    it('appends catalog events durably and reads them back by id, from another instance too', async () => {
      const T = epoch();
      const user = {
        id: `usr_${tag()}`,
        email: 'ada@example.com',
        first_name: 'Ada',
        last_name: 'Lovelace',
        role: 'user',
        status: 'active' as const,
        email_verified: true,
        mfa_enabled: false,
        password_hash: '$argon2id$v=19$m=19456,t=2,p=1$secret',
        password_reset_required: false,
        metadata: { department: 'eng', 'dotted.key': 1, $odd: true },
        preferences: {},
        login_count: 0,
        last_login: null,
        plan: null,
        created_at: at(T),
        updated_at: at(T),
        deleted_at: null,
      };
      const created = toOutboxEvent(
        newEvent('user.created', { type: 'client', id: 'cli_admin' }, { user: eventUser(user) }, at(T)),
      );
      await outbox.append([created]);
      expect(created.id).toMatch(/^evt_[0-9a-z]{26}$/);
      for (const repo of [outbox, rival]) {
        const back = await repo.getEvent(created.id);
        expect(back).toEqual(created);
        expect(JSON.stringify(back)).not.toContain('argon2');
      }
      expect(await outbox.getEvent(`evt_${tag()}`)).toBeNull();
    });

    it('refuses an existing id and stores none of that batch', async () => {
      const T = epoch();
      const first = event(at(T));
      await outbox.append([first]);
      const fresh = event(at(T + SECOND));
      await expect(outbox.append([fresh, { ...first, type: 'user.created' }])).rejects.toBeInstanceOf(
        StoreConflictError,
      );
      expect(await outbox.getEvent(fresh.id)).toBeNull();
      expect((await outbox.getEvent(first.id))!.type).toBe('ping');
      // The same id twice in one batch is a conflict too.
      const twice = event(at(T + 2 * SECOND));
      const other = event(at(T + 3 * SECOND));
      await expect(rival.append([other, twice, twice])).rejects.toBeInstanceOf(StoreConflictError);
      expect(await outbox.getEvent(other.id)).toBeNull();
      expect(await outbox.getEvent(twice.id)).toBeNull();
      await outbox.append([]);
    });

    it('lists events by time range and type, oldest first, in pages', async () => {
      const T = epoch();
      const appended = [
        event(at(T), 'user.login'),
        event(at(T + MINUTE), 'user.created'),
        event(at(T + MINUTE), 'user.login'),
        event(at(T + 2 * MINUTE), 'user.login'),
        event(at(T + 3 * MINUTE), 'role.created'),
        event(at(T + HOUR), 'user.login'),
      ];
      await outbox.append(appended);
      const range = { from: at(T), to: at(T + HOUR) };
      const all = await outbox.listEvents({ ...range, limit: 100 });
      expect(all.items.map((e) => e.id)).toEqual(
        [...appended.slice(0, 5)]
          .sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime() || (a.id < b.id ? -1 : 1))
          .map((e) => e.id),
      );
      expect(all.next_cursor).toBeNull();

      const logins = await outbox.listEvents({ ...range, types: ['user.login'], limit: 100 });
      expect(logins.items.map((e) => e.type)).toEqual(['user.login', 'user.login', 'user.login']);

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await outbox.listEvents({ ...range, limit: 2, ...(cursor ? { cursor } : {}) });
        seen.push(...page.items.map((e) => e.id));
        cursor = page.next_cursor ?? undefined;
        pages += 1;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seen).toEqual(all.items.map((e) => e.id));

      await expect(outbox.listEvents({ limit: 2, cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(
        QueryError,
      );
    });
  });

  describe('deliveries', () => {
    it('enqueues one pending delivery per (event, endpoint), idempotently', async () => {
      const T = epoch();
      const e = event(at(T));
      await outbox.append([e]);
      const [a, b, again] = await outbox.enqueue([
        { event_id: e.id, endpoint_id: 'wh_a', now: at(T) },
        { event_id: e.id, endpoint_id: 'wh_b', now: at(T) },
        { event_id: e.id, endpoint_id: 'wh_a', now: at(T) },
      ]);
      expect(a).toEqual({
        id: expect.stringMatching(/^dlv_/),
        event_id: e.id,
        endpoint_id: 'wh_a',
        status: 'pending',
        attempts: 0,
        next_attempt_at: at(T),
        lease_owner: null,
        lease_expires_at: null,
        last_status: null,
        last_error: null,
        latency_ms: null,
        created_at: at(T),
        updated_at: at(T),
        finished_at: null,
      });
      expect(b!.id).not.toBe(a!.id);
      expect(again).toEqual(a);

      const [claimed] = await outbox.claimDue(at(T), 10, MINUTE, 'worker-1');
      expect(claimed).toBeDefined();
      // A later enqueue of the same pair, from another instance, changes nothing.
      const [later] = await rival.enqueue([
        { event_id: e.id, endpoint_id: claimed!.endpoint_id, now: at(T + HOUR) },
      ]);
      expect(later).toEqual(await outbox.get(claimed!.id));
      expect(later!.attempts).toBe(1);
      expect(later!.created_at).toEqual(at(T));
      const listed = await outbox.list({ event_id: e.id, limit: 10 });
      expect(listed.items).toHaveLength(2);
    });

    it('enqueues quietly like enqueue: one delivery per pair, an existing one unchanged', async () => {
      const T = epoch();
      const e = event(at(T - MINUTE));
      await outbox.append([e]);
      const endpoint = `wh_${tag()}`;
      const [first] = await outbox.enqueue([{ event_id: e.id, endpoint_id: endpoint, now: at(T - MINUTE) }]);
      await outbox.enqueueQuietly([
        { event_id: e.id, endpoint_id: endpoint, now: at(T) },
        { event_id: e.id, endpoint_id: `${endpoint}_2`, now: at(T) },
      ]);
      expect(await outbox.get(first!.id)).toEqual(first);
      const listed = await outbox.list({ event_id: e.id, limit: 10 });
      expect(listed.items.map((d) => d.endpoint_id).sort()).toEqual([endpoint, `${endpoint}_2`]);
      expect(listed.items.every((d) => d.status === 'pending' && d.attempts === 0)).toBe(true);
    });

    it('enqueues leased: claimed by the owner, first attempt counted, claimable by others once expired', async () => {
      const T = epoch();
      const e = event(at(T - MINUTE));
      await outbox.append([e]);
      const endpoint = `wh_${tag()}`;
      const [existing] = await outbox.enqueue([
        { event_id: e.id, endpoint_id: `${endpoint}_old`, now: at(T - MINUTE) },
      ]);
      const ids = await outbox.enqueueLeased(
        [
          { event_id: e.id, endpoint_id: endpoint, now: at(T - MINUTE) },
          { event_id: e.id, endpoint_id: `${endpoint}_old`, now: at(T - MINUTE) },
        ],
        { owner: 'worker-1', until: at(T + MINUTE) },
      );
      // The pair that had a delivery keeps it as it was, unleased.
      expect(ids).toHaveLength(1);
      expect(await outbox.get(existing!.id)).toEqual(existing);
      const leased = (await outbox.get(ids[0]!))!;
      expect(leased).toMatchObject({
        event_id: e.id,
        endpoint_id: endpoint,
        status: 'pending',
        attempts: 1,
        lease_owner: 'worker-1',
        lease_expires_at: at(T + MINUTE),
        created_at: at(T - MINUTE),
      });
      // Nobody claims it while the lease lasts (the old pair is claimable as usual).
      const now = await rival.claimDue(at(T), 10, MINUTE, 'worker-2');
      expect(now.map((d) => d.id)).toEqual([existing!.id]);
      await rival.complete(existing!.id, 'worker-2', { status: 200, now: at(T) });
      // The owner records the outcome like a claimer's.
      const done = await outbox.complete(leased.id, 'worker-1', { status: 200, now: at(T) });
      expect(done).toMatchObject({ status: 'succeeded', attempts: 1 });

      // A lease left by an instance that died: claimed again once expired, as the second attempt.
      const e2 = event(at(T - MINUTE));
      await outbox.append([e2]);
      const [lost] = await outbox.enqueueLeased(
        [{ event_id: e2.id, endpoint_id: endpoint, now: at(T - MINUTE) }],
        { owner: 'worker-dead', until: at(T + MINUTE) },
      );
      expect(await rival.claimDue(at(T), 10, MINUTE, 'worker-2')).toEqual([]);
      const [again] = await rival.claimDue(at(T + MINUTE), 10, MINUTE, 'worker-2');
      expect(again).toMatchObject({ id: lost, attempts: 2, lease_owner: 'worker-2' });
      expect(await outbox.complete(lost!, 'worker-dead', { status: 200, now: at(T + MINUTE) })).toBeNull();
      expect(await rival.complete(lost!, 'worker-2', { status: 200, now: at(T + MINUTE) })).toMatchObject({
        status: 'succeeded',
      });
      expect(await outbox.enqueueLeased([], { owner: 'w', until: at(T) })).toEqual([]);
    });

    it('counts the deliveries not yet made and knows the oldest', async () => {
      const T = epoch();
      const before = await outbox.pendingStats();
      const made = await deliveries(T - MINUTE, [`wh_${tag()}`, `wh_${tag()}`]);
      const after = await outbox.pendingStats();
      expect(after.pending).toBe(before.pending + 2);
      // Earlier tests left older ones waiting; this test's are the oldest only if none was.
      expect(after.oldest!.getTime()).toBeLessThanOrEqual(made[0]!.created_at.getTime());
      const [claimed] = await outbox.claimDue(at(T), 1, MINUTE, 'stats');
      await outbox.complete(claimed!.id, 'stats', { status: 200, now: at(T) });
      expect((await outbox.pendingStats()).pending).toBe(before.pending + 1);
    });

    it('claims only the deliveries a filter lets through: one consumer, not busy endpoints', async () => {
      const T = epoch();
      const busy = `wh_${tag()}`;
      const free = `wh_${tag()}`;
      const mail = `mail_${tag()}`;
      const [toBusy, toFree, toMail] = await deliveries(T - MINUTE, [busy, free, mail]);
      const claimed = await outbox.claimDue(at(T), 10, MINUTE, 'worker-1', {
        endpointPrefix: 'wh_',
        excludeEndpoints: [busy],
      });
      expect(claimed.map((d) => d.id)).toEqual([toFree!.id]);
      const rest = await outbox.claimDue(at(T), 10, MINUTE, 'worker-2', { endpointPrefix: 'mail_' });
      expect(rest.map((d) => d.id)).toEqual([toMail!.id]);
      const last = await outbox.claimDue(at(T), 10, MINUTE, 'worker-3');
      expect(last.map((d) => d.id)).toEqual([toBusy!.id]);
    });

    it('claims only due pending deliveries, at most `limit`, oldest due first, each once', async () => {
      const T = epoch();
      const endpoint = `wh_${tag()}`;
      const due1 = await deliveries(T - 3 * MINUTE, [endpoint]);
      const due2 = await deliveries(T - 2 * MINUTE, [endpoint]);
      const due3 = await deliveries(T - MINUTE, [endpoint]);
      const exactlyNow = await deliveries(T - HOUR, [endpoint], T);
      const future = await deliveries(T - HOUR, [endpoint], T + SECOND);
      // A finished one is never due.
      const done = await deliveries(T - 4 * MINUTE, [endpoint]);
      const [doneClaim] = await outbox.claimDue(at(T - 4 * MINUTE), 1, MINUTE, 'setup');
      expect(doneClaim!.id).toBe(done[0]!.id);
      await outbox.complete(doneClaim!.id, 'setup', { status: 200, now: at(T - 4 * MINUTE) });

      const first = await outbox.claimDue(at(T), 2, 5 * MINUTE, 'worker-1');
      expect(first.map((d) => d.id)).toEqual([due1[0]!.id, due2[0]!.id]);
      for (const d of first) {
        expect(d).toMatchObject({
          status: 'pending',
          attempts: 1,
          lease_owner: 'worker-1',
          lease_expires_at: at(T + 5 * MINUTE),
        });
      }
      const second = await rival.claimDue(at(T), 10, 5 * MINUTE, 'worker-2');
      expect(second.map((d) => d.id)).toEqual([due3[0]!.id, exactlyNow[0]!.id]);
      expect(await outbox.claimDue(at(T), 10, 5 * MINUTE, 'worker-1')).toEqual([]);
      expect((await outbox.get(future[0]!.id))!).toMatchObject({ attempts: 0, lease_owner: null });
      expect((await outbox.get(done[0]!.id))!.status).toBe('succeeded');
      await expect(outbox.claimDue(at(T), 0, MINUTE, 'w')).rejects.toThrow(RangeError);
    });

    it('never gives one delivery to two instances racing for it', async () => {
      const T = epoch();
      const endpoints = Array.from({ length: 8 }, () => `wh_${tag()}`);
      const made: OutboxDelivery[] = [];
      for (let i = 0; i < 5; i += 1) made.push(...(await deliveries(T - (i + 1) * MINUTE, endpoints)));
      expect(made).toHaveLength(40);

      const race = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          (i % 2 === 0 ? outbox : rival).claimDue(at(T), 3, 10 * MINUTE, `worker-${i}`),
        ),
      );
      const claims = race.flat();
      const ids = claims.map((d) => d.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const [i, batch] of race.entries()) {
        expect(batch.length).toBeLessThanOrEqual(3);
        for (const d of batch) expect(d.lease_owner).toBe(`worker-${i}`);
      }
      // Whatever the race left is claimed by the next claims, still once each.
      for (let round = 0; round < 40 && ids.length < 40; round += 1) {
        const more = await (round % 2 ? outbox : rival).claimDue(at(T), 5, 10 * MINUTE, `drain-${round}`);
        if (more.length === 0) break;
        ids.push(...more.map((d) => d.id));
      }
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(made.map((d) => d.id).sort());
      for (const d of await Promise.all(made.map((m) => outbox.get(m.id)))) expect(d!.attempts).toBe(1);
    });

    it('lets another instance claim a delivery once its lease has expired, and only the new owner report', async () => {
      const T = epoch();
      const [d] = await deliveries(T, [`wh_${tag()}`]);
      const [mine] = await outbox.claimDue(at(T), 1, MINUTE, 'worker-a');
      expect(mine!.id).toBe(d!.id);
      expect(await rival.claimDue(at(T + MINUTE - 1), 1, MINUTE, 'worker-b')).toEqual([]);
      const [theirs] = await rival.claimDue(at(T + MINUTE), 1, MINUTE, 'worker-b');
      expect(theirs).toMatchObject({ id: d!.id, attempts: 2, lease_owner: 'worker-b' });
      expect(await outbox.complete(d!.id, 'worker-a', { status: 200, now: at(T + MINUTE) })).toBeNull();
      const done = await rival.complete(d!.id, 'worker-b', {
        status: 204,
        latency_ms: 42,
        now: at(T + MINUTE),
      });
      expect(done).toMatchObject({
        status: 'succeeded',
        attempts: 2,
        next_attempt_at: null,
        lease_owner: null,
        lease_expires_at: null,
        last_status: 204,
        last_error: null,
        latency_ms: 42,
        finished_at: at(T + MINUTE),
      });
      expect(await outbox.get(d!.id)).toEqual(done);
      // Finished: a late report by its owner is refused too, and it is never due again.
      expect(await rival.complete(d!.id, 'worker-b', { status: 200 })).toBeNull();
      expect((await outbox.claimDue(at(T + DAY), 50, MINUTE, 'late')).map((x) => x.id)).not.toContain(d!.id);
    });

    it('refuses complete and fail from anyone but the lease owner, changing nothing', async () => {
      const T = epoch();
      const [d] = await deliveries(T, [`wh_${tag()}`]);
      expect(await outbox.complete(d!.id, 'worker-a', { status: 200 })).toBeNull(); // unclaimed
      const [claimed] = await outbox.claimDue(at(T), 1, MINUTE, 'worker-a');
      expect(await rival.complete(d!.id, 'worker-b', { status: 200 })).toBeNull();
      expect(await rival.fail(d!.id, 'worker-b', { error: 'boom', dead: true })).toBeNull();
      expect(
        await rival.fail(d!.id, 'worker-b', { error: 'boom', next_attempt_at: at(T + MINUTE) }),
      ).toBeNull();
      expect(await outbox.get(d!.id)).toEqual(claimed);
      expect(await outbox.complete(`dlv_${tag()}`, 'worker-a', {})).toBeNull();
    });

    it('makes a failed delivery due again at its next attempt; a dead one stays dead until retried', async () => {
      const T = epoch();
      const [d] = await deliveries(T, [`wh_${tag()}`]);
      await outbox.claimDue(at(T), 1, MINUTE, 'worker-a');
      const failed = await outbox.fail(d!.id, 'worker-a', {
        error: 'HTTP 503',
        status: 503,
        latency_ms: 17,
        next_attempt_at: at(T + 10 * MINUTE),
        now: at(T + SECOND),
      });
      expect(failed).toMatchObject({
        status: 'failed',
        attempts: 1,
        next_attempt_at: at(T + 10 * MINUTE),
        lease_owner: null,
        lease_expires_at: null,
        last_status: 503,
        last_error: 'HTTP 503',
        latency_ms: 17,
        updated_at: at(T + SECOND),
        finished_at: null,
      });
      expect(await rival.claimDue(at(T + 10 * MINUTE - 1), 10, MINUTE, 'worker-b')).toEqual([]);
      const [again] = await rival.claimDue(at(T + 10 * MINUTE), 10, MINUTE, 'worker-b');
      expect(again).toMatchObject({ id: d!.id, status: 'failed', attempts: 2, lease_owner: 'worker-b' });

      const dead = await rival.fail(d!.id, 'worker-b', {
        error: 'connection refused',
        status: null,
        dead: true,
        now: at(T + 11 * MINUTE),
      });
      expect(dead).toMatchObject({
        status: 'dead',
        attempts: 2,
        next_attempt_at: null,
        lease_owner: null,
        last_status: null,
        last_error: 'connection refused',
        finished_at: at(T + 11 * MINUTE),
      });
      expect((await outbox.claimDue(at(T + HOUR), 50, MINUTE, 'w')).map((x) => x.id)).not.toContain(d!.id);

      const retried = await outbox.retry(d!.id, at(T + 2 * HOUR));
      expect(retried).toMatchObject({
        status: 'pending',
        attempts: 2,
        next_attempt_at: at(T + 2 * HOUR),
        finished_at: null,
        last_error: 'connection refused',
      });
      expect(await outbox.retry(d!.id)).toBeNull(); // pending: nothing to retry
      const [third] = await rival.claimDue(at(T + 2 * HOUR), 1, MINUTE, 'worker-c');
      expect(third).toMatchObject({ id: d!.id, attempts: 3, lease_owner: 'worker-c' });
      await rival.complete(d!.id, 'worker-c', { status: 200 });
      expect(await outbox.retry(d!.id)).toBeNull(); // succeeded
      expect(await outbox.retry(`dlv_${tag()}`)).toBeNull();
    });

    it('a failed delivery can be retried before its next attempt is due', async () => {
      const T = epoch();
      const [d] = await deliveries(T, [`wh_${tag()}`]);
      await outbox.claimDue(at(T), 1, MINUTE, 'worker-a');
      await outbox.fail(d!.id, 'worker-a', { error: 'HTTP 500', status: 500, next_attempt_at: at(T + DAY) });
      expect(await outbox.retry(d!.id, at(T + MINUTE))).toMatchObject({
        status: 'pending',
        next_attempt_at: at(T + MINUTE),
      });
      expect((await rival.claimDue(at(T + MINUTE), 1, MINUTE, 'worker-b'))[0]!.id).toBe(d!.id);
    });

    it('lists deliveries by endpoint and status, newest first, in pages', async () => {
      const T = epoch();
      const endpoint = `wh_${tag()}`;
      const elsewhere = `wh_${tag()}`;
      const made: OutboxDelivery[] = [];
      for (let i = 0; i < 5; i += 1) made.push(...(await deliveries(T + i * SECOND, [endpoint])));
      await deliveries(T, [elsewhere], T + 10 * SECOND);
      const [claimed] = await outbox.claimDue(at(T), 1, MINUTE, 'w');
      expect(claimed!.id).toBe(made[0]!.id);
      await outbox.fail(claimed!.id, 'w', { error: 'gone', dead: true });

      const newestFirst = [...made].reverse().map((d) => d.id);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await rival.list({ endpoint_id: endpoint, limit: 2, ...(cursor ? { cursor } : {}) });
        expect(page.items.every((d) => d.endpoint_id === endpoint)).toBe(true);
        seen.push(...page.items.map((d) => d.id));
        cursor = page.next_cursor ?? undefined;
        pages += 1;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seen).toEqual(newestFirst);

      const dead = await outbox.list({ endpoint_id: endpoint, status: 'dead', limit: 10 });
      expect(dead.items.map((d) => d.id)).toEqual([made[0]!.id]);
      const pending = await outbox.list({ endpoint_id: endpoint, status: ['pending', 'failed'], limit: 10 });
      expect(pending.items.map((d) => d.id)).toEqual(newestFirst.slice(0, 4));
      expect((await outbox.list({ endpoint_id: endpoint, status: [], limit: 10 })).items).toEqual([]);
      expect((await outbox.list({ endpoint_id: `wh_${tag()}`, limit: 10 })).items).toEqual([]);
      expect(await outbox.get(made[1]!.id)).toEqual(made[1]);
      expect(await outbox.get(`dlv_${tag()}`)).toBeNull();
      await expect(outbox.list({ limit: 2, cursor: 'bm90LWEtY3Vyc29y' })).rejects.toBeInstanceOf(QueryError);
    });
  });

  describe('retention', () => {
    it('purges finished deliveries and then unreferenced events past the retention date', async () => {
      const T = epoch();
      const old = T - 2 * DAY;
      const cutoff = at(T - DAY);
      const e1 = event(at(old)); // its delivery succeeded long ago: both go
      const e2 = event(at(old)); // its delivery is still pending: both stay
      const e3 = event(at(old)); // no deliveries: goes
      const e4 = event(at(T)); // recent, its delivery dead just now: both stay
      const e5 = event(at(old)); // delivery dead long ago: both go
      await outbox.append([e1, e2, e3, e4, e5]);
      const [d1, d2, d4, d5] = await outbox.enqueue([
        { event_id: e1.id, endpoint_id: 'wh_p', now: at(old) },
        { event_id: e2.id, endpoint_id: 'wh_p', now: at(old), next_attempt_at: at(T + HOUR) },
        { event_id: e4.id, endpoint_id: 'wh_p', now: at(T) },
        { event_id: e5.id, endpoint_id: 'wh_p', now: at(old) },
      ]);
      const claimedOld = await outbox.claimDue(at(old), 10, MINUTE, 'w');
      expect(claimedOld.map((d) => d.id).sort()).toEqual([d1!.id, d5!.id].sort());
      await outbox.complete(d1!.id, 'w', { status: 200, now: at(old) });
      await outbox.fail(d5!.id, 'w', { error: 'gone', dead: true, now: at(old) });
      expect((await outbox.claimDue(at(T), 10, MINUTE, 'w')).map((d) => d.id)).toEqual([d4!.id]);
      await outbox.fail(d4!.id, 'w', { error: 'gone', dead: true, now: at(T) });

      expect(await rival.purgeOlderThan(cutoff)).toEqual({ events: 3, deliveries: 2 });
      expect(await outbox.get(d1!.id)).toBeNull();
      expect(await outbox.get(d5!.id)).toBeNull();
      expect(await outbox.get(d2!.id)).not.toBeNull();
      expect(await outbox.get(d4!.id)).not.toBeNull();
      expect(await outbox.getEvent(e1.id)).toBeNull();
      expect(await outbox.getEvent(e3.id)).toBeNull();
      expect(await outbox.getEvent(e5.id)).toBeNull();
      expect(await outbox.getEvent(e2.id)).not.toBeNull();
      expect(await outbox.getEvent(e4.id)).not.toBeNull();
      expect(await rival.purgeOlderThan(cutoff)).toEqual({ events: 0, deliveries: 0 });
      // A purged pair can be enqueued afresh (its claim history went with it).
      const [fresh] = await outbox.enqueue([{ event_id: e1.id, endpoint_id: 'wh_p', now: at(T) }]);
      expect(fresh).toMatchObject({ id: d1!.id, status: 'pending', attempts: 0 });
      expect((await outbox.claimDue(at(T), 10, MINUTE, 'w2')).map((d) => d.id)).toEqual([d1!.id]);
    });
  });
}
