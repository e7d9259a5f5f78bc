/**
 * The privilege matrix: every privileged field and operation (README, "Field-level authorization")
 * tried with tokens holding the route's scope alone, the route's scope plus each other management
 * scope, every scope, and every scope but one of those required. Each attempt must succeed exactly
 * when the token holds every scope the operation needs, and a refusal (403 AUTH_INSUFFICIENT_SCOPE)
 * must change nothing. Then the self-protection rules, and the escalation of the original report
 * (a user:write token creating an admin, then an API key reaching /v2/clients).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type request from 'supertest';

import { ADMIN_SCOPES } from '../../src/oidc/scopes.js';
import {
  AdminApi,
  adminApi,
  clientToken,
  registerServiceClient,
  uniqueEmail,
  uniqueRoleName,
  type ServiceClient,
} from '../helpers/admin-api.js';
import type { TestApp } from '../helpers/test-app.js';
import { hostileApp, writeWitness } from './helpers.js';

const ALL = [...ADMIN_SCOPES] as string[];

interface Privileged {
  name: string;
  /** Every scope the operation needs (the route's included). */
  needs: string[];
  /** The route's own scope. */
  route: string;
  /** Makes what the attempt acts on (as the system's full administrator); returns the attempt. */
  prepare(): Promise<(api: AdminApi) => request.Test>;
}

