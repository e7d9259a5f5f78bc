/**
 * The durable store contract: every DurableStore adapter must pass this suite unchanged.
 * Each adapter's *.test.ts file supplies a harness that opens stores on one data set it owns.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { StoreConflictError } from '../../src/store/errors.js';
import type {
  AuditEntry,
  BulkCreateResult,
  DurableStore,
  NewAuditEntry,
  NewUser,
  User,
} from '../../src/store/ports.js';
import {
  and,
  decodeCursor,
  encodeCursor,
  keysetAfter,
  QueryError,
  totalOrder,
  type Expr,
  type Scalar,
  type SortKey,
} from '../../src/store/query.js';
import { userSortValue } from '../../src/store/user-fields.js';

export interface DurableHarness {
  /** Opens a new store instance on the harness's data set (a second call must see the same data). */
  open(): Promise<DurableStore>;
  /** Drops the data set. */
  destroy(): Promise<void>;
  /**
   * Whether the backend applies concurrent updates of one document atomically. False only for
   * FerretDB 1.x, whose updates are read-then-write-back; there, racing updates are not asserted
   * (the suite says so on stderr) and exactness-critical counters must not rely on updates.
   */
  atomicDocumentUpdates(store: DurableStore): boolean;
}

const tag = () => randomBytes(6).toString('hex');

