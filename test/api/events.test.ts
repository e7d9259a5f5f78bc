/**
 * Domain events: every change made through the management API, and every sign-in, is recorded once
 * in the outbox, with the catalog's payload, before the request is answered. Read back from the
 * durable store's outbox on every backend combination.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { fromOutboxEvent, type DomainEvent } from '../../src/events/catalog.js';
import { adminApi, uniqueEmail, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const PASSWORD = 'correct horse battery staple';

describe.each(availableBackends())(
  'domain events with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { LOGIN_MAX_FAILURES: '3' } });
      api = await adminApi(t);
    });
    afterAll(() => t?.close());

    /** Events recorded since `since`, oldest first. */
    const eventsSince = async (since: Date): Promise<DomainEvent[]> => {
      const page = await t.stores.durable.outbox.listEvents({ from: since, limit: 1000 });
      return page.items.map((e) => fromOutboxEvent(e)!);
    };
    const mark = async () => {
      await new Promise((r) => setTimeout(r, 2));
      return new Date();
    };

    it('records the user lifecycle: created, updated with changes, role changes, password, deleted, restored', async () => {
      const since = await mark();
      const user = await api.createUser({ first_name: 'Ada', metadata: { department: 'eng' } });
      const role = await api.createRole();
      await api.put(`/v2/users/${user.id}`, { first_name: 'Augusta', metadata: { department: 'ops' } });
      await api.put(`/v2/users/${user.id}`, { first_name: 'Augusta' }); // no change: no event
      await api.post(`/v2/users/${user.id}/roles/${role.id}`);
      await api.delete(`/v2/users/${user.id}/roles/${role.id}`);
      expect((await api.put(`/v2/users/${user.id}/password`, { password: PASSWORD })).status).toBe(204);
      expect((await api.delete(`/v2/users/${user.id}`, { soft_delete: 'true' })).status).toBe(200);
      expect((await api.post(`/v2/users/${user.id}/restore`)).status).toBe(200);

      const events = (await eventsSince(since)).filter(
        (e) => e.type.startsWith('user.') && (e.data as { user?: { id: string } }).user?.id === user.id,
      );
      expect(events.map((e) => e.type)).toEqual([
        'user.created',
        'user.updated',
        'user.role_changed',
        'user.role_changed',
        'user.password_changed',
        'user.deleted',
        'user.restored',
      ]);
      const [created, updated, added, removed, password, deleted] = events as DomainEvent[];
      const shown = (await api.get(`/v2/users/${user.id}`)).body;
      // The API's shape, less the upstream identities (single sign-on), which events do not carry.
      expect(Object.keys((created!.data as { user: object }).user).sort()).toEqual(
        Object.keys(shown)
          .filter((k) => k !== 'identities')
          .sort(),
      );
      expect(created!.id).toMatch(/^evt_/);
      expect(created!.actor).toEqual({ type: 'client', id: api.client!.clientId });
      expect(updated!.data).toMatchObject({ changes: ['first_name', 'metadata.department'] });
      expect(added!.data).toMatchObject({ added: [role.name], removed: [] });
      expect(removed!.data).toMatchObject({ added: [], removed: [role.name] });
      expect(password!.data).toMatchObject({ by_administrator: true });
      expect(deleted!.data).toMatchObject({ permanent: false });
      expect(JSON.stringify(events)).not.toMatch(/password_hash|\$argon2/);
    });

    it('records a primary role change as user.updated and user.role_changed', async () => {
      const role = await api.createRole();
      const user = await api.createUser();
      const since = await mark();
      await api.put(`/v2/users/${user.id}`, { role: role.name });
      const types = (await eventsSince(since)).map((e) => [e.type, e.data] as const);
      expect(types.map(([type]) => type)).toEqual(['user.updated', 'user.role_changed']);
      expect(types[1]![1]).toMatchObject({ previous_role: 'user', added: [role.name], removed: ['user'] });
    });

    it('records bulk creations one event per created user', async () => {
      const since = await mark();
      const taken = await api.createUser();
      const res = await api.post('/v2/users/bulk', {
        users: [
          { email: uniqueEmail(), first_name: 'A', last_name: 'B' },
          { email: taken.email, first_name: 'A', last_name: 'B' },
          { email: uniqueEmail(), first_name: 'C', last_name: 'D' },
        ],
      });
      expect(res.status).toBeLessThan(300);
      const created = (await eventsSince(since)).filter((e) => e.type === 'user.created');
      expect(created).toHaveLength(3); // `taken` and the two new ones
    });

    it('records sign-ins, failed sign-ins and the lockout once', async () => {
      const user = await api.createUser({ password: PASSWORD });
      const since = await mark();
      const ok = await t.services.auth.authenticate({
        email: user.email,
        password: PASSWORD,
        ip: '203.0.113.7',
        userAgent: 'jest',
      });
      expect(ok.kind).toBe('ok');
      for (let i = 0; i < 5; i += 1) {
        await t.services.auth.authenticate({
          email: user.email,
          password: 'wrong',
          ip: `203.0.113.${10 + i}`,
        });
      }
      const events = await eventsSince(since);
      const mine = events.filter((e) => (e.data as { user?: { id: string } }).user?.id === user.id);
      expect(mine.map((e) => e.type)).toEqual([
        'user.login',
        'user.login_failed',
        'user.login_failed',
        'user.login_failed',
        'user.locked',
      ]);
      expect(mine[0]!.data).toMatchObject({
        method: 'password',
        ip_address: '203.0.113.7',
        user_agent: 'jest',
      });
      expect(mine[1]!.data).toMatchObject({ reason: 'invalid_credentials' });
      expect((mine[4]!.data as { locked_until: string }).locked_until).toEqual(expect.any(String));
    });

    it('records roles, clients and API keys', async () => {
      const since = await mark();
      const role = await api.createRole();
      await api.put(`/v2/roles/${role.id}`, { permissions: ['docs:read'] });
      await api.delete(`/v2/roles/${role.id}`);
      const client = await api.post('/v2/clients', {
        kind: 'service',
        client_name: 'Events test',
        scope: 'user:read',
      });
      expect(client.status).toBe(201);
      const clientId = client.body.client_id as string;
      await api.put(`/v2/clients/${clientId}`, { client_name: 'Renamed' });
      const user = await api.createUser();
      const key = await api.post(`/v2/users/${user.id}/api-keys`, { name: 'k', scopes: [] });
      expect(key.status).toBe(201);
      await api.post(`/v2/users/${user.id}/api-keys/${key.body.id}/rotate`);
      await api.delete(`/v2/users/${user.id}/api-keys/${key.body.id}`);
      await api.delete(`/v2/clients/${clientId}`);
      const types = (await eventsSince(since)).map((e) => e.type).filter((type) => !type.startsWith('user.'));
      expect(types).toEqual([
        'role.created',
        'role.updated',
        'role.deleted',
        'client.created',
        'client.updated',
        'api_key.created',
        'api_key.rotated',
        'api_key.revoked',
        'client.deleted',
      ]);
      const events = await eventsSince(since);
      const updated = events.find((e) => e.type === 'client.updated')!;
      expect(updated.data).toMatchObject({ client: { client_id: clientId, client_name: 'Renamed' } });
      expect((updated.data as { changes: string[] }).changes).toContain('metadata.client_name');
      expect(JSON.stringify(events)).not.toMatch(/secret_hash|lookup_id|sk_(live|test)_/);
    });
  },
);