describe('privilege matrix (embedded)', () => {
  let t: TestApp;
  let root: AdminApi;
  let issuer: ServiceClient;
  const tokens = new Map<string, AdminApi>();
  let editor: { id: string; name: string };
  let adminRoleId: string;

  /** A token holding exactly `scopes`, from one client allowed all of them. */
  const holding = async (scopes: string[]) => {
    const key = [...scopes].sort().join(' ');
    if (!tokens.has(key))
      tokens.set(key, new AdminApi(t, await clientToken(t, issuer, { scope: key }), issuer));
    return tokens.get(key)!;
  };

  beforeAll(async () => {
    t = await hostileApp('embedded', { PROTECTED_METADATA_KEYS: 'tenant' });
    root = await adminApi(t);
    issuer = await registerServiceClient(t);
    const role = await root.createRole({ name: uniqueRoleName('editor'), permissions: ['docs:write'] });
    editor = { id: role.id, name: role.name };
    adminRoleId = ((await root.get('/v2/roles')).body.data as { id: string; name: string }[]).find(
      (r) => r.name === 'admin',
    )!.id;
  });
  afterAll(() => t.close());

  const newUser = (over: Record<string, unknown> = {}) => root.createUser(over);
  const body = (over: Record<string, unknown> = {}) => ({
    email: uniqueEmail(),
    first_name: 'A',
    last_name: 'B',
    ...over,
  });

  const operations: Privileged[] = [
    {
      name: 'create a user with the admin role',
      route: 'user:write',
      needs: [...new Set(['user:write', 'role:manage', ...ALL])],
      prepare: async () => (api) => api.post('/v2/users', body({ role: 'admin' })),
    },
    {
      name: 'create a user with a role granting no management scope',
      route: 'user:write',
      needs: ['user:write', 'role:manage'],
      prepare: async () => (api) => api.post('/v2/users', body({ role: editor.name })),
    },
    {
      name: 'create a user with email_verified',
      route: 'user:write',
      needs: ['user:write', 'user:security'],
      prepare: async () => (api) => api.post('/v2/users', body({ email_verified: true })),
    },
    {
      name: 'create a user with a protected metadata key',
      route: 'user:write',
      needs: ['user:write', 'user:security'],
      prepare: async () => (api) => api.post('/v2/users', body({ metadata: { tenant: 'acme' } })),
    },
    {
      name: 'create a user with ordinary fields',
      route: 'user:write',
      needs: ['user:write'],
      prepare: async () => (api) => api.post('/v2/users', body({ metadata: { team: 'x' } })),
    },
    {
      name: 'promote a user to the admin role',
      route: 'user:write',
      needs: [...new Set(['user:write', 'role:manage', ...ALL])],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.put(`/v2/users/${u.id}`, { role: 'admin' });
      },
    },
    {
      name: 'change a user’s role',
      route: 'user:write',
      needs: ['user:write', 'role:manage'],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.put(`/v2/users/${u.id}`, { role: editor.name });
      },
    },
    {
      name: 'reactivate a suspended user',
      route: 'user:write',
      needs: ['user:write', 'user:security'],
      prepare: async () => {
        const u = await newUser({ status: 'suspended' });
        return (api) => api.put(`/v2/users/${u.id}`, { status: 'active' });
      },
    },
    {
      name: 'suspend a user',
      route: 'user:write',
      needs: ['user:write'],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.put(`/v2/users/${u.id}`, { status: 'suspended' });
      },
    },
    {
      name: 'mark an e-mail verified',
      route: 'user:write',
      needs: ['user:write', 'user:security'],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.put(`/v2/users/${u.id}`, { email_verified: true });
      },
    },
    {
      name: 'remove a protected metadata key',
      route: 'user:write',
      needs: ['user:write', 'user:security'],
      prepare: async () => {
        const u = await newUser({ metadata: { tenant: 'acme', team: 'a' } });
        return (api) => api.put(`/v2/users/${u.id}`, { metadata: { team: 'a' } });
      },
    },
    {
      name: 'set the password of an administrator',
      route: 'user:write',
      needs: ALL,
      prepare: async () => {
        const u = await newUser({ role: 'admin' });
        return (api) =>
          api.put(`/v2/users/${u.id}/password`, { password: 'a long and unusual passphrase 42' });
      },
    },
    {
      name: 'change the e-mail of an administrator',
      route: 'user:write',
      needs: ALL,
      prepare: async () => {
        const u = await newUser({ role: 'admin' });
        return (api) => api.put(`/v2/users/${u.id}`, { email: uniqueEmail() });
      },
    },
    {
      name: 'delete an administrator',
      route: 'user:write',
      needs: ALL,
      prepare: async () => {
        const u = await newUser({ role: 'admin' });
        return (api) => api.delete(`/v2/users/${u.id}`);
      },
    },
    {
      name: 'link the admin role to a user',
      route: 'role:manage',
      needs: ALL,
      prepare: async () => {
        const u = await newUser();
        return (api) => api.post(`/v2/users/${u.id}/roles/${adminRoleId}`);
      },
    },
    {
      name: 'link a role granting no management scope',
      route: 'role:manage',
      needs: ['role:manage'],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.post(`/v2/users/${u.id}/roles/${editor.id}`);
      },
    },
    {
      name: 'create a role granting client:manage',
      route: 'role:manage',
      needs: ['role:manage', 'client:manage'],
      prepare: async () => (api) =>
        api.post('/v2/roles', { name: uniqueRoleName(), permissions: ['client:manage'] }),
    },
    {
      name: 'add audit:read to an existing role',
      route: 'role:manage',
      needs: ['role:manage', 'audit:read'],
      prepare: async () => {
        const r = await root.createRole({ permissions: ['docs:read'] });
        return (api) => api.put(`/v2/roles/${r.id}`, { permissions: ['docs:read', 'audit:read'] });
      },
    },
    {
      name: 'register a client allowed user:read',
      route: 'client:manage',
      needs: ['client:manage', 'user:read'],
      prepare: async () => (api) =>
        api.post('/v2/clients', { kind: 'service', client_name: 'Reader', scope: 'user:read' }),
    },
    {
      name: 'register a client on the enterprise plan',
      route: 'client:manage',
      needs: ['client:manage', 'plan:manage'],
      prepare: async () => (api) =>
        api.post('/v2/clients', {
          kind: 'service',
          client_name: 'Big',
          scope: 'openid',
          plan: 'enterprise',
        }),
    },
    {
      name: 'rotate the secret of a client holding every management scope',
      route: 'client:manage',
      needs: ALL,
      prepare: async () => {
        const c = await root.post('/v2/clients', {
          kind: 'service',
          client_name: 'Root 2',
          scope: ALL.join(' '),
        });
        return (api) => api.post(`/v2/clients/${c.body.client_id}/secret`);
      },
    },
    {
      name: 'create an API key for an administrator',
      route: 'key:manage',
      needs: ALL,
      prepare: async () => {
        const u = await newUser({ role: 'admin' });
        return (api) => api.post(`/v2/users/${u.id}/api-keys`, { name: 'k' });
      },
    },
    {
      name: 'create an API key holding user:read for a user who has it',
      route: 'key:manage',
      needs: ['key:manage', 'user:read'],
      prepare: async () => {
        const role = await root.createRole({ permissions: ['user:read'] });
        const u = await newUser();
        await root.post(`/v2/users/${u.id}/roles/${role.id}`);
        return (api) => api.post(`/v2/users/${u.id}/api-keys`, { name: 'k', scopes: ['user:read'] });
      },
    },
    {
      name: 'move a user to another plan',
      route: 'plan:manage',
      needs: ['plan:manage'],
      prepare: async () => {
        const u = await newUser();
        return (api) => api.put(`/v2/users/${u.id}/plan`, { plan: 'professional' });
      },
    },
  ];

  it('allows each privileged operation exactly when the token holds every scope it needs', async () => {
    const wrong: unknown[] = [];
    let attempts = 0;
    for (const op of operations) {
      const sets = new Map<string, string[]>();
      const add = (scopes: string[]) => sets.set([...new Set(scopes)].sort().join(' '), [...new Set(scopes)]);
      add([op.route]);
      for (const extra of ALL) add([op.route, extra]);
      add(ALL);
      for (const dropped of op.needs) add(ALL.filter((s) => s !== dropped || s === op.route));
      add(op.needs);
      for (const scopes of sets.values()) {
        const attempt = await op.prepare();
        const api = await holding(scopes);
        const before = await writeWitness(t);
        const res = await attempt(api);
        attempts += 1;
        const allowed = op.needs.every((s) => scopes.includes(s));
        const ok = allowed
          ? res.status >= 200 && res.status < 300
          : res.status === 403 &&
            res.body.error?.code === 'AUTH_INSUFFICIENT_SCOPE' &&
            before === (await writeWitness(t));
        if (!ok) wrong.push({ op: op.name, scopes, status: res.status, error: res.body.error });
      }
    }
    expect(wrong).toEqual([]);
    expect(attempts).toBeGreaterThan(operations.length * 9);
  });

  it('closes the reported escalation: a user:write token cannot make an admin, nor a key that reaches clients', async () => {
    const writer = await holding(['user:write']);
    const created = await writer.post(
      '/v2/users',
      body({ role: 'admin', password: 'a long and unusual passphrase 42' }),
    );
    expect(created.status).toBe(403);
    expect(created.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    const plain = await writer.post('/v2/users', body());
    expect(plain.status).toBe(201);
    const promoted = await writer.put(`/v2/users/${plain.body.id}`, { role: 'admin' });
    expect(promoted.status).toBe(403);
    expect((await root.get(`/v2/users/${plain.body.id}`)).body.role).toBe('user');
    const keyManager = await holding(['key:manage']);
    const admin = await newUser({ role: 'admin' });
    const key = await keyManager.post(`/v2/users/${admin.id}/api-keys`, { name: 'escalate' });
    expect(key.status).toBe(403);
  });

  describe('self-protection', () => {
    it('a client cannot delete itself, drop its own client:manage or its client_credentials grant', async () => {
      const self = await registerServiceClient(t);
      const api = new AdminApi(t, await clientToken(t, self), self);
      const before = await writeWitness(t);
      const cases = [
        await api.delete(`/v2/clients/${self.clientId}`),
        await api.put(`/v2/clients/${self.clientId}`, { scope: 'user:read' }),
        await api.put(`/v2/clients/${self.clientId}`, {
          grant_types: ['authorization_code'],
          redirect_uris: ['https://x.example.com/cb'],
          response_types: ['code'],
        }),
      ];
      expect(cases.map((r) => [r.status, r.body.error?.code])).toEqual([
        [409, 'SELF_PROTECTION'],
        [409, 'SELF_PROTECTION'],
        [409, 'SELF_PROTECTION'],
      ]);
      expect(await writeWitness(t)).toBe(before);
      // Changing something else about itself is fine, and another client may delete it.
      expect((await api.put(`/v2/clients/${self.clientId}`, { client_name: 'Renamed' })).status).toBe(200);
      expect((await root.delete(`/v2/clients/${self.clientId}`)).status).toBe(204);
    });

    it('the last active administrator stays, and the admin role cannot be deleted', async () => {
      const lonely = await hostileApp('embedded');
      try {
        const only = await registerServiceClient(lonely);
        const onlyApi = new AdminApi(lonely, await clientToken(lonely, only), only);
        const adminUser = await onlyApi.createUser({ role: 'admin' });
        for (const attempt of [
          () => onlyApi.delete(`/v2/users/${adminUser.id}`),
          () => onlyApi.delete(`/v2/users/${adminUser.id}`, { soft_delete: true }),
          () => onlyApi.put(`/v2/users/${adminUser.id}`, { status: 'suspended' }),
          () => onlyApi.put(`/v2/users/${adminUser.id}`, { role: 'user' }),
        ]) {
          const res = await attempt();
          expect([res.status, res.body.error?.code]).toEqual([409, 'LAST_ADMINISTRATOR']);
        }
        const adminRole = ((await onlyApi.get('/v2/roles')).body.data as { id: string; name: string }[]).find(
          (r) => r.name === 'admin',
        )!;
        const roleDelete = await onlyApi.delete(`/v2/roles/${adminRole.id}`, { force: true });
        expect([roleDelete.status, roleDelete.body.error?.code]).toEqual([422, 'BUSINESS_RULE_VIOLATION']);
        // With a second administrator the first may go.
        await onlyApi.createUser({ role: 'admin' });
        expect((await onlyApi.put(`/v2/users/${adminUser.id}`, { status: 'suspended' })).status).toBe(200);
      } finally {
        await lonely.close();
      }
    });

    it('refuses to delete the last client that can manage clients', async () => {
      const lonely = await hostileApp('embedded');
      try {
        const a = await registerServiceClient(lonely);
        const b = await registerServiceClient(lonely, { scope: 'client:manage' });
        const bApi = new AdminApi(lonely, await clientToken(lonely, b, { scope: 'client:manage' }), b);
        // b holds only client:manage: it may not act on a, which holds every management scope.
        expect((await bApi.delete(`/v2/clients/${a.clientId}`)).status).toBe(403);
        const aApi = new AdminApi(lonely, await clientToken(lonely, a), a);
        expect((await aApi.delete(`/v2/clients/${b.clientId}`)).status).toBe(204);
        // Now a is the last: another path to remove its management (by a system-held token) is refused too.
        const c = await registerServiceClient(lonely, { scope: 'user:read' });
        expect(c.clientId).toBeDefined();
        const dropped = await aApi.put(`/v2/clients/${a.clientId}`, { scope: 'user:read' });
        expect([dropped.status, dropped.body.error?.code]).toEqual([409, 'SELF_PROTECTION']);
        const viaService = lonely.services.clientService.remove(a.clientId, { grants: 'all' });
        await expect(viaService).rejects.toMatchObject({ code: 'LAST_ADMINISTRATOR' });
      } finally {
        await lonely.close();
      }
    });
  });
});
