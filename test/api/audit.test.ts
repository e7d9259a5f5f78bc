/**
 * The audit trail behind GET /v2/audit: every mutation of users and roles leaves one entry naming
 * the actor, the action, the target, the request id the response carried, and the before/after of
 * what changed; secrets never appear; the list filters by action (with a prefix), actor, target,
 * request and time, and pages with a cursor.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, RFC3339, uniqueEmail, type AdminApi, type ApiUser } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

interface Entry {
  id: string;
  timestamp: string;
  actor: { type: string; id: string; client_id: string | null };
  action: string;
  target: { type: string; id: string | null };
  request_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
  changes: Record<string, { before: unknown; after: unknown }> | null;
  details: Record<string, unknown> | null;
}

type Response = Awaited<ReturnType<AdminApi['get']>>;

describe.each(availableBackends())(
  'GET /v2/audit with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    /** The entries recorded while serving `res`, found by its X-Request-Id. */
    async function entriesOf(res: Response): Promise<Entry[]> {
      const requestId = res.headers['x-request-id'];
      expect(requestId).toMatch(/\S/);
      const audit = await api.get('/v2/audit', { request_id: requestId! });
      expect(audit.status).toBe(200);
      return audit.body.data as Entry[];
    }

    /** Expects exactly one entry for `res`, by `api`'s client, and returns it. */
    async function oneEntry(res: Response, action: string, target: { type: string; id: string }) {
      const entries = await entriesOf(res);
      expect(entries).toHaveLength(1);
      const entry = entries[0]!;
      expect(entry).toMatchObject({
        id: expect.any(String),
        timestamp: expect.stringMatching(RFC3339),
        actor: { type: 'client', id: api.client!.clientId, client_id: api.client!.clientId },
        action,
        target,
        request_id: res.headers['x-request-id'],
        ip_address: expect.any(String),
      });
      return entry;
    }

    it('every user mutation leaves an entry with actor, action, target, request id and before/after', async () => {
      const email = uniqueEmail('audited');
      const created = await api.post('/v2/users', {
        email,
        first_name: 'Audra',
        last_name: 'Trail',
        metadata: { team: 'a' },
      });
      expect(created.status).toBe(201);
      const id = (created.body as ApiUser).id;
      const target = { type: 'user', id };
      const createEntry = await oneEntry(created, 'user.created', target);
      expect(createEntry.changes).toMatchObject({
        email: { before: null, after: email },
        first_name: { before: null, after: 'Audra' },
        metadata: { before: null, after: { team: 'a' } },
        status: { before: null, after: 'active' },
      });
      expect(createEntry.details).toEqual({ send_welcome_email: false });

      const updated = await api.put(`/v2/users/${id}`, { first_name: 'Audrey', metadata: { team: 'b' } });
      const updateEntry = await oneEntry(updated, 'user.updated', target);
      expect(updateEntry.changes).toEqual({
        first_name: { before: 'Audra', after: 'Audrey' },
        metadata: { before: { team: 'a' }, after: { team: 'b' } },
        updated_at: { before: expect.stringMatching(RFC3339), after: expect.stringMatching(RFC3339) },
      });

      // Another administrator, so suspending this one below does not remove the last one.
      const other = await api.post('/v2/users', {
        email: `other-admin-${id}@example.com`,
        first_name: 'Other',
        last_name: 'Admin',
        role: 'admin',
      });
      expect(other.status).toBe(201);
      const promoted = await api.put(`/v2/users/${id}`, { role: 'admin' });
      const roleEntry = await oneEntry(promoted, 'user.role_changed', target);
      expect(roleEntry.changes).toMatchObject({ role: { before: 'user', after: 'admin' } });

      const suspended = await api.put(`/v2/users/${id}`, { status: 'suspended' });
      const suspendEntry = await oneEntry(suspended, 'user.updated', target);
      expect(suspendEntry.changes).toMatchObject({ status: { before: 'active', after: 'suspended' } });

      const prefs = await api.put(`/v2/users/${id}/preferences`, { theme: 'dark' });
      expect((await oneEntry(prefs, 'user.preferences_updated', target)).changes).toEqual({
        preferences: { before: {}, after: { theme: 'dark' } },
      });

      const reset = await api.post(`/v2/users/${id}/password-reset`);
      expect((await oneEntry(reset, 'user.password_reset_required', target)).changes).toEqual({
        password_reset_required: { before: false, after: true },
      });

      const role = await api.createRole();
      const assigned = await api.post(`/v2/users/${id}/roles/${role.id}`);
      expect((await oneEntry(assigned, 'user.role_changed', target)).details).toEqual({
        assigned_role: { id: role.id, name: role.name },
      });
      const removed = await api.delete(`/v2/users/${id}/roles/${role.id}`);
      expect((await oneEntry(removed, 'user.role_changed', target)).details).toEqual({
        removed_role: { id: role.id, name: role.name },
      });

      const softDeleted = await api.delete(`/v2/users/${id}`, { soft_delete: true });
      const softEntry = await oneEntry(softDeleted, 'user.deleted', target);
      expect(softEntry.details).toMatchObject({ soft_delete: true });
      expect(softEntry.changes).toMatchObject({ email: { before: email, after: null } });

      const restored = await api.post(`/v2/users/${id}/restore`);
      await oneEntry(restored, 'user.restored', target);

      const erased = await api.delete(`/v2/users/${id}`);
      expect((await oneEntry(erased, 'user.deleted', target)).details).toMatchObject({ soft_delete: false });

      // The whole history of the user, newest first.
      const history = await api.get('/v2/audit', { target_type: 'user', target_id: id });
      expect(history.body.data.map((e: Entry) => e.action)).toEqual([
        'user.deleted',
        'user.restored',
        'user.deleted',
        'user.role_changed',
        'user.role_changed',
        'user.password_reset_required',
        'user.preferences_updated',
        'user.updated',
        'user.role_changed',
        'user.updated',
        'user.created',
      ]);
    });

    it('password changes, bulk creation and role mutations are audited too', async () => {
      const user = await api.createUser();
      const password = await api.put(`/v2/users/${user.id}/password`, {
        password: 'saffron-kettle-harbor-83-violin',
      });
      expect(password.status).toBe(204);
      const passwordEntry = await oneEntry(password, 'user.password_changed', { type: 'user', id: user.id });
      expect(passwordEntry.changes).toEqual({ password_reset_required: { before: null, after: false } });

      const bulk = await api.post('/v2/users/bulk', {
        users: [
          { email: uniqueEmail(), first_name: 'B', last_name: 'One' },
          { email: 'broken', first_name: 'B', last_name: 'Two' },
          { email: uniqueEmail(), first_name: 'B', last_name: 'Three' },
        ],
      });
      const bulkEntries = await entriesOf(bulk);
      const createdIds = (bulk.body.results as { user?: ApiUser }[]).flatMap((r) =>
        r.user ? [r.user.id] : [],
      );
      expect(bulkEntries.map((e) => e.target.id).sort()).toEqual([...createdIds].sort());
      for (const entry of bulkEntries) {
        expect(entry).toMatchObject({
          action: 'user.created',
          details: { bulk: true, send_welcome_email: false },
        });
      }
      // Welcome-email wishes reach the audit trail as for single creations: the batch's option,
      // unless an item says otherwise.
      const welcomed = await api.post('/v2/users/bulk', {
        users: [
          { email: uniqueEmail(), first_name: 'W', last_name: 'One' },
          { email: uniqueEmail(), first_name: 'W', last_name: 'Two', send_welcome_email: false },
        ],
        options: { send_welcome_emails: true },
      });
      const byUser = new Map((await entriesOf(welcomed)).map((e) => [e.target.id, e.details]));
      const [one, two] = (welcomed.body.results as { user: ApiUser }[]).map((r) => r.user.id);
      expect(byUser.get(one!)).toEqual({ bulk: true, send_welcome_email: true });
      expect(byUser.get(two!)).toEqual({ bulk: true, send_welcome_email: false });

      const role = await api.post('/v2/roles', { name: `audited-${Date.now()}`, permissions: ['a:b'] });
      const roleTarget = { type: 'role', id: role.body.id as string };
      const roleCreated = await oneEntry(role, 'role.created', roleTarget);
      expect(roleCreated.changes).toMatchObject({ name: { before: null, after: role.body.name } });
      const roleUpdated = await api.put(`/v2/roles/${role.body.id}`, { permissions: ['a:b', 'c:d'] });
      expect((await oneEntry(roleUpdated, 'role.updated', roleTarget)).changes).toEqual({
        permissions: { before: ['a:b'], after: ['a:b', 'c:d'] },
        updated_at: { before: expect.any(String), after: expect.any(String) },
      });
      const holder = await api.createUser({ role: role.body.name });
      const roleDeleted = await api.delete(`/v2/roles/${role.body.id}`, { force: true });
      expect((await oneEntry(roleDeleted, 'role.deleted', roleTarget)).details).toEqual({
        forced: true,
        users_linked: 0,
        reassigned_users: 1,
      });
      expect(holder.role).toBe(role.body.name);
    });

    it('refused requests and reads leave no entry', async () => {
      const user = await api.createUser();
      const refused = [
        await api.post('/v2/users', { email: user.email, first_name: 'A', last_name: 'B' }),
        await api.put(`/v2/users/${user.id}`, { role: 'ghost' }),
        await api.post('/v2/users', { email: 'bad', first_name: 'A', last_name: 'B' }),
        await api.get(`/v2/users/${user.id}`),
        await api.get('/v2/users'),
      ];
      for (const res of refused) expect(await entriesOf(res)).toEqual([]);
    });

    it('no password, hash, token or client secret appears anywhere in GET /v2/audit', async () => {
      const first = 'cobalt-persimmon-lighthouse-12';
      const second = 'juniper-marble-octave-77-quill';
      const user = await api.createUser({ password: first });
      await api.put(`/v2/users/${user.id}/password`, { password: second });
      await api.post('/v2/users/bulk', {
        users: [{ email: uniqueEmail(), first_name: 'S', last_name: 'Ecret', password: first }],
      });
      const client = await api.post('/v2/clients', {
        kind: 'service',
        client_name: 'Audit probe',
        scope: 'user:read',
      });
      expect(client.status).toBe(201);
      const rotated = await api.post(`/v2/clients/${client.body.client_id}/secret`);
      expect(rotated.status).toBe(200);
      const secrets = [first, second, client.body.client_secret, rotated.body.client_secret, api.token];
      expect(secrets.every((s) => typeof s === 'string' && s.length > 10)).toBe(true);
      const storedUser = await t.stores.durable.users.findById(user.id);
      const storedClient = await t.stores.durable.clients.find(client.body.client_id);
      const hashes = [storedUser!.password_hash!, storedClient!.client_secret_hash!];

      // Every page of the whole trail.
      let text = '';
      let cursor: string | undefined;
      for (let page = 0; page < 100; page += 1) {
        const res = await api.get('/v2/audit', { limit: 100, ...(cursor ? { cursor } : {}) });
        expect(res.status).toBe(200);
        text += JSON.stringify(res.body.data);
        cursor = res.body.pagination.next_cursor ?? undefined;
        if (!cursor) break;
      }
      for (const secret of [...secrets, ...hashes]) expect(text).not.toContain(secret);
      expect(text).not.toMatch(/\$argon2/);
      expect(text).not.toMatch(/password_hash|client_secret_hash/);
      // The user's password shows as changed, never as a value.
      const created = await api.get('/v2/audit', { target_id: user.id, action: 'user.created' });
      expect(created.body.data[0].changes.password).toEqual({ before: '[REDACTED]', after: '[REDACTED]' });
    });

    describe('filters and paging', () => {
      let other: AdminApi;
      let userIds: string[];
      let stamps: string[];
      beforeAll(async () => {
        other = await adminApi(t);
        userIds = [];
        for (let i = 0; i < 3; i += 1) userIds.push((await other.createUser()).id);
        await other.put(`/v2/users/${userIds[0]}`, { first_name: 'Changed' });
        await other.createRole();
        const mine = await api.get('/v2/audit', { actor_id: other.client!.clientId, limit: 100 });
        stamps = (mine.body.data as Entry[]).map((e) => e.timestamp);
      });

      it('GET /v2/audit filters by actor_id', async () => {
        const res = await api.get('/v2/audit', { actor_id: other.client!.clientId });
        expect(res.status).toBe(200);
        expect(res.body.pagination.total).toBe(5);
        expect(res.body.data.map((e: Entry) => e.action)).toEqual([
          'role.created',
          'user.updated',
          'user.created',
          'user.created',
          'user.created',
        ]);
        expect(res.body.data.every((e: Entry) => e.actor.id === other.client!.clientId)).toBe(true);
        expect((await api.get('/v2/audit', { actor_id: 'nobody' })).body.data).toEqual([]);
      });

      it('GET /v2/audit filters by an action, or by an action prefix with user.*', async () => {
        const exact = await api.get('/v2/audit', {
          actor_id: other.client!.clientId,
          action: 'user.created',
        });
        expect(exact.body.data.map((e: Entry) => e.action)).toEqual([
          'user.created',
          'user.created',
          'user.created',
        ]);
        const prefix = await api.get('/v2/audit', { actor_id: other.client!.clientId, action: 'user.*' });
        expect(prefix.body.data.map((e: Entry) => e.action)).toEqual([
          'user.updated',
          'user.created',
          'user.created',
          'user.created',
        ]);
        const all = await api.get('/v2/audit', { action: 'user.*', limit: 100 });
        expect(all.body.data.length).toBeGreaterThan(0);
        expect(all.body.data.every((e: Entry) => e.action.startsWith('user.'))).toBe(true);
        const roles = await api.get('/v2/audit', { actor_id: other.client!.clientId, action: 'role.*' });
        expect(roles.body.data.map((e: Entry) => e.action)).toEqual(['role.created']);
        // "user.*" is a prefix, not a pattern: "user" alone matches nothing, "u*" matches users.
        expect(
          (await api.get('/v2/audit', { actor_id: other.client!.clientId, action: 'user' })).body.data,
        ).toEqual([]);
        expect(
          (await api.get('/v2/audit', { actor_id: other.client!.clientId, action: 'u*' })).body.pagination
            .total,
        ).toBe(4);
      });

      it('GET /v2/audit filters by target', async () => {
        const res = await api.get('/v2/audit', { target_type: 'user', target_id: userIds[0]! });
        expect(res.body.data.map((e: Entry) => e.action)).toEqual(['user.updated', 'user.created']);
        const roles = await api.get('/v2/audit', { target_type: 'role', actor_id: other.client!.clientId });
        expect(roles.body.data).toHaveLength(1);
      });

      it('GET /v2/audit filters by time with since (inclusive) and until (exclusive)', async () => {
        const newest = stamps[0]!;
        const oldest = stamps.at(-1)!;
        const actor = other.client!.clientId;
        const sinceOldest = await api.get('/v2/audit', { actor_id: actor, since: oldest });
        expect(sinceOldest.body.pagination.total).toBe(5);
        const untilNewest = await api.get('/v2/audit', { actor_id: actor, until: newest });
        expect(untilNewest.body.data.every((e: Entry) => e.timestamp < newest)).toBe(true);
        const after = await api.get('/v2/audit', {
          actor_id: actor,
          since: new Date(Date.parse(newest) + 1).toISOString(),
        });
        expect(after.body.data).toEqual([]);
        const window = await api.get('/v2/audit', {
          actor_id: actor,
          since: oldest,
          until: new Date(Date.parse(newest) + 1).toISOString(),
        });
        expect(window.body.pagination.total).toBe(5);
        // An offset other than Z is accepted.
        const offset = await api.get('/v2/audit', { actor_id: actor, since: oldest.replace('Z', '+00:00') });
        expect(offset.body.pagination.total).toBe(5);
      });

      it('GET /v2/audit pages with a cursor, newest first, every entry once', async () => {
        const actor = other.client!.clientId;
        const all = (await api.get('/v2/audit', { actor_id: actor, limit: 100 })).body.data as Entry[];
        const seen: Entry[] = [];
        let cursor: string | undefined;
        for (let page = 0; page < 10; page += 1) {
          const res = await api.get('/v2/audit', {
            actor_id: actor,
            limit: 2,
            ...(cursor ? { cursor } : {}),
          });
          expect(res.status).toBe(200);
          expect(res.body.pagination).toMatchObject({ total: 5, limit: 2 });
          seen.push(...(res.body.data as Entry[]));
          cursor = res.body.pagination.next_cursor ?? undefined;
          expect(res.body.pagination.has_more).toBe(cursor !== undefined);
          if (!cursor) break;
        }
        expect(seen.map((e) => e.id)).toEqual(all.map((e) => e.id));
        const stampsSeen = seen.map((e) => e.timestamp);
        expect([...stampsSeen].sort().reverse()).toEqual(stampsSeen);

        // New entries do not disturb a walk in progress: they are newer than the cursor.
        const firstPage = await api.get('/v2/audit', { actor_id: actor, limit: 2 });
        await other.createUser();
        const secondPage = await api.get('/v2/audit', {
          actor_id: actor,
          limit: 2,
          cursor: firstPage.body.pagination.next_cursor,
        });
        expect(secondPage.body.data.map((e: Entry) => e.id)).toEqual(all.slice(2, 4).map((e) => e.id));
      });

      it('GET /v2/audit refuses bad filters with 400 VALIDATION_ERROR, and cursors it did not issue with 422 INVALID_CURSOR', async () => {
        const cases: [Record<string, string>, string, string][] = [
          [{ since: 'yesterday' }, 'since', 'Must be an RFC 3339 timestamp'],
          [{ until: '2026-13-01T00:00:00Z' }, 'until', 'Must be an RFC 3339 timestamp'],
          [{ cursor: 'garb.age' }, 'cursor', 'Not a cursor (base64url text)'],
          [{ limit: '1000' }, 'limit', 'At most 100'],
        ];
        for (const [query, field, issue] of cases) {
          const res = await api.get('/v2/audit', query);
          expect(res.status).toBe(400);
          expect(res.body.error.code).toBe('VALIDATION_ERROR');
          expect(res.body.error.details).toEqual([expect.objectContaining({ field, issue })]);
        }
        const garbage = await api.get('/v2/audit', { cursor: 'garbage' });
        expect(garbage.status).toBe(422);
        expect(garbage.body.error.code).toBe('INVALID_CURSOR');
        // A users-list cursor is not an audit cursor.
        const users = await api.get('/v2/users', { limit: 1 });
        const cursor = users.body.pagination.next_cursor as string;
        expect(cursor).toEqual(expect.any(String));
        const res = await api.get('/v2/audit', { cursor });
        expect(res.status).toBe(422);
        expect(res.body.error).toMatchObject({
          code: 'INVALID_CURSOR',
          details: [{ field: 'cursor', issue: 'Not a cursor of this list' }],
        });
      });
    });
  },
);