export function describeDurableStoreContract(harness: DurableHarness): void {
  let store: DurableStore;

  beforeAll(async () => {
    store = await harness.open();
    await store.migrate();
  });

  afterAll(async () => {
    await store?.close();
    await harness.destroy();
  });

  const newUser = (over: Partial<NewUser> = {}): NewUser => ({
    email: `user-${tag()}@example.com`,
    first_name: 'Ada',
    last_name: 'Lovelace',
    ...over,
  });

  describe('users', () => {
    it('creates a user with defaults and reads it back by id and by email in any case', async () => {
      const email = `Mixed.Case-${tag()}@Example.COM`;
      const created = await store.users.create(newUser({ email, metadata: { plan: 'pro', seats: 3 } }));
      expect(created.id).toMatch(/^usr_[0-9a-z]{26}$/);
      expect(created).toMatchObject({
        email,
        first_name: 'Ada',
        last_name: 'Lovelace',
        role: 'user',
        status: 'active',
        email_verified: false,
        password_hash: null,
        password_reset_required: false,
        metadata: { plan: 'pro', seats: 3 },
        preferences: {},
        login_count: 0,
        last_login: null,
        deleted_at: null,
      });
      expect(created.created_at).toBeInstanceOf(Date);
      expect(created.updated_at.getTime()).toBe(created.created_at.getTime());

      expect(await store.users.findById(created.id)).toEqual(created);
      expect(await store.users.findByEmail(email.toLowerCase())).toEqual(created);
      expect(await store.users.findByEmail(`  ${email.toUpperCase()} `)).toEqual(created);
      expect(await store.users.findById('usr_missing')).toBeNull();
      expect(await store.users.findByEmail('nobody@example.com')).toBeNull();
    });

    it('refuses a second user with the same email in another case', async () => {
      const email = `dup-${tag()}@example.com`;
      await store.users.create(newUser({ email }));
      await expect(store.users.create(newUser({ email: email.toUpperCase() }))).rejects.toEqual(
        new StoreConflictError('email'),
      );
    });

    it('lets exactly one of 20 parallel creates of one email succeed', async () => {
      const email = `race-${tag()}@example.com`;
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => store.users.create(newUser({ email, first_name: `R${i}` }))),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(ok).toHaveLength(1);
      expect(failed).toHaveLength(19);
      for (const f of failed) expect(f.reason).toBeInstanceOf(StoreConflictError);
      expect(await store.users.count({ where: { field: 'email', op: 'eq', value: email } })).toBe(1);
    });

    it('applies partial updates, bumps updated_at and keeps other fields', async () => {
      const user = await store.users.create(newUser({ metadata: { a: 1 } }));
      await new Promise((r) => setTimeout(r, 5));
      const updated = await store.users.update(user.id, {
        first_name: 'Grace',
        status: 'suspended',
        metadata: { b: 'two' },
        email_verified: true,
        password_hash: '$argon2id$fake',
      });
      expect(updated).toMatchObject({
        id: user.id,
        email: user.email,
        first_name: 'Grace',
        last_name: 'Lovelace',
        status: 'suspended',
        metadata: { b: 'two' },
        email_verified: true,
        password_hash: '$argon2id$fake',
      });
      expect(updated!.updated_at.getTime()).toBeGreaterThan(user.updated_at.getTime());
      expect(updated!.created_at).toEqual(user.created_at);
      expect(await store.users.findById(user.id)).toEqual(updated);
      expect(await store.users.update('usr_missing', { first_name: 'X' })).toBeNull();
    });

    it('refuses an update to an email another user holds, and allows a case-only change of ones own', async () => {
      const a = await store.users.create(newUser());
      const b = await store.users.create(newUser());
      await expect(store.users.update(b.id, { email: a.email.toUpperCase() })).rejects.toBeInstanceOf(
        StoreConflictError,
      );
      expect((await store.users.findById(b.id))!.email).toBe(b.email);
      const recased = await store.users.update(a.id, { email: a.email.toUpperCase() });
      expect(recased!.email).toBe(a.email.toUpperCase());
      expect((await store.users.findByEmail(a.email))!.id).toBe(a.id);
    });

    it('hides soft-deleted users, keeps their email reserved and restores them', async () => {
      const user = await store.users.create(newUser());
      const deletedAt = new Date();
      const deleted = await store.users.update(user.id, { deleted_at: deletedAt });
      expect(deleted!.deleted_at).toEqual(deletedAt);
      expect(await store.users.findById(user.id)).toBeNull();
      expect(await store.users.findByEmail(user.email)).toBeNull();
      expect((await store.users.findById(user.id, 'include'))!.id).toBe(user.id);
      expect((await store.users.findById(user.id, 'only'))!.id).toBe(user.id);
      expect(await store.users.update(user.id, { first_name: 'Nope' })).toBeNull();
      await expect(store.users.create(newUser({ email: user.email }))).rejects.toBeInstanceOf(
        StoreConflictError,
      );
      expect(await store.users.recordLogin(user.id, new Date())).toBeNull();

      const restored = await store.users.update(user.id, { deleted_at: null }, 'only');
      expect(restored!.deleted_at).toBeNull();
      expect((await store.users.findById(user.id))!.id).toBe(user.id);
      expect(await store.users.findById(user.id, 'only')).toBeNull();
    });

    it('erases a user and their role links', async () => {
      const user = await store.users.create(newUser());
      const role = await store.roles.create({ name: `erase-${tag()}` });
      expect(await store.roles.assign(user.id, role.id)).toBe(true);
      expect(await store.users.remove(user.id)).toBe(true);
      expect(await store.users.findById(user.id, 'include')).toBeNull();
      expect(await store.roles.countUsers(role.id)).toBe(0);
      expect(await store.users.remove(user.id)).toBe(false);
      // The email is free again.
      expect((await store.users.create(newUser({ email: user.email }))).email).toBe(user.email);
    });

    it('counts logins exactly, racing ones too where the backend updates atomically', async () => {
      const user = await store.users.create(newUser());
      const at = new Date('2026-03-01T10:00:00.000Z');
      if (harness.atomicDocumentUpdates(store)) {
        await Promise.all(Array.from({ length: 10 }, () => store.users.recordLogin(user.id, at)));
      } else {
        process.stderr.write(
          'NOTE durable contract: this backend does not apply concurrent updates of one document atomically ' +
            '(FerretDB 1.x); racing recordLogin calls are only asserted on MongoDB and embedded.\n',
        );
        for (let i = 0; i < 10; i += 1) await store.users.recordLogin(user.id, at);
      }
      const after = await store.users.findById(user.id);
      expect(after!.login_count).toBe(10);
      expect(after!.last_login).toEqual(at);
      expect(await store.users.recordLogin('usr_missing', at)).toBeNull();
    });
  });

  describe('user queries', () => {
    const batch = tag();
    const inBatch: Expr = { field: 'metadata.batch', op: 'eq', value: batch };
    let users: User[] = [];
    const base = Date.parse('2026-01-01T00:00:00.000Z');

    const ids = (list: User[]) => list.map((u) => u.id);
    const query = (where?: Expr, sort?: SortKey[], extra: { search?: string } = {}) =>
      store.users.list({ where: and(inBatch, where), sort, limit: 100, ...extra });

    beforeAll(async () => {
      const people: [string, string, string, string, number, object][] = [
        ['Alice', 'Smith', 'admin', 'active', 5, { tier: 'gold', score: 10, beta: true, org: { size: 50 } }],
        ['Bob', 'Jones', 'user', 'active', 0, { tier: 'silver', score: 7, beta: false }],
        ['Carol', 'Smith', 'user', 'suspended', 2, { tier: 'gold', score: '10' }],
        [
          'Dave',
          'Brown',
          'editor',
          'inactive',
          9,
          { tier: 'bronze', score: 3.5, beta: true, org: { size: 5 } },
        ],
        ['Eve', 'Adams', 'user', 'active', 1, { score: 12 }],
        ['Frank', 'smith-jones', 'admin', 'active', 3, { tier: 'gold', note: 'likes $where and {"$gt": 1}' }],
      ];
      users = [];
      for (const [i, [first, last, role, status, logins, meta]] of people.entries()) {
        const u = await store.users.create({
          email: `${first.toLowerCase()}.${batch}@Example.org`,
          first_name: first,
          last_name: last,
          role,
          status: status as User['status'],
          metadata: { batch, ...meta } as never,
          created_at: new Date(base + i * 60_000),
        });
        for (let n = 0; n < logins; n += 1) {
          await store.users.recordLogin(u.id, new Date(base + 86_400_000 + n * 1000 + i * 10));
        }
        users.push((await store.users.findById(u.id))!);
      }
    });

    const byName = (...names: string[]) => names.map((n) => users.find((u) => u.first_name === n)!.id);

    it('filters typed fields with every operator', async () => {
      expect(ids(await query({ field: 'role', op: 'eq', value: 'admin' }))).toEqual(
        expect.arrayContaining(byName('Alice', 'Frank')),
      );
      expect(await query({ field: 'role', op: 'eq', value: 'admin' })).toHaveLength(2);
      expect(await query({ field: 'status', op: 'ne', value: 'active' })).toHaveLength(2);
      expect(
        ids(
          await query({ field: 'login_count', op: 'gt', value: 3 }, [{ field: 'login_count', dir: 'asc' }]),
        ),
      ).toEqual(byName('Alice', 'Dave'));
      expect(await query({ field: 'login_count', op: 'gte', value: 3 })).toHaveLength(3);
      expect(await query({ field: 'login_count', op: 'lt', value: 2 })).toHaveLength(2);
      expect(await query({ field: 'login_count', op: 'lte', value: 2 })).toHaveLength(3);
      expect(await query({ field: 'status', op: 'in', value: ['suspended', 'inactive'] })).toHaveLength(2);
      expect(
        ids(
          await query({ field: 'last_name', op: 'contains', value: 'MIT' }, [
            { field: 'first_name', dir: 'asc' },
          ]),
        ),
      ).toEqual(byName('Alice', 'Carol', 'Frank'));
      expect(
        await query({ field: 'created_at', op: 'gte', value: new Date(base + 3 * 60_000) }),
      ).toHaveLength(3);
      expect(await query({ field: 'created_at', op: 'lt', value: new Date(base + 60_000) })).toHaveLength(1);
      expect(await query({ field: 'last_login', op: 'eq', value: null })).toHaveLength(1);
      expect(await query({ field: 'last_login', op: 'ne', value: null })).toHaveLength(5);
      expect(await query({ field: 'email_verified', op: 'eq', value: false })).toHaveLength(6);
    });

    it('compares emails case-insensitively', async () => {
      const email = `ALICE.${batch}@EXAMPLE.ORG`;
      expect(ids(await query({ field: 'email', op: 'eq', value: email }))).toEqual(byName('Alice'));
      expect(await query({ field: 'email', op: 'contains', value: 'EXAMPLE.org' })).toHaveLength(6);
    });

    it('filters metadata paths with type-strict comparisons like MongoDB', async () => {
      expect(await query({ field: 'metadata.tier', op: 'eq', value: 'gold' })).toHaveLength(3);
      expect(ids(await query({ field: 'metadata.score', op: 'eq', value: 10 }))).toEqual(byName('Alice'));
      expect(ids(await query({ field: 'metadata.score', op: 'eq', value: '10' }))).toEqual(byName('Carol'));
      expect(
        ids(
          await query({ field: 'metadata.score', op: 'gt', value: 7 }, [{ field: 'first_name', dir: 'asc' }]),
        ),
      ).toEqual(byName('Alice', 'Eve'));
      expect(await query({ field: 'metadata.score', op: 'lte', value: 7 })).toHaveLength(2);
      expect(
        ids(
          await query({ field: 'metadata.beta', op: 'eq', value: true }, [
            { field: 'first_name', dir: 'asc' },
          ]),
        ),
      ).toEqual(byName('Alice', 'Dave'));
      expect(await query({ field: 'metadata.beta', op: 'ne', value: true })).toHaveLength(4);
      expect(ids(await query({ field: 'metadata.org.size', op: 'gte', value: 10 }))).toEqual(byName('Alice'));
      expect(await query({ field: 'metadata.tier', op: 'eq', value: null })).toHaveLength(1);
      expect(await query({ field: 'metadata.tier', op: 'ne', value: null })).toHaveLength(5);
      expect(await query({ field: 'metadata.tier', op: 'in', value: ['silver', 'bronze'] })).toHaveLength(2);
      expect(ids(await query({ field: 'metadata.note', op: 'contains', value: '{"$gt"' }))).toEqual(
        byName('Frank'),
      );
      expect(await query({ field: 'metadata.missing', op: 'eq', value: 'x' })).toHaveLength(0);
    });

    it('combines and/or', async () => {
      const where: Expr = {
        or: [
          {
            and: [
              { field: 'role', op: 'eq', value: 'admin' },
              { field: 'login_count', op: 'gt', value: 4 },
            ],
          },
          { field: 'status', op: 'eq', value: 'inactive' },
        ],
      };
      expect(ids(await query(where, [{ field: 'first_name', dir: 'asc' }]))).toEqual(byName('Alice', 'Dave'));
    });

    it('refuses unknown fields, operators and non-scalar values instead of passing them on', async () => {
      const bad: unknown[] = [
        { field: '$where', op: 'eq', value: 'sleep(1000)' },
        { field: 'password_hash', op: 'eq', value: 'x' },
        { field: 'metadata.$gt', op: 'eq', value: 1 },
        { field: 'metadata.a..b', op: 'eq', value: 1 },
        { field: 'role', op: '$regex', value: '.*' },
        { field: 'role', op: 'eq', value: { $ne: null } },
        { field: 'role', op: 'in', value: [{ $gt: '' }] },
        { field: 'role', op: 'gt', value: null },
      ];
      for (const where of bad) {
        await expect(store.users.list({ where: where as Expr, limit: 10 })).rejects.toBeInstanceOf(
          QueryError,
        );
      }
      await expect(
        store.users.list({ limit: 10, sort: [{ field: 'password_hash', dir: 'asc' }] }),
      ).rejects.toBeInstanceOf(QueryError);
    });

    it('sorts by several fields with id as the final tie-breaker', async () => {
      const sorted = await query(undefined, [
        { field: 'role', dir: 'asc' },
        { field: 'login_count', dir: 'desc' },
      ]);
      expect(ids(sorted)).toEqual(byName('Alice', 'Frank', 'Dave', 'Carol', 'Eve', 'Bob'));
      const byCreated = await query(undefined, [{ field: 'created_at', dir: 'desc' }]);
      expect(ids(byCreated)).toEqual([...ids(users)].reverse());
      const byLastLogin = await query(undefined, [{ field: 'last_login', dir: 'asc' }]);
      expect(ids(byLastLogin)[0]).toBe(byName('Bob')[0]); // nulls first ascending
      const byLastLoginDesc = await query(undefined, [{ field: 'last_login', dir: 'desc' }]);
      expect(ids(byLastLoginDesc).at(-1)).toBe(byName('Bob')[0]); // nulls last descending
    });

    it('pages with limit and offset and counts the whole result', async () => {
      const sort: SortKey[] = [{ field: 'created_at', dir: 'asc' }];
      const page1 = await store.users.list({ where: inBatch, sort, limit: 4, offset: 0 });
      const page2 = await store.users.list({ where: inBatch, sort, limit: 4, offset: 4 });
      expect(ids([...page1, ...page2])).toEqual(ids(users));
      expect(page2).toHaveLength(2);
      expect(await store.users.count({ where: inBatch })).toBe(6);
      expect(
        await store.users.count({ where: and(inBatch, { field: 'role', op: 'eq', value: 'user' }) }),
      ).toBe(3);
    });

    it('returns a page with the total of the whole filter, which a keyset position does not narrow', async () => {
      const order = totalOrder([{ field: 'created_at', dir: 'asc' }]);
      const first = await store.users.listPage({ where: inBatch, sort: order, limit: 2 });
      expect(ids(first.items)).toEqual(ids(users).slice(0, 2));
      expect(first.total).toBe(6);
      const after = keysetAfter(
        order,
        order.map((k) => userSortValue(first.items[1]!, k.field)),
      );
      const second = await store.users.listPage({ where: inBatch, after, sort: order, limit: 2 });
      expect(ids(second.items)).toEqual(ids(users).slice(2, 4));
      expect(second.total).toBe(6);
      const beyond = await store.users.listPage({ where: inBatch, sort: order, limit: 2, offset: 10 });
      expect(beyond).toEqual({ items: [], total: 6 });
      const searched = await store.users.listPage({ where: inBatch, search: 'smith', sort: order, limit: 1 });
      expect(searched.items).toHaveLength(1);
      expect(searched.total).toBe(3);
      const created = await store.users.create({
        email: `late-${tag()}@example.org`,
        first_name: 'Late',
        last_name: 'Smith',
        metadata: { batch },
      });
      expect(
        (await store.users.listPage({ where: inBatch, search: 'smith', sort: order, limit: 1 })).total,
      ).toBe(4);
      expect(await store.users.count({ where: inBatch, search: 'smith' })).toBe(4);
      await store.users.remove(created.id);
      expect(await store.users.count({ where: inBatch, search: 'smith' })).toBe(3);
    });

    it('searches by word prefixes of names and email', async () => {
      const found = (list: User[]) => ids(list).sort();
      expect(found(await query(undefined, undefined, { search: 'smi' }))).toEqual(
        byName('Alice', 'Carol', 'Frank').sort(),
      );
      expect(found(await query(undefined, undefined, { search: 'alice smith' }))).toEqual(byName('Alice'));
      expect(found(await query(undefined, undefined, { search: 'JONES' }))).toEqual(
        byName('Bob', 'Frank').sort(),
      );
      expect(found(await query(undefined, undefined, { search: `eve.${batch}` }))).toEqual(byName('Eve'));
      expect(await query(undefined, undefined, { search: 'zzzz' })).toHaveLength(0);
      expect(await store.users.count({ where: inBatch, search: 'smith' })).toBe(3);
    });

    it('pages with keyset cursors in both directions, across nulls, and stays stable while users are added', async () => {
      for (const sort of [
        [{ field: 'last_login', dir: 'asc' }],
        [{ field: 'last_login', dir: 'desc' }],
        [
          { field: 'role', dir: 'asc' },
          { field: 'login_count', dir: 'desc' },
        ],
        [{ field: 'email', dir: 'desc' }],
      ] as SortKey[][]) {
        const order = totalOrder(sort);
        const all = await store.users.list({ where: inBatch, sort: order, limit: 100 });
        const seen: User[] = [];
        let after: Expr | undefined;
        for (let guard = 0; guard < 10; guard += 1) {
          const page = await store.users.list({ where: and(inBatch, after), sort: order, limit: 2 });
          seen.push(...page);
          if (page.length < 2) break;
          const last = page[page.length - 1]!;
          const cursor = encodeCursor(order.map((k) => userSortValue(last, k.field)));
          after = keysetAfter(order, decodeCursor(cursor, order.length)!);
          if (guard === 0) {
            // A user created mid-iteration sorting before the cursor must not shift later pages.
            await store.users.create({
              email: `late-${tag()}@example.org`,
              first_name: 'Late',
              last_name: 'Comer',
              role: 'aaa',
              metadata: { batch: `${batch}-late` },
            });
          }
        }
        expect(ids(seen)).toEqual(ids(all));
      }
    });

    it('excludes soft-deleted users from lists unless asked', async () => {
      const victim = users.find((u) => u.first_name === 'Eve')!;
      await store.users.update(victim.id, { deleted_at: new Date() });
      expect(ids(await query())).not.toContain(victim.id);
      expect(ids(await store.users.list({ where: inBatch, limit: 100, deleted: 'include' }))).toContain(
        victim.id,
      );
      expect(ids(await store.users.list({ where: inBatch, limit: 100, deleted: 'only' }))).toEqual([
        victim.id,
      ]);
      expect(await store.users.count({ where: inBatch, deleted: 'only' })).toBe(1);
      await store.users.update(victim.id, { deleted_at: null }, 'only');
    });
  });

  describe('bulk user creation', () => {
    const emailsOf = (label: string, n: number) =>
      Array.from({ length: n }, (_, i) => `${label}-${i}-${tag()}@example.org`);
    const created = (results: BulkCreateResult[]) =>
      results.map((r) => ('user' in r ? r.user : undefined)).filter((u): u is User => u !== undefined);

    it('creates every user of a batch in input order, like create, and finds them by id, email and search', async () => {
      const batch = tag();
      for (const atomic of [true, false]) {
        const inputs: NewUser[] = [
          newUser({ email: `  Bulk.One-${batch}-${atomic}@Example.ORG `, first_name: `Zebulon${batch}` }),
          newUser({ role: 'editor', status: 'suspended', metadata: { batch, nested: { a: [1] } } }),
          newUser({ email_verified: true, password_hash: '$argon2id$bulk', password_reset_required: true }),
        ];
        const results = await store.users.createMany(inputs, { atomic });
        expect(results).toHaveLength(3);
        const users = created(results);
        expect(users).toHaveLength(3);
        expect(users[0]).toMatchObject({
          email: `Bulk.One-${batch}-${atomic}@Example.ORG`,
          first_name: `Zebulon${batch}`,
          last_name: 'Lovelace',
          role: 'user',
          status: 'active',
          email_verified: false,
          password_hash: null,
          password_reset_required: false,
          metadata: {},
          preferences: {},
          login_count: 0,
          last_login: null,
          deleted_at: null,
        });
        expect(users[1]).toMatchObject({ role: 'editor', status: 'suspended', metadata: { batch } });
        expect(users[2]).toMatchObject({
          email_verified: true,
          password_hash: '$argon2id$bulk',
          password_reset_required: true,
        });
        for (const [i, user] of users.entries()) {
          expect(user.id).toMatch(/^usr_[0-9a-z]{26}$/);
          expect(user.created_at).toBeInstanceOf(Date);
          expect(user.updated_at).toEqual(user.created_at);
          expect(await store.users.findById(user.id)).toEqual(user);
          expect(await store.users.findByEmail(inputs[i]!.email.toUpperCase())).toEqual(user);
        }
        expect(new Set(users.map((u) => u.id)).size).toBe(3);
      }
      // Search terms are written for bulk-created users as for single ones.
      const found = await store.users.list({ search: `zebulon${batch} bulk`, limit: 10 });
      expect(found.map((u) => u.first_name)).toEqual([`Zebulon${batch}`, `Zebulon${batch}`]);
      expect(await store.users.count({ search: `bulk.one-${batch}-true` })).toBe(1);
      expect(await store.users.createMany([], { atomic: true })).toEqual([]);
    });

    /** A stored user, a soft-deleted one, and a batch that collides with both and with itself. */
    async function collidingBatch(atomic: boolean) {
      const stored = await store.users.create(newUser());
      const deleted = await store.users.create(newUser());
      await store.users.update(deleted.id, { deleted_at: new Date() });
      const [a, b, c] = emailsOf(`mixed-${atomic}`, 3);
      const inputs: NewUser[] = [
        newUser({ email: a!, first_name: 'First' }),
        newUser({ email: stored.email.toUpperCase() }),
        newUser({ email: b! }),
        newUser({ email: ` ${a!.toUpperCase()}`, first_name: 'Second' }),
        newUser({ email: deleted.email }),
        newUser({ email: c!, id: stored.id }),
        newUser({ email: c! }),
      ];
      const results = await store.users.createMany(inputs, { atomic });
      return { inputs, results, emails: [a!, b!, c!] };
    }

    it('reports duplicates in the batch and taken emails and ids as conflicts, and stores the rest when not atomic', async () => {
      const { results, emails } = await collidingBatch(false);
      expect(results.map((r) => Object.keys(r)[0])).toEqual([
        'user',
        'conflict',
        'user',
        'conflict',
        'conflict',
        'conflict',
        'user',
      ]);
      expect(results.filter((r) => 'conflict' in r)).toEqual([
        { conflict: 'email' },
        { conflict: 'email' },
        { conflict: 'email' },
        { conflict: 'id' },
      ]);
      // The first occurrence of a duplicated email wins.
      expect((await store.users.findByEmail(emails[0]!))!.first_name).toBe('First');
      for (const user of created(results)) expect(await store.users.findById(user.id)).toEqual(user);
      expect(await store.users.count({ where: { field: 'email', op: 'in', value: emails } })).toBe(3);
    });

    it('stores nothing of an atomic batch with any conflict and reports the other items aborted', async () => {
      const { results, emails } = await collidingBatch(true);
      expect(results).toEqual([
        { aborted: true },
        { conflict: 'email' },
        { aborted: true },
        { conflict: 'email' },
        { conflict: 'email' },
        { conflict: 'id' },
        { aborted: true },
      ]);
      expect(
        await store.users.count({ where: { field: 'email', op: 'in', value: emails }, deleted: 'include' }),
      ).toBe(0);

      // A duplicate inside the batch is enough to abort it.
      const [x, y] = emailsOf('self', 2);
      const selfColliding = await store.users.createMany(
        [newUser({ email: x! }), newUser({ email: y! }), newUser({ email: x!.toUpperCase() })],
        { atomic: true },
      );
      expect(selfColliding).toEqual([{ aborted: true }, { aborted: true }, { conflict: 'email' }]);
      expect(await store.users.findByEmail(x!)).toBeNull();
      expect(await store.users.findByEmail(y!)).toBeNull();
    });

    it('creates 100 users in one call within a second or two, in either mode', async () => {
      for (const atomic of [true, false]) {
        const batch = tag();
        const inputs = emailsOf(`hundred-${batch}`, 100).map((email, i) =>
          newUser({ email, first_name: `Member${i}`, metadata: { batch } }),
        );
        const started = Date.now();
        const results = await store.users.createMany(inputs, { atomic });
        const elapsed = Date.now() - started;
        expect(created(results).map((u) => u.email)).toEqual(inputs.map((u) => u.email));
        expect(elapsed).toBeLessThan(2000);
        expect(await store.users.count({ where: { field: 'metadata.batch', op: 'eq', value: batch } })).toBe(
          100,
        );
      }
      // An atomic batch of 100 that fails on its last item leaves none of the other 99 behind.
      const batch = tag();
      const taken = await store.users.create(newUser());
      const inputs = [
        ...emailsOf(`late-fail-${batch}`, 99).map((email) => newUser({ email, metadata: { batch } })),
        newUser({ email: taken.email, metadata: { batch } }),
      ];
      const results = await store.users.createMany(inputs, { atomic: true });
      expect(results.at(-1)).toEqual({ conflict: 'email' });
      expect(results.slice(0, 99).every((r) => 'aborted' in r)).toBe(true);
      expect(await store.users.count({ where: { field: 'metadata.batch', op: 'eq', value: batch } })).toBe(0);
    });

    it('keeps an atomic batch all-or-nothing while other calls take its emails concurrently', async () => {
      for (let round = 0; round < 5; round += 1) {
        const batch = tag();
        const emails = emailsOf(`contended-${batch}`, 20);
        const shared = emailsOf(`shared-${batch}`, 1)[0]!;
        const inBatch: Expr = { field: 'metadata.batch', op: 'eq', value: batch };
        // Three overlapping atomic batches (sharing one email) and single creates of some of their emails.
        const batches = [0, 1, 2].map((b) =>
          store.users.createMany(
            [
              ...emails.slice(b * 5, b * 5 + 8).map((email) => newUser({ email, metadata: { batch, b } })),
              newUser({ email: shared, metadata: { batch, b } }),
            ],
            { atomic: true },
          ),
        );
        const singles = [3, 11, 19].map((i) =>
          store.users
            .create(newUser({ email: emails[i]!, metadata: { solo: batch } }))
            .catch((err: unknown) => err),
        );
        const outcomes = await Promise.all(batches);
        await Promise.all(singles);
        let succeeded = 0;
        for (const [b, results] of outcomes.entries()) {
          const mine = await store.users.count({
            where: and(inBatch, { field: 'metadata.b', op: 'eq', value: b }),
            deleted: 'include',
          });
          if (results.every((r) => 'user' in r)) {
            succeeded += 1;
            expect(mine).toBe(9);
          } else {
            expect(results.some((r) => 'conflict' in r)).toBe(true);
            expect(results.every((r) => 'conflict' in r || 'aborted' in r)).toBe(true);
            expect(mine).toBe(0);
          }
        }
        // At most one batch can hold the shared email.
        expect(succeeded).toBeLessThanOrEqual(1);
        expect(await store.users.count({ where: { field: 'email', op: 'eq', value: shared } })).toBe(
          succeeded,
        );
      }
    });
  });

  describe('audit trail', () => {
    const batch = tag();
    const userType = `user-${batch}`;
    const roleType = `role-${batch}`;
    const inBatch: Expr = { field: 'target_type', op: 'in', value: [userType, roleType] };
    const base = Date.parse('2026-02-01T12:00:00.000Z');
    const at = (seconds: number) => new Date(base + seconds * 1000);
    let entries: AuditEntry[] = [];

    const entry = (over: Partial<NewAuditEntry>): NewAuditEntry => ({
      actor_type: 'user',
      actor_id: `usr_actor1-${batch}`,
      actor_client_id: null,
      action: 'user.updated',
      target_type: userType,
      target_id: `usr_target1-${batch}`,
      request_id: null,
      ip_address: null,
      user_agent: null,
      changes: null,
      details: null,
      ...over,
    });
    const ids = (list: AuditEntry[]) => list.map((e) => e.id);
    /** Newest first, then id descending: the order every adapter must produce by default. */
    const newestFirst = (list: AuditEntry[]) =>
      [...list].sort(
        (a, b) => b.timestamp.getTime() - a.timestamp.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
      );
    const query = (where?: Expr, sort?: SortKey[], limit = 100) =>
      store.audit.list({ where: and(inBatch, where), sort, limit });

    beforeAll(async () => {
      entries = [];
      const seed: NewAuditEntry[] = [
        entry({
          timestamp: at(0),
          action: 'user.created',
          actor_client_id: `cli-${batch}`,
          request_id: `req-${batch}-0`,
          ip_address: '203.0.113.7',
          user_agent: 'curl/8.5',
          changes: { email: { before: null, after: 'a@example.org' } },
        }),
        entry({
          timestamp: at(1),
          actor_type: 'client',
          actor_id: `cli-${batch}`,
          actor_client_id: `cli-${batch}`,
        }),
        entry({
          timestamp: at(1),
          actor_type: 'system',
          actor_id: 'system',
          action: 'role.deleted',
          target_type: roleType,
          target_id: `rol_1-${batch}`,
          details: { reason: 'cleanup' },
        }),
        entry({ timestamp: at(1), action: 'user.login', target_id: `usr_target2-${batch}` }),
        entry({ timestamp: at(1), action: 'user.login', target_id: null }),
        entry({ timestamp: at(2), actor_id: `usr_actor2-${batch}`, target_id: `usr_target2-${batch}` }),
        entry({
          timestamp: at(3),
          action: 'role.created',
          target_type: roleType,
          target_id: `rol_2-${batch}`,
        }),
      ];
      for (const e of seed) entries.push(await store.audit.append(e));
    });

    it('appends many entries in one write, keeping every field', async () => {
      const many = Array.from({ length: 25 }, (_, n) =>
        entry({ target_type: `bulk-${batch}`, target_id: `t${n}`, details: { n }, timestamp: at(1000 + n) }),
      );
      await store.audit.appendMany(many);
      await store.audit.appendMany([]);
      const stored = await store.audit.list({
        where: { field: 'target_type', op: 'eq', value: `bulk-${batch}` },
        sort: [{ field: 'timestamp', dir: 'asc' }],
        limit: 100,
      });
      expect(stored.map((e) => [e.target_id, e.details])).toEqual(many.map((e) => [e.target_id, e.details]));
      expect(stored.every((e) => /^aud_/.test(e.id))).toBe(true);
    });

    it('appends entries with generated ids, a default timestamp of now, and reads them back as written', async () => {
      const before = Date.now();
      const appended = await store.audit.append(
        entry({
          target_type: `lone-${batch}`,
          actor_client_id: 'cli-x',
          request_id: 'req-x',
          ip_address: '2001:db8::1',
          user_agent: 'Mozilla/5.0',
        }),
      );
      expect(appended.id).toMatch(/^aud_[0-9a-z]{26}$/);
      expect(appended.timestamp.getTime()).toBeGreaterThanOrEqual(before - 1);
      expect(appended.timestamp.getTime()).toBeLessThanOrEqual(Date.now() + 1);
      expect(appended).toMatchObject({
        actor_type: 'user',
        actor_id: `usr_actor1-${batch}`,
        actor_client_id: 'cli-x',
        action: 'user.updated',
        target_type: `lone-${batch}`,
        target_id: `usr_target1-${batch}`,
        request_id: 'req-x',
        ip_address: '2001:db8::1',
        user_agent: 'Mozilla/5.0',
        changes: null,
        details: null,
      });
      expect(
        await store.audit.list({
          where: { field: 'target_type', op: 'eq', value: `lone-${batch}` },
          limit: 10,
        }),
      ).toEqual([appended]);
      const chosen = await store.audit.append(
        entry({ id: `aud_chosen-${batch}`, timestamp: at(-100), target_type: `lone-${batch}` }),
      );
      expect(chosen.id).toBe(`aud_chosen-${batch}`);
      expect(chosen.timestamp).toEqual(at(-100));
      await expect(store.audit.append(entry({ id: chosen.id }))).rejects.toEqual(
        new StoreConflictError('id'),
      );
    });

    it('round-trips free-form changes and details exactly', async () => {
      const changes = {
        'metadata.plan': { before: 'free', after: 'pro' },
        $set: {
          before: null,
          after: { a: [1, 2.5, -3, 2 ** 40, true, false, null, '', { deep: { er: ['x'] } }] },
        },
        empty: {},
        list: [],
        unicode: { before: 'Zoë 日本 🚀', after: 'line\nbreak\ttab "quoted" \\ back' },
      };
      const details = { nested: { 'dotted.key': 1, $op: 'x' }, zero: 0, negative: -1.25 };
      const stored = await store.audit.append(entry({ target_type: `json-${batch}`, changes, details }));
      expect(stored.changes).toEqual(changes);
      expect(stored.details).toEqual(details);
      const [read] = await store.audit.list({
        where: { field: 'target_type', op: 'eq', value: `json-${batch}` },
        limit: 1,
      });
      expect(read).toEqual(stored);
      expect(read!.changes).toEqual(changes);
      expect(read!.details).toEqual(details);

      const empty = await store.audit.append(
        entry({ target_type: `json-${batch}`, changes: {}, details: null }),
      );
      expect(
        (await store.audit.list({ where: { field: 'id', op: 'eq', value: empty.id }, limit: 1 }))[0],
      ).toMatchObject({
        changes: {},
        details: null,
      });
    });

    it('lists newest first by default, with id breaking ties, and counts', async () => {
      const listed = await query();
      expect(ids(listed)).toEqual(ids(newestFirst(entries)));
      expect(listed).toEqual(newestFirst(entries));
      expect(await store.audit.count({ where: inBatch })).toBe(entries.length);
      expect(await store.audit.count({})).toBeGreaterThanOrEqual(entries.length);
      const oldestFirst = await query(undefined, [{ field: 'timestamp', dir: 'asc' }]);
      expect(oldestFirst[0]!.id).toBe(entries[0]!.id);
      expect(oldestFirst.at(-1)!.id).toBe(entries.at(-1)!.id);
      expect(ids(await store.audit.list({ where: inBatch, limit: 3, offset: 2 }))).toEqual(
        ids(newestFirst(entries)).slice(2, 5),
      );
      expect(await store.audit.list({ where: inBatch, limit: 0 })).toEqual([]);
    });

    it('filters on every field type with every operator', async () => {
      const count = async (where: Expr) => (await query(where)).length;
      const expectSame = async (where: Expr, predicate: (e: AuditEntry) => boolean) => {
        expect(ids(await query(where))).toEqual(ids(newestFirst(entries.filter(predicate))));
        expect(await store.audit.count({ where: and(inBatch, where) })).toBe(
          entries.filter(predicate).length,
        );
      };
      await expectSame({ field: 'action', op: 'eq', value: 'user.login' }, (e) => e.action === 'user.login');
      await expectSame(
        { field: 'action', op: 'ne', value: 'user.updated' },
        (e) => e.action !== 'user.updated',
      );
      await expectSame({ field: 'action', op: 'contains', value: 'ROLE.' }, (e) =>
        e.action.startsWith('role.'),
      );
      await expectSame(
        { field: 'actor_type', op: 'in', value: ['client', 'system'] },
        (e) => e.actor_type !== 'user',
      );
      await expectSame({ field: 'actor_id', op: 'eq', value: `usr_actor2-${batch}` }, (e) =>
        e.actor_id.startsWith('usr_actor2'),
      );
      await expectSame(
        { field: 'actor_client_id', op: 'eq', value: `cli-${batch}` },
        (e) => e.actor_client_id !== null,
      );
      await expectSame(
        { field: 'actor_client_id', op: 'eq', value: null },
        (e) => e.actor_client_id === null,
      );
      await expectSame(
        { field: 'target_type', op: 'eq', value: roleType },
        (e) => e.target_type === roleType,
      );
      await expectSame({ field: 'target_id', op: 'eq', value: null }, (e) => e.target_id === null);
      await expectSame({ field: 'target_id', op: 'ne', value: null }, (e) => e.target_id !== null);
      await expectSame(
        {
          and: [
            { field: 'target_type', op: 'eq', value: userType },
            { field: 'target_id', op: 'eq', value: `usr_target2-${batch}` },
          ],
        },
        (e) => e.target_id === `usr_target2-${batch}`,
      );
      await expectSame(
        { field: 'request_id', op: 'eq', value: `req-${batch}-0` },
        (e) => e.request_id !== null,
      );
      await expectSame({ field: 'id', op: 'eq', value: entries[3]!.id }, (e) => e.id === entries[3]!.id);
      await expectSame(
        { field: 'timestamp', op: 'eq', value: at(1) },
        (e) => e.timestamp.getTime() === at(1).getTime(),
      );
      await expectSame({ field: 'timestamp', op: 'gt', value: at(1) }, (e) => e.timestamp > at(1));
      await expectSame({ field: 'timestamp', op: 'gte', value: at(1) }, (e) => e.timestamp >= at(1));
      await expectSame({ field: 'timestamp', op: 'lt', value: at(1) }, (e) => e.timestamp < at(1));
      await expectSame({ field: 'timestamp', op: 'lte', value: at(2) }, (e) => e.timestamp <= at(2));
      await expectSame(
        {
          or: [
            { field: 'actor_type', op: 'eq', value: 'system' },
            { field: 'timestamp', op: 'gte', value: at(3) },
          ],
        },
        (e) => e.actor_type === 'system' || e.timestamp >= at(3),
      );
      expect(await count({ field: 'action', op: 'eq', value: 'nothing.happened' })).toBe(0);
    });

    it('pages with keyset cursors across equal timestamps, in the default and other orders', async () => {
      for (const sort of [
        undefined,
        [{ field: 'timestamp', dir: 'asc' }],
        [
          { field: 'action', dir: 'asc' },
          { field: 'timestamp', dir: 'desc' },
        ],
        [{ field: 'target_id', dir: 'desc' }],
      ] as (SortKey[] | undefined)[]) {
        const order = totalOrder(sort, { field: 'timestamp', dir: 'desc' });
        const all = await query(undefined, order);
        expect(all).toHaveLength(entries.length);
        const seen: AuditEntry[] = [];
        let after: Expr | undefined;
        for (let guard = 0; guard < 10; guard += 1) {
          const page = await query(after, order, 2);
          seen.push(...page);
          if (page.length < 2) break;
          const last = page[page.length - 1]! as unknown as Record<string, Scalar>;
          const cursor = encodeCursor(order.map((k) => last[k.field] ?? null));
          after = keysetAfter(order, decodeCursor(cursor, order.length)!);
        }
        expect(ids(seen)).toEqual(ids(all));
      }
      // The default order and an explicit newest-first one are the same order.
      expect(ids(await query(undefined, [{ field: 'timestamp', dir: 'desc' }]))).toEqual(ids(await query()));
    });

    it('refuses fields, operators, values and sorts outside the audit query language', async () => {
      const bad: unknown[] = [
        { field: '$where', op: 'eq', value: 'sleep(1000)' },
        { field: 'changes', op: 'eq', value: 'x' },
        { field: 'details.reason', op: 'eq', value: 'cleanup' },
        { field: 'metadata.plan', op: 'eq', value: 'pro' },
        { field: 'ip_address', op: 'eq', value: '203.0.113.7' },
        { field: 'user_agent', op: 'contains', value: 'curl' },
        { field: 'constructor', op: 'eq', value: 'x' },
        { field: '__proto__', op: 'eq', value: 'x' },
        { field: 'toString', op: 'eq', value: 'x' },
        { field: 'action', op: '$regex', value: '.*' },
        { field: 'action', op: 'eq', value: { $ne: null } },
        { field: 'action', op: 'in', value: [{ $gt: '' }] },
        { field: 'action', op: 'in', value: [] },
        { field: 'timestamp', op: 'gt', value: null },
        { field: 'timestamp', op: 'contains', value: '2026' },
        { and: [inBatch, { field: 'actor_id', op: 'eq', value: ['a', 'b'] }] },
      ];
      for (const where of bad) {
        await expect(store.audit.list({ where: where as Expr, limit: 10 })).rejects.toBeInstanceOf(
          QueryError,
        );
        await expect(store.audit.count({ where: where as Expr })).rejects.toBeInstanceOf(QueryError);
      }
      for (const sort of [
        [{ field: 'changes', dir: 'asc' }],
        [{ field: 'constructor', dir: 'asc' }],
        [{ field: 'ip_address', dir: 'desc' }],
        [{ field: 'timestamp', dir: 'sideways' }],
      ]) {
        await expect(store.audit.list({ limit: 10, sort: sort as SortKey[] })).rejects.toBeInstanceOf(
          QueryError,
        );
      }
    });
  });

  describe('roles', () => {
    it('creates, finds, lists, updates and removes roles; names are unique', async () => {
      const name = `role-${tag()}`;
      const role = await store.roles.create({
        name,
        display_name: 'Editors',
        permissions: ['doc:read', 'doc:write'],
      });
      expect(role).toMatchObject({
        name,
        display_name: 'Editors',
        description: null,
        permissions: ['doc:read', 'doc:write'],
      });
      expect(role.id).toMatch(/^rol_/);
      expect(await store.roles.findById(role.id)).toEqual(role);
      expect(await store.roles.findByName(name)).toEqual(role);
      await expect(store.roles.create({ name })).rejects.toEqual(new StoreConflictError('name'));
      const defaulted = await store.roles.create({ name: `${name}-b` });
      expect(defaulted.display_name).toBe(`${name}-b`);

      const names = (await store.roles.list()).map((r) => r.name);
      expect(names).toEqual([...names].sort());
      expect(names).toEqual(expect.arrayContaining([name, `${name}-b`]));

      const updated = await store.roles.update(role.id, { permissions: ['doc:read'], description: 'Reads' });
      expect(updated).toMatchObject({
        name,
        display_name: 'Editors',
        description: 'Reads',
        permissions: ['doc:read'],
      });
      await expect(store.roles.update(defaulted.id, { name })).rejects.toBeInstanceOf(StoreConflictError);
      expect(await store.roles.update('rol_missing', { name: 'x' })).toBeNull();

      expect(await store.roles.remove(role.id)).toBe(true);
      expect(await store.roles.remove(role.id)).toBe(false);
      expect(await store.roles.findById(role.id)).toBeNull();
    });

    it('links users to roles idempotently and forgets links of removed roles', async () => {
      const user = await store.users.create(newUser());
      const a = await store.roles.create({ name: `b-${tag()}`, permissions: ['x'] });
      const b = await store.roles.create({ name: `a-${tag()}`, permissions: ['y'] });
      expect(await store.roles.assign(user.id, a.id)).toBe(true);
      expect(await store.roles.assign(user.id, a.id)).toBe(false);
      expect(await store.roles.assign(user.id, b.id)).toBe(true);
      expect(await store.roles.assign('usr_missing', a.id)).toBe(false);
      expect(await store.roles.assign(user.id, 'rol_missing')).toBe(false);
      expect((await store.roles.listForUser(user.id)).map((r) => r.id)).toEqual([b.id, a.id]);
      expect(await store.roles.countUsers(a.id)).toBe(1);

      expect(await store.roles.unassign(user.id, a.id)).toBe(true);
      expect(await store.roles.unassign(user.id, a.id)).toBe(false);
      expect((await store.roles.listForUser(user.id)).map((r) => r.id)).toEqual([b.id]);

      await store.roles.remove(b.id);
      expect(await store.roles.listForUser(user.id)).toEqual([]);
    });
  });

  describe('webhooks', () => {
    it('creates, finds, lists, updates and removes endpoints; only active ones are in force', async () => {
      const id = `wh_${tag()}`;
      const created = await store.webhooks.create({
        id,
        url: 'https://hooks.example/a',
        events: ['user.created', 'user.updated'],
        description: 'CRM',
        active: true,
        secret: 'ciphertext-1',
      });
      expect(created).toMatchObject({
        id,
        url: 'https://hooks.example/a',
        events: ['user.created', 'user.updated'],
        description: 'CRM',
        active: true,
        secret: 'ciphertext-1',
        previous_secret: null,
        previous_secret_expires_at: null,
        disabled_reason: null,
        failing_since: null,
      });
      expect(await store.webhooks.findById(id)).toEqual(created);
      expect(await store.webhooks.findById('wh_missing')).toBeNull();
      await expect(
        store.webhooks.create({
          id,
          url: 'https://x.example',
          events: [],
          description: null,
          active: true,
          secret: 's',
        }),
      ).rejects.toEqual(new StoreConflictError('id'));

      await new Promise((resolve) => setTimeout(resolve, 5));
      const other = await store.webhooks.create({
        url: 'https://hooks.example/b',
        events: ['*'],
        description: null,
        active: false,
        secret: 'ciphertext-2',
      });
      expect(other.id).toMatch(/^wh_/);
      const listed = await store.webhooks.list({ limit: 1000 });
      const pos = (wid: string) => listed.findIndex((w) => w.id === wid);
      expect(pos(id)).toBeGreaterThanOrEqual(0);
      expect(pos(id)).toBeLessThan(pos(other.id));
      expect(await store.webhooks.count()).toBe(listed.length);
      const active = (await store.webhooks.listActive()).map((w) => w.id);
      expect(active).toContain(id);
      expect(active).not.toContain(other.id);

      const expires = new Date(Date.now() + 86_400_000);
      const failing = new Date(Date.now() - 1000);
      const updated = await store.webhooks.update(id, {
        secret: 'ciphertext-3',
        previous_secret: 'ciphertext-1',
        previous_secret_expires_at: expires,
        failing_since: failing,
        active: false,
        disabled_reason: 'gone',
      });
      expect(updated).toMatchObject({
        url: 'https://hooks.example/a',
        events: ['user.created', 'user.updated'],
        secret: 'ciphertext-3',
        previous_secret: 'ciphertext-1',
        active: false,
        disabled_reason: 'gone',
      });
      expect(updated!.previous_secret_expires_at?.getTime()).toBe(expires.getTime());
      expect(updated!.failing_since?.getTime()).toBe(failing.getTime());
      expect(updated!.updated_at.getTime()).toBeGreaterThanOrEqual(created.updated_at.getTime());
      expect(await store.webhooks.findById(id)).toEqual(updated);
      const cleared = await store.webhooks.update(id, { failing_since: null, previous_secret: null });
      expect(cleared).toMatchObject({ failing_since: null, previous_secret: null, secret: 'ciphertext-3' });
      expect(await store.webhooks.update('wh_missing', { active: true })).toBeNull();

      expect(await store.webhooks.remove(id)).toBe(true);
      expect(await store.webhooks.remove(id)).toBe(false);
      expect(await store.webhooks.findById(id)).toBeNull();
      await store.webhooks.remove(other.id);
    });
  });

  describe('units of work', () => {
    const event = (id: string) => ({
      id,
      type: 'user.created',
      timestamp: new Date(),
      actor: { type: 'system' as const, id: 'contract' },
      data: { n: 1 },
    });

    it('commits a change and the events recording it together', async () => {
      const eventId = `evt_${tag()}`;
      const user = await store.atomically(async () => {
        const created = await store.users.create(newUser());
        await store.outbox.append([event(eventId)]);
        return created;
      });
      expect(await store.users.findById(user.id)).not.toBeNull();
      expect(await store.outbox.getEvent(eventId)).not.toBeNull();
    });

    it('keeps neither when the event cannot be recorded, where the backend has transactions', async () => {
      const existing = `evt_${tag()}`;
      await store.outbox.append([event(existing)]);
      const input = newUser();
      await expect(
        store.atomically(async () => {
          await store.users.create(input);
          await store.outbox.append([event(existing)]); // refused: the id exists
        }),
      ).rejects.toBeInstanceOf(StoreConflictError);
      const stored = await store.users.findByEmail(input.email);
      if (store.transactional) {
        expect(stored).toBeNull();
      } else {
        // Standalone MongoDB and FerretDB: the change stands without its event (README, "Events").
        process.stderr.write(`${store.kind}: no transactions here; the change stays without its event\n`);
        expect(stored).not.toBeNull();
      }
    });
  });

  describe('clients', () => {
    it('creates, finds, lists, updates and removes clients; ids are unique', async () => {
      const clientId = `client-${tag()}`;
      const metadata = { redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code'] };
      const client = await store.clients.create({ client_id: clientId, metadata, client_secret_hash: 'h1' });
      expect(client).toMatchObject({
        client_id: clientId,
        metadata,
        client_secret_hash: 'h1',
        first_party: false,
      });
      expect(await store.clients.find(clientId)).toEqual(client);
      expect(await store.clients.find('missing')).toBeNull();
      await expect(store.clients.create({ client_id: clientId, metadata: {} })).rejects.toEqual(
        new StoreConflictError('client_id'),
      );

      const before = await store.clients.count();
      // Clients are listed by creation time, then by id: let the clock move on, or two clients made
      // in the same millisecond come in the order of their (random) ids.
      await new Promise((resolve) => setTimeout(resolve, 5));
      const other = await store.clients.create({
        client_id: `client-${tag()}`,
        metadata: {},
        first_party: true,
      });
      expect(await store.clients.count()).toBe(before + 1);
      const listed = await store.clients.list({ limit: 1000 });
      const pos = (id: string) => listed.findIndex((c) => c.client_id === id);
      expect(pos(clientId)).toBeGreaterThanOrEqual(0);
      expect(pos(clientId)).toBeLessThan(pos(other.client_id));
      expect(await store.clients.list({ limit: 1, offset: pos(other.client_id) })).toEqual([other]);

      const updated = await store.clients.update(clientId, { client_secret_hash: null, first_party: true });
      expect(updated).toMatchObject({ client_secret_hash: null, first_party: true, metadata });
      expect(await store.clients.update('missing', { first_party: true })).toBeNull();
      expect(await store.clients.remove(clientId)).toBe(true);
      expect(await store.clients.remove(clientId)).toBe(false);
      expect(await store.clients.find(clientId)).toBeNull();
    });
  });

  describe('signing keys', () => {
    it('creates, lists, updates and removes keys; kids are unique', async () => {
      const kid = `kid-${tag()}`;
      const activates = new Date('2026-05-01T00:00:00.000Z');
      const key = await store.signingKeys.create({
        kid,
        alg: 'RS256',
        use: 'sig',
        status: 'next',
        public_jwk: { kty: 'RSA', n: 'abc', e: 'AQAB', kid },
        private_jwk_encrypted: 'v1.ciphertext',
        activates_at: activates,
      });
      expect(key).toMatchObject({
        kid,
        status: 'next',
        activates_at: activates,
        retired_at: null,
        expires_at: null,
      });
      await expect(store.signingKeys.create({ ...key, status: 'current' })).rejects.toEqual(
        new StoreConflictError('kid'),
      );
      expect((await store.signingKeys.list()).find((k) => k.kid === kid)).toEqual(key);

      const retiredAt = new Date('2026-06-01T00:00:00.000Z');
      const expiresAt = new Date('2026-06-02T00:00:00.000Z');
      const retired = await store.signingKeys.update(kid, {
        status: 'retired',
        retired_at: retiredAt,
        expires_at: expiresAt,
      });
      expect(retired).toMatchObject({
        status: 'retired',
        retired_at: retiredAt,
        expires_at: expiresAt,
        activates_at: activates,
      });
      const unchanged = await store.signingKeys.update(kid, {});
      expect(unchanged).toEqual(retired);
      expect(await store.signingKeys.update('missing', { status: 'current' })).toBeNull();
      expect(await store.signingKeys.remove(kid)).toBe(true);
      expect(await store.signingKeys.remove(kid)).toBe(false);
    });
  });

  describe('user plans', () => {
    it('stores a user without a plan as null, and sets and clears one', async () => {
      const user = await store.users.create(newUser());
      expect(user.plan).toBeNull();
      expect((await store.users.update(user.id, { plan: 'professional' }))!.plan).toBe('professional');
      expect((await store.users.findById(user.id))!.plan).toBe('professional');
      expect((await store.users.update(user.id, { plan: null }))!.plan).toBeNull();
      const onPlan = await store.users.create(newUser({ plan: 'enterprise' }));
      expect((await store.users.findById(onPlan.id))!.plan).toBe('enterprise');
    });
  });

  describe('API keys', () => {
    const newKey = (ownerId: string, over: Record<string, unknown> = {}) => ({
      owner_type: 'user' as const,
      owner_id: ownerId,
      name: 'CI key',
      environment: 'live' as const,
      lookup_id: `lk${tag()}`,
      secret_hash: randomBytes(32).toString('hex'),
      scopes: ['chat:write'],
      allowed_ips: ['10.0.0.0/8', '2001:db8::/32'],
      expires_at: null,
      ...over,
    });

    it('creates, finds by id and lookup id, lists by owner, updates, touches and removes keys', async () => {
      const owner = `usr_${tag()}`;
      const expires = new Date('2030-01-01T00:00:00Z');
      const a = await store.apiKeys.create(newKey(owner, { expires_at: expires }));
      const b = await store.apiKeys.create(newKey(owner, { name: 'second' }));
      await store.apiKeys.create(newKey(`usr_${tag()}`));
      expect(a).toMatchObject({
        owner_type: 'user',
        owner_id: owner,
        name: 'CI key',
        environment: 'live',
        scopes: ['chat:write'],
        allowed_ips: ['10.0.0.0/8', '2001:db8::/32'],
        expires_at: expires,
        last_used_at: null,
        revoked_at: null,
      });
      expect(a.id).toMatch(/^key_/);
      expect(await store.apiKeys.findById(a.id)).toEqual(a);
      expect(await store.apiKeys.findByLookupId(a.lookup_id)).toEqual(a);
      expect(await store.apiKeys.findByLookupId('nope')).toBeNull();
      expect((await store.apiKeys.listByOwner('user', owner)).map((k) => k.id)).toEqual([a.id, b.id]);
      expect(await store.apiKeys.listByOwner('client', owner)).toEqual([]);

      const revokedAt = new Date('2026-05-01T00:00:00Z');
      const rotated = await store.apiKeys.update(a.id, {
        lookup_id: `lk${tag()}`,
        secret_hash: 'f'.repeat(64),
        revoked_at: revokedAt,
      });
      expect(rotated).toMatchObject({ secret_hash: 'f'.repeat(64), revoked_at: revokedAt, name: 'CI key' });
      expect(await store.apiKeys.findByLookupId(a.lookup_id)).toBeNull();
      expect(await store.apiKeys.update('key_missing', { name: 'x' })).toBeNull();

      const used = new Date('2026-06-01T10:00:00Z');
      await store.apiKeys.touch(b.id, used);
      await store.apiKeys.touch(b.id, new Date('2026-06-01T09:00:00Z')); // never backwards
      expect((await store.apiKeys.findById(b.id))!.last_used_at).toEqual(used);

      expect(await store.apiKeys.removeByOwner('user', owner)).toBe(2);
      expect(await store.apiKeys.findById(b.id)).toBeNull();
    });

    it('refuses a second key with the same lookup id', async () => {
      const first = await store.apiKeys.create(newKey(`usr_${tag()}`));
      await expect(
        store.apiKeys.create(newKey(`usr_${tag()}`, { lookup_id: first.lookup_id })),
      ).rejects.toMatchObject({ name: 'StoreConflictError', field: 'lookup_id' });
    });
  });

  describe('plans', () => {
    it('creates, finds, lists, updates and removes plans; names are unique', async () => {
      const name = `plan-${tag()}`;
      const plan = await store.plans.create({
        name,
        requests_per_hour: 500,
        burst: 20,
        quota: 100,
        quota_period: 'month',
        credits: 5,
      });
      expect(plan).toMatchObject({
        name,
        requests_per_hour: 500,
        burst: 20,
        quota: 100,
        quota_period: 'month',
        credits: 5,
      });
      expect(await store.plans.find(name)).toEqual(plan);
      expect((await store.plans.list()).map((p) => p.name)).toContain(name);
      await expect(
        store.plans.create({
          name,
          requests_per_hour: 1,
          burst: 1,
          quota: 1,
          quota_period: 'day',
          credits: 0,
        }),
      ).rejects.toMatchObject({ name: 'StoreConflictError', field: 'name' });
      const updated = await store.plans.update(name, { quota: 250, quota_period: 'day' });
      expect(updated).toMatchObject({ name, quota: 250, quota_period: 'day', requests_per_hour: 500 });
      expect(await store.plans.update(`missing-${tag()}`, { quota: 1 })).toBeNull();
      expect(await store.plans.remove(name)).toBe(true);
      expect(await store.plans.remove(name)).toBe(false);
      expect(await store.plans.find(name)).toBeNull();
    });
  });

  describe('usage', () => {
    const entry = (ownerId: string, over: Record<string, unknown> = {}) => ({
      owner_type: 'user' as const,
      owner_id: ownerId,
      key_id: 'key_1',
      model: 'gpt-small',
      message_count: 2,
      characters: 40,
      research_model: false,
      messages: null,
      idempotency_key: null,
      created_at: new Date('2026-04-02T10:00:00Z'),
      ...over,
    });

    it('records entries and totals them per day and per model within a range', async () => {
      const owner = `usr_${tag()}`;
      await store.usage.record(entry(owner));
      await store.usage.record(
        entry(owner, { model: 'gpt-large', created_at: new Date('2026-04-02T23:59:59Z') }),
      );
      await store.usage.record(entry(owner, { created_at: new Date('2026-04-03T00:00:00Z') }));
      await store.usage.record(entry(owner, { created_at: new Date('2026-05-01T00:00:00Z') })); // outside
      await store.usage.record(entry(`usr_${tag()}`)); // someone else
      const summary = await store.usage.summarize(
        'user',
        owner,
        new Date('2026-04-01T00:00:00Z'),
        new Date('2026-05-01T00:00:00Z'),
      );
      expect(summary).toEqual({
        total: 3,
        by_day: [
          { date: '2026-04-02', count: 2 },
          { date: '2026-04-03', count: 1 },
        ],
        by_model: [
          { model: 'gpt-small', count: 2 },
          { model: 'gpt-large', count: 1 },
        ],
      });
    });

    it('stores one entry per idempotency key and owner, even when retried in parallel', async () => {
      const owner = `usr_${tag()}`;
      const withKey = entry(owner, {
        idempotency_key: 'retry-1',
        messages: [{ role: 'user', content: 'hi' }],
      });
      const results = await Promise.all(Array.from({ length: 5 }, () => store.usage.record(withKey)));
      expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
      expect(new Set(results.map((r) => r.entry.id)).size).toBe(1);
      expect(results[0]!.entry.messages).toEqual([{ role: 'user', content: 'hi' }]);
      // The same key from another owner is another entry.
      expect(
        (await store.usage.record(entry(`usr_${tag()}`, { idempotency_key: 'retry-1' }))).duplicate,
      ).toBe(false);
      const summary = await store.usage.summarize(
        'user',
        owner,
        new Date(0),
        new Date('2100-01-01T00:00:00Z'),
      );
      expect(summary.total).toBe(1);
      expect(await store.usage.removeByOwner('user', owner)).toBe(1);
    });
  });

  describe('resource servers', () => {
    it('creates, finds, lists, updates and removes resource servers; identifiers are unique', async () => {
      const identifier = `https://api-${tag()}.example.com`;
      const api = await store.resourceServers.create({
        identifier,
        name: 'Orders API',
        scopes: ['orders:read'],
      });
      expect(api).toMatchObject({
        identifier,
        name: 'Orders API',
        scopes: ['orders:read'],
        access_token_format: 'jwt',
        access_token_ttl: 3600,
      });
      expect(api.id).toMatch(/^api_/);
      expect(await store.resourceServers.findById(api.id)).toEqual(api);
      expect(await store.resourceServers.findByIdentifier(identifier)).toEqual(api);
      expect(await store.resourceServers.findByIdentifier('https://missing.example.com')).toBeNull();
      await expect(store.resourceServers.create({ identifier, name: 'Again' })).rejects.toEqual(
        new StoreConflictError('identifier'),
      );
      const other = await store.resourceServers.create({
        identifier: `${identifier}/v2`,
        name: 'Orders v2',
        access_token_format: 'opaque',
        access_token_ttl: 600,
      });
      const listed = (await store.resourceServers.list()).map((r) => r.identifier);
      expect(listed).toEqual([...listed].sort());
      expect(listed).toEqual(expect.arrayContaining([identifier, other.identifier]));

      const updated = await store.resourceServers.update(api.id, {
        scopes: ['orders:read', 'orders:write'],
        access_token_ttl: 900,
      });
      expect(updated).toMatchObject({
        identifier,
        scopes: ['orders:read', 'orders:write'],
        access_token_ttl: 900,
      });
      await expect(store.resourceServers.update(other.id, { identifier })).rejects.toBeInstanceOf(
        StoreConflictError,
      );
      expect(await store.resourceServers.update('api_missing', { name: 'x' })).toBeNull();
      expect(await store.resourceServers.remove(api.id)).toBe(true);
      expect(await store.resourceServers.remove(api.id)).toBe(false);
      expect(await store.resourceServers.findById(api.id)).toBeNull();
    });
  });

  describe('registration tokens', () => {
    it('creates, finds by id and digest, lists per kind newest first, counts uses and removes them', async () => {
      const hash = () => randomBytes(32).toString('base64url');
      const expires = new Date(Date.now() + 3_600_000);
      const initial = await store.registrationTokens.create({
        kind: 'initial_access',
        token_hash: hash(),
        description: 'partner onboarding',
        created_by: 'admin-client',
        expires_at: expires,
      });
      expect(initial).toEqual({
        id: expect.stringMatching(/^iat_/),
        kind: 'initial_access',
        token_hash: initial.token_hash,
        client_id: null,
        description: 'partner onboarding',
        created_by: 'admin-client',
        created_at: expect.any(Date),
        expires_at: expires,
        last_used_at: null,
        use_count: 0,
      });
      expect(await store.registrationTokens.findById(initial.id)).toEqual(initial);
      expect(await store.registrationTokens.findByHash(initial.token_hash)).toEqual(initial);
      expect(await store.registrationTokens.findByHash(hash())).toBeNull();
      await expect(
        store.registrationTokens.create({ kind: 'initial_access', token_hash: initial.token_hash }),
      ).rejects.toEqual(new StoreConflictError('token_hash'));

      const later = await store.registrationTokens.create({ kind: 'initial_access', token_hash: hash() });
      expect(later.expires_at).toBeNull();
      const clientId = `cl_${tag()}`;
      const own = await store.registrationTokens.create({
        kind: 'registration_access',
        token_hash: hash(),
        client_id: clientId,
      });
      expect(own.id).toMatch(/^rat_/);
      const listed = (await store.registrationTokens.list('initial_access', { limit: 500 })).map((t) => t.id);
      expect(listed.indexOf(later.id)).toBeLessThan(listed.indexOf(initial.id));
      expect(listed).not.toContain(own.id);
      expect(await store.registrationTokens.count('initial_access')).toBe(listed.length);
      expect(await store.registrationTokens.list('registration_access', { limit: 500 })).toContainEqual(own);

      const at = new Date('2026-06-01T12:00:00.000Z');
      await store.registrationTokens.recordUse(initial.id, at);
      await store.registrationTokens.recordUse(initial.id, at);
      expect(await store.registrationTokens.findById(initial.id)).toMatchObject({
        use_count: 2,
        last_used_at: at,
      });

      expect(await store.registrationTokens.removeForClient(clientId)).toBe(1);
      expect(await store.registrationTokens.findById(own.id)).toBeNull();
      expect(await store.registrationTokens.removeForClient(clientId)).toBe(0);
      expect(await store.registrationTokens.remove(initial.id)).toBe(true);
      expect(await store.registrationTokens.remove(initial.id)).toBe(false);
      expect(await store.registrationTokens.findByHash(initial.token_hash)).toBeNull();
    });
  });

  describe('second factors', () => {
    it('stores, lists, renames and removes factors; a passkey credential id is unique', async () => {
      const user = await store.users.create(newUser());
      expect(user.mfa_enabled).toBe(false);
      const totp = await store.mfa.createFactor({
        user_id: user.id,
        type: 'totp',
        name: 'Authenticator app',
        secret: 'v1.sealed',
      });
      expect(totp).toMatchObject({
        user_id: user.id,
        type: 'totp',
        name: 'Authenticator app',
        secret: 'v1.sealed',
        credential_id: null,
        public_key: null,
        counter: 0,
        transports: [],
        device_type: null,
        backed_up: false,
        last_used_at: null,
      });
      expect(totp.id).toMatch(/^mfa_/);
      const credentialId = `cred-${tag()}`;
      const key = await store.mfa.createFactor({
        user_id: user.id,
        type: 'webauthn',
        name: 'Laptop',
        credential_id: credentialId,
        public_key: 'pQECAyYgASFYIA',
        counter: 5,
        transports: ['internal', 'hybrid'],
        device_type: 'multiDevice',
        backed_up: true,
      });
      // A second TOTP factor (no credential id) is fine; a second registration of the passkey is not.
      const other = await store.mfa.createFactor({ user_id: user.id, type: 'totp', name: 'Second app' });
      await expect(
        store.mfa.createFactor({
          user_id: user.id,
          type: 'webauthn',
          name: 'Again',
          credential_id: credentialId,
          public_key: 'x',
        }),
      ).rejects.toEqual(new StoreConflictError('credential_id'));

      expect((await store.mfa.listFactors(user.id)).map((f) => f.id)).toEqual([totp.id, key.id, other.id]);
      expect(await store.mfa.findFactor(key.id)).toEqual(key);
      expect(await store.mfa.findByCredentialId(credentialId)).toEqual(key);
      expect(await store.mfa.findByCredentialId('missing')).toBeNull();
      expect(await store.mfa.findByCredentialId(`factor:${totp.id}`)).toBeNull();
      expect((await store.mfa.renameFactor(key.id, 'Work laptop'))?.name).toBe('Work laptop');
      expect(await store.mfa.renameFactor('mfa_missing', 'x')).toBeNull();

      expect(await store.mfa.removeFactor(other.id)).toBe(true);
      expect(await store.mfa.removeFactor(other.id)).toBe(false);
      expect(await store.mfa.listFactors('usr_nobody')).toEqual([]);

      const flagged = await store.users.update(user.id, { mfa_enabled: true });
      expect(flagged?.mfa_enabled).toBe(true);
      const withFactor = await store.users.list({
        where: and(
          { field: 'id', op: 'eq', value: user.id },
          { field: 'mfa_enabled', op: 'eq', value: true },
        ),
        limit: 10,
      });
      expect(withFactor.map((u) => u.id)).toEqual([user.id]);
      const without = await store.users.list({
        where: and(
          { field: 'id', op: 'eq', value: user.id },
          { field: 'mfa_enabled', op: 'eq', value: false },
        ),
        limit: 10,
      });
      expect(without).toEqual([]);

      await store.mfa.replaceRecoveryCodes(user.id, ['h1', 'h2'], new Date());
      expect(await store.mfa.removeAllForUser(user.id)).toBe(2);
      expect(await store.mfa.listFactors(user.id)).toEqual([]);
      expect(await store.mfa.countRecoveryCodes(user.id)).toBe(0);
    });

    it('records uses, and takes a passkey counter only forward, once per value', async () => {
      const user = await store.users.create(newUser());
      const key = await store.mfa.createFactor({
        user_id: user.id,
        type: 'webauthn',
        name: 'Key',
        credential_id: `cred-${tag()}`,
        public_key: 'k',
        counter: 3,
      });
      const at = new Date('2026-12-04T10:00:00.000Z');
      expect(await store.mfa.recordUse(key.id, at, 3)).toBe(false);
      expect(await store.mfa.recordUse(key.id, at, 2)).toBe(false);
      expect((await store.mfa.findFactor(key.id))?.last_used_at).toBeNull();
      expect(await store.mfa.recordUse(key.id, at, 4)).toBe(true);
      expect(await store.mfa.findFactor(key.id)).toMatchObject({ counter: 4, last_used_at: at });
      expect(await store.mfa.recordUse(key.id, at, 4)).toBe(false);

      // An authenticator that keeps no counter reports 0 every time.
      const synced = await store.mfa.createFactor({
        user_id: user.id,
        type: 'webauthn',
        name: 'Synced',
        credential_id: `cred-${tag()}`,
        public_key: 'k',
      });
      expect(await store.mfa.recordUse(synced.id, at, 0)).toBe(true);
      expect(await store.mfa.recordUse(synced.id, at, 0)).toBe(true);
      const totp = await store.mfa.createFactor({ user_id: user.id, type: 'totp', name: 'App' });
      expect(await store.mfa.recordUse(totp.id, at)).toBe(true);
      expect(await store.mfa.recordUse('mfa_missing', at)).toBe(false);
    });

    it('replaces recovery codes and takes each exactly once, even when used in parallel', async () => {
      const user = await store.users.create(newUser());
      const other = await store.users.create(newUser());
      await store.mfa.replaceRecoveryCodes(user.id, ['a', 'b', 'c'], new Date());
      await store.mfa.replaceRecoveryCodes(other.id, ['a'], new Date());
      expect(await store.mfa.countRecoveryCodes(user.id)).toBe(3);
      const races = await Promise.all(
        Array.from({ length: 10 }, () => store.mfa.useRecoveryCode(user.id, 'a', new Date())),
      );
      expect(races.filter(Boolean)).toHaveLength(1);
      expect(await store.mfa.useRecoveryCode(user.id, 'zzz', new Date())).toBe(false);
      expect(await store.mfa.countRecoveryCodes(user.id)).toBe(2);
      // Another user's code of the same hash is theirs alone.
      expect(await store.mfa.countRecoveryCodes(other.id)).toBe(1);
      expect(await store.mfa.useRecoveryCode(other.id, 'a', new Date())).toBe(true);

      await store.mfa.replaceRecoveryCodes(user.id, ['d', 'e'], new Date());
      expect(await store.mfa.useRecoveryCode(user.id, 'b', new Date())).toBe(false);
      expect(await store.mfa.countRecoveryCodes(user.id)).toBe(2);
    });
  });

  describe('single sign-on connections', () => {
    it('stores connections with their domains, finds them by domain, and gives each domain one connection', async () => {
      const domain = `corp-${tag()}.example`;
      const other = `other-${tag()}.example`;
      const created = await store.ssoConnections.create({
        provider: 'oidc',
        domains: [domain, other],
        issuer: 'https://idp.example/',
        client_id: 'latchkey',
        client_secret_encrypted: 'v1.sealed',
        scopes: ['openid', 'email'],
        auto_provision: true,
        default_role: 'user',
        attribute_mapping: { email: 'email', 'metadata.department': 'dept' },
      });
      expect(created).toMatchObject({
        provider: 'oidc',
        domains: [domain, other].sort(),
        issuer: 'https://idp.example/',
        client_secret_encrypted: 'v1.sealed',
        scopes: ['openid', 'email'],
        metadata_url: null,
        metadata_xml: null,
        auto_provision: true,
        enabled: true,
        attribute_mapping: { email: 'email', 'metadata.department': 'dept' },
      });
      expect(created.id).toMatch(/^sso_/);
      expect(await store.ssoConnections.findById(created.id)).toEqual(created);
      expect(await store.ssoConnections.findByDomain(other)).toEqual(created);
      expect(await store.ssoConnections.findByDomain(`missing-${tag()}.example`)).toBeNull();
      expect((await store.ssoConnections.list()).map((c) => c.id)).toContain(created.id);

      await expect(
        store.ssoConnections.create({ provider: 'saml', domains: [`free-${tag()}.example`, domain] }),
      ).rejects.toEqual(new StoreConflictError('domain'));
      // The failed create left nothing behind: its free domain is still free.
      const free = `free-${tag()}.example`;
      await expect(
        store.ssoConnections.create({ provider: 'saml', domains: [free, domain] }),
      ).rejects.toThrow(StoreConflictError);
      expect(await store.ssoConnections.findByDomain(free)).toBeNull();

      const moved = `moved-${tag()}.example`;
      const updated = await store.ssoConnections.update(created.id, {
        domains: [domain, moved],
        enabled: false,
        client_secret_encrypted: null,
      });
      expect(updated).toMatchObject({
        domains: [domain, moved].sort(),
        enabled: false,
        client_secret_encrypted: null,
      });
      expect(await store.ssoConnections.findByDomain(other)).toBeNull();
      expect((await store.ssoConnections.findByDomain(moved))?.id).toBe(created.id);

      const second = await store.ssoConnections.create({ provider: 'okta', domains: [other] });
      await expect(store.ssoConnections.update(second.id, { domains: [other, moved] })).rejects.toEqual(
        new StoreConflictError('domain'),
      );
      expect((await store.ssoConnections.findById(second.id))?.domains).toEqual([other]);
      expect(await store.ssoConnections.update('sso_missing', { enabled: true })).toBeNull();

      expect(await store.ssoConnections.remove(created.id)).toBe(true);
      expect(await store.ssoConnections.remove(created.id)).toBe(false);
      expect(await store.ssoConnections.findByDomain(domain)).toBeNull();
      expect(await store.ssoConnections.findById(created.id)).toBeNull();
    });

    it('links an upstream identity to one user only, even when linked in parallel', async () => {
      const connection = await store.ssoConnections.create({
        provider: 'oidc',
        domains: [`id-${tag()}.example`],
      });
      const alice = await store.users.create(newUser());
      const bob = await store.users.create(newUser());
      const races = await Promise.allSettled(
        [alice, bob, alice, bob].map((u) =>
          store.ssoConnections.linkIdentity({
            connection_id: connection.id,
            subject: 'sub-1',
            user_id: u.id,
          }),
        ),
      );
      expect(races.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of races.filter((r) => r.status === 'rejected')) {
        expect((r as PromiseRejectedResult).reason).toEqual(new StoreConflictError('identity'));
      }
      const winner = (await store.ssoConnections.findIdentity(connection.id, 'sub-1'))!;
      expect([alice.id, bob.id]).toContain(winner.user_id);
      await store.ssoConnections.linkIdentity({
        connection_id: connection.id,
        subject: 'sub-2',
        user_id: alice.id,
      });
      const ofAlice = await store.ssoConnections.listIdentities(alice.id);
      expect(ofAlice.map((i) => i.subject)).toEqual(
        winner.user_id === alice.id ? ['sub-1', 'sub-2'] : ['sub-2'],
      );
      const many = await store.ssoConnections.listIdentitiesOf([alice.id, bob.id, 'usr_nobody']);
      expect(many.get(alice.id)?.length).toBe(ofAlice.length);
      expect(many.has('usr_nobody')).toBe(false);
      expect(await store.ssoConnections.findIdentity(connection.id, 'sub-3')).toBeNull();

      expect(await store.ssoConnections.removeIdentitiesOfUser(alice.id)).toBe(ofAlice.length);
      expect(await store.ssoConnections.listIdentities(alice.id)).toEqual([]);
      await store.ssoConnections.linkIdentity({
        connection_id: connection.id,
        subject: 'sub-4',
        user_id: bob.id,
      });
      await store.ssoConnections.remove(connection.id);
      expect(await store.ssoConnections.listIdentities(bob.id)).toEqual([]);
    });
  });

  describe('persistence', () => {
    it('keeps what was written when the store is closed and opened again', async () => {
      const user = await store.users.create(newUser({ metadata: { kept: true } }));
      const role = await store.roles.create({ name: `persist-${tag()}` });
      await store.roles.assign(user.id, role.id);
      await store.close();

      store = await harness.open();
      expect(await store.users.findById(user.id)).toEqual(user);
      expect((await store.roles.listForUser(user.id)).map((r) => r.id)).toEqual([role.id]);
    });
  });
}
