/**
 * /v2/roles: create, read, list, update (the name is immutable) and delete — a role in use only with
 * force=true, which moves its holders to the built-in `user` role; `user` itself cannot be deleted.
 */
import { ADMIN_SCOPES } from '../../src/oidc/scopes.js';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, RFC3339, uniqueRoleName, type AdminApi, type ApiRole } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

describe.each(availableBackends())(
  '/v2/roles with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    it('GET /v2/roles lists the built-in roles and created ones, by name', async () => {
      const created = await api.createRole({ name: uniqueRoleName('zz-last') });
      const res = await api.get('/v2/roles');
      expect(res.status).toBe(200);
      const names = (res.body.data as ApiRole[]).map((r) => r.name);
      expect(names).toEqual([...names].sort());
      expect(names).toEqual(expect.arrayContaining(['admin', 'user', created.name]));
      const admin = (res.body.data as ApiRole[]).find((r) => r.name === 'admin')!;
      expect(admin).toEqual({
        id: expect.any(String),
        name: 'admin',
        display_name: 'Administrator',
        description: 'Full access to the management API',
        // Every management scope, in catalog order (bootstrap keeps the built-in role complete).
        permissions: [...ADMIN_SCOPES],
        created_at: expect.stringMatching(RFC3339),
        updated_at: expect.stringMatching(RFC3339),
      });
    });

    it('POST /v2/roles creates a role and answers 201 with its shape', async () => {
      const name = uniqueRoleName('editor');
      const res = await api.post('/v2/roles', {
        name,
        display_name: 'Editor',
        description: 'Edits things',
        permissions: ['docs:read', 'docs:write', 'docs:read'],
      });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        id: expect.any(String),
        name,
        display_name: 'Editor',
        description: 'Edits things',
        permissions: ['docs:read', 'docs:write'],
        created_at: expect.stringMatching(RFC3339),
        updated_at: expect.stringMatching(RFC3339),
      });
      expect(res.headers.location).toBe(`/v2/roles/${res.body.id}`);
      expect((await api.get(`/v2/roles/${res.body.id}`)).body).toEqual(res.body);

      const minimal = await api.post('/v2/roles', { name: uniqueRoleName() });
      expect(minimal.status).toBe(201);
      expect(minimal.body).toMatchObject({
        permissions: [],
        description: null,
        display_name: expect.any(String),
      });
    });

    it('POST /v2/roles refuses a taken name with 409 CONFLICT', async () => {
      const role = await api.createRole();
      const res = await api.post('/v2/roles', { name: role.name, display_name: 'Again' });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({
        code: 'CONFLICT',
        message: `A role named "${role.name}" already exists`,
        details: [{ field: 'name', issue: 'Already taken', provided: role.name }],
      });
      const builtIn = await api.post('/v2/roles', { name: 'admin' });
      expect(builtIn.status).toBe(409);
      expect(builtIn.body.error.code).toBe('CONFLICT');
    });

    it('POST /v2/roles refuses missing and invalid fields with 400', async () => {
      const missing = await api.post('/v2/roles', { display_name: 'No name' });
      expect(missing.status).toBe(400);
      expect(missing.body.error).toMatchObject({
        code: 'MISSING_REQUIRED_FIELD',
        details: [{ field: 'name' }],
      });
      const cases: [Record<string, unknown>, string, string][] = [
        [{ name: 'Has Spaces' }, 'name', 'Lower-case letters, digits, "_", ".", ":" or "-", at most 64'],
        [{ name: '$admin' }, 'name', 'Lower-case letters, digits, "_", ".", ":" or "-", at most 64'],
        [{ name: 'x'.repeat(65) }, 'name', 'Lower-case letters, digits, "_", ".", ":" or "-", at most 64'],
        [
          { name: uniqueRoleName(), permissions: ['ok', 'not ok'] },
          'permissions.1',
          'Letters, digits, "_", ".", ":", "*" or "-", at most 128',
        ],
        [{ name: uniqueRoleName(), permissions: 'docs:read' }, 'permissions', expect.any(String) as never],
        [{ name: uniqueRoleName(), display_name: '' }, 'display_name', 'Must not be empty'],
      ];
      for (const [body, field, issue] of cases) {
        const res = await api.post('/v2/roles', body);
        expect({ body, status: res.status }).toEqual({ body, status: 400 });
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
        expect(res.body.error.details).toEqual([expect.objectContaining({ field, issue })]);
      }
    });

    it('GET /v2/roles/{id} answers an unknown id with 404 ROLE_NOT_FOUND', async () => {
      const res = await api.get('/v2/roles/rol_nothing');
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'ROLE_NOT_FOUND', message: 'Role not found' });
    });

    it('PUT /v2/roles/{id} updates only the fields present and keeps the name', async () => {
      const role = await api.createRole({ display_name: 'Before', permissions: ['a:read'] });
      const res = await api.put(`/v2/roles/${role.id}`, { permissions: ['a:read', 'a:write', 'a:write'] });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        ...role,
        permissions: ['a:read', 'a:write'],
        updated_at: expect.stringMatching(RFC3339),
      });
      const described = await api.put(`/v2/roles/${role.id}`, { display_name: 'After', description: 'Now' });
      expect(described.body).toMatchObject({
        name: role.name,
        display_name: 'After',
        description: 'Now',
        permissions: ['a:read', 'a:write'],
      });
      const cleared = await api.put(`/v2/roles/${role.id}`, { description: null });
      expect(cleared.body.description).toBeNull();
    });

    it('PUT /v2/roles/{id} refuses to rename a role and unknown fields with 400 VALIDATION_ERROR', async () => {
      const role = await api.createRole();
      const res = await api.put(`/v2/roles/${role.id}`, { name: 'renamed', display_name: 'X' });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'name', issue: 'Unknown field' }],
      });
      expect((await api.get(`/v2/roles/${role.id}`)).body).toEqual(role);
      const unknown = await api.put('/v2/roles/rol_nothing', { display_name: 'X' });
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('ROLE_NOT_FOUND');
    });

    it('DELETE /v2/roles/{id} deletes a role nobody holds', async () => {
      const role = await api.createRole();
      const res = await api.delete(`/v2/roles/${role.id}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ message: 'Role deleted', reassigned_users: 0 });
      expect((await api.get(`/v2/roles/${role.id}`)).status).toBe(404);
      // The name is free again.
      expect((await api.post('/v2/roles', { name: role.name })).status).toBe(201);
      expect((await api.delete(`/v2/roles/${role.id}`)).body.error.code).toBe('ROLE_NOT_FOUND');
    });

    it('DELETE /v2/roles/{id} refuses a role in use with 422 BUSINESS_RULE_VIOLATION unless force=true', async () => {
      const role = await api.createRole({ permissions: ['x:do'] });
      const primary = await api.createUser({ role: role.name });
      const softDeleted = await api.createUser({ role: role.name });
      await api.delete(`/v2/users/${softDeleted.id}`, { soft_delete: true });
      const linked = await api.createUser();
      await api.post(`/v2/users/${linked.id}/roles/${role.id}`);

      const refused = await api.delete(`/v2/roles/${role.id}`);
      expect(refused.status).toBe(422);
      expect(refused.body.error).toMatchObject({
        code: 'BUSINESS_RULE_VIOLATION',
        message: 'The role is held by 3 user(s); pass force=true to delete it anyway',
        details: [
          { field: 'force', issue: '1 user(s) have the role linked', provided: false },
          { field: 'force', issue: '2 user(s) have it as their primary role', provided: false },
        ],
      });
      expect(Object.keys(refused.body.error).sort()).toEqual(
        ['code', 'details', 'message', 'request_id', 'timestamp'].sort(),
      );
      const notForced = await api.delete(`/v2/roles/${role.id}`, { force: false });
      expect(notForced.status).toBe(422);
      expect((await api.get(`/v2/roles/${role.id}`)).status).toBe(200);

      const forced = await api.delete(`/v2/roles/${role.id}`, { force: true });
      expect(forced.status).toBe(200);
      expect(forced.body).toEqual({ message: 'Role deleted', reassigned_users: 2 });
      expect((await api.get(`/v2/roles/${role.id}`)).status).toBe(404);
      expect((await api.get(`/v2/users/${primary.id}`)).body.role).toBe('user');
      const links = await api.get(`/v2/users/${linked.id}/roles`);
      expect(links.body.data.map((r: ApiRole) => r.name)).toEqual(['user']);
      // The soft-deleted holder is moved too, so restoring them cannot revive a dangling role.
      const restored = await api.post(`/v2/users/${softDeleted.id}/restore`);
      expect(restored.body.role).toBe('user');
    });

    it('DELETE /v2/roles/{id} refuses a role held only through a link with 422', async () => {
      const role = await api.createRole();
      const user = await api.createUser();
      await api.post(`/v2/users/${user.id}/roles/${role.id}`);
      const res = await api.delete(`/v2/roles/${role.id}`);
      expect(res.status).toBe(422);
      expect(res.body.error.details).toEqual([
        { field: 'force', issue: '1 user(s) have the role linked', provided: false },
        { field: 'force', issue: '0 user(s) have it as their primary role', provided: false },
      ]);
    });

    it('DELETE /v2/roles/{id} never deletes the built-in user role, even with force=true', async () => {
      const userRole = ((await api.get('/v2/roles')).body.data as ApiRole[]).find((r) => r.name === 'user')!;
      for (const query of [{}, { force: true }]) {
        const res = await api.delete(`/v2/roles/${userRole.id}`, query);
        expect(res.status).toBe(422);
        expect(res.body.error).toMatchObject({
          code: 'BUSINESS_RULE_VIOLATION',
          message: 'The built-in "user" role cannot be deleted',
        });
      }
      expect((await api.get(`/v2/roles/${userRole.id}`)).status).toBe(200);
    });

    it('DELETE /v2/roles/{id} refuses a force value other than true or false with 400', async () => {
      const role = await api.createRole();
      const res = await api.delete(`/v2/roles/${role.id}`, { force: 'please' });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'force', issue: 'true or false', provided: 'please' }],
      });
    });
  },
);
