/**
 * Authentication and authorization of /v2: every operation the OpenAPI document marks with a scope
 * refuses a request without a token (401 AUTH_TOKEN_MISSING), with a garbage token (401
 * AUTH_TOKEN_INVALID) and with a token lacking that scope (403 AUTH_INSUFFICIENT_SCOPE), each with
 * its RFC 6750 challenge; expired JWT management tokens get AUTH_TOKEN_EXPIRED; a user's token holds
 * only the admin scopes their roles grant.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import request from 'supertest';

import { ADMIN_SCOPES } from '../../src/oidc/scopes.js';
import {
  AdminApi,
  adminApi,
  ALL_ADMIN_SCOPES,
  clientToken,
  registerServiceClient,
  requestToken,
  uniqueEmail,
  type ServiceClient,
} from '../helpers/admin-api.js';
import { withClockShiftedBy } from '../helpers/clock.js';
import { registerClient } from '../helpers/fixtures.js';
import { codeFlow, discover } from '../helpers/relying-party.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

interface Operation {
  method: 'get' | 'post' | 'put' | 'delete' | 'patch';
  path: string;
  operationId: string;
  scope: string;
}

/** Every operation of the document that declares x-required-scope, with its path parameters filled in. */
async function scopedOperations(t: TestApp): Promise<Operation[]> {
  const res = await request(t.callback).get('/v2/openapi.json');
  expect(res.status).toBe(200);
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(res.body.paths as Record<string, Record<string, never>>)) {
    // /v1/authorize answers a user's own token without the scope (its rules: test/api/policies.test.ts).
    if (!path.startsWith('/v2/')) continue;
    for (const [method, op] of Object.entries(methods) as [Operation['method'], Record<string, string>][]) {
      if (op['x-required-scope']) {
        ops.push({
          method,
          path: path.replace(/\{\w+\}/g, 'some-id'),
          operationId: op.operationId!,
          scope: op['x-required-scope'],
        });
      }
    }
  }
  return ops;
}

let nextAddress = 1;
/** Anonymous callers are rate-limited by address: give each request its own, as if from many hosts. */
const freshAddress = () => {
  nextAddress += 1;
  return `198.51.${Math.floor(nextAddress / 250) % 250}.${(nextAddress % 250) + 1}`;
};

function send(t: TestApp, op: Operation, authorization?: string) {
  let req = request(t.callback)[op.method](op.path).set('X-Forwarded-For', freshAddress());
  if (authorization !== undefined) req = req.set('Authorization', authorization);
  return op.method === 'get' || op.method === 'delete' ? req : req.send({});
}

describe.each(availableBackends())(
  '/v2 authentication and scopes with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let issuer: string;
    let ops: Operation[];
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { TRUST_PROXY: 'true' } });
      issuer = t.config.issuer;
      ops = await scopedOperations(t);
    });
    afterAll(() => t.close());

    it('the OpenAPI document marks the users, roles and audit operations with their scopes', () => {
      const byId = Object.fromEntries(ops.map((o) => [o.operationId, o.scope]));
      expect(byId).toMatchObject({
        listUsers: 'user:read',
        searchUsers: 'user:read',
        createUser: 'user:write',
        bulkCreateUsers: 'user:write',
        getUser: 'user:read',
        updateUser: 'user:write',
        deleteUser: 'user:write',
        restoreUser: 'user:write',
        getUserPreferences: 'user:read',
        setUserPreferences: 'user:write',
        getUserActivity: 'user:read',
        listUserRoles: 'user:read',
        assignUserRole: 'role:manage',
        removeUserRole: 'role:manage',
        requirePasswordReset: 'user:write',
        setUserPassword: 'user:write',
        listRoles: 'role:manage',
        createRole: 'role:manage',
        getRole: 'role:manage',
        updateRole: 'role:manage',
        deleteRole: 'role:manage',
        listAuditEntries: 'audit:read',
        getUserAnalytics: 'analytics:read',
      });
      for (const op of ops) expect(ADMIN_SCOPES).toContain(op.scope);
    });

    it('every scoped /v2 operation refuses a request without a token with 401 AUTH_TOKEN_MISSING and a Bearer challenge', async () => {
      const wrong: unknown[] = [];
      for (const op of ops) {
        const res = await send(t, op);
        const seen = {
          status: res.status,
          code: res.body.error?.code,
          challenge: res.headers['www-authenticate'],
        };
        const expected = { status: 401, code: 'AUTH_TOKEN_MISSING', challenge: `Bearer realm="${issuer}"` };
        if (JSON.stringify(seen) !== JSON.stringify(expected)) wrong.push({ op, seen });
      }
      expect(wrong).toEqual([]);
      expect(ops.length).toBeGreaterThanOrEqual(22);
    });

    it('every scoped /v2 operation refuses a garbage token with 401 AUTH_TOKEN_INVALID and an invalid_token challenge', async () => {
      const wrong: unknown[] = [];
      const garbage = [
        'Bearer not-a-real-token',
        'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
        'Bearer a.b.c',
        'Basic dXNlcjpwYXNz',
        'Bearer',
      ];
      for (const [i, op] of ops.entries()) {
        const header = garbage[i % garbage.length]!;
        const res = await send(t, op, header);
        const seen = {
          status: res.status,
          code: res.body.error?.code,
          challenge: res.headers['www-authenticate'],
        };
        const challenge = new RegExp(
          `^Bearer realm="${issuer}", error="invalid_token", error_description="[^"]+"$`,
        );
        if (
          seen.status !== 401 ||
          seen.code !== 'AUTH_TOKEN_INVALID' ||
          !challenge.test(seen.challenge ?? '')
        ) {
          wrong.push({ op, header, seen });
        }
      }
      expect(wrong).toEqual([]);
    });

    it('every scoped /v2 operation refuses a token lacking its scope with 403 AUTH_INSUFFICIENT_SCOPE', async () => {
      const client = await registerServiceClient(t);
      const tokens: Record<string, string> = {};
      for (const scope of ADMIN_SCOPES) {
        tokens[scope] = await clientToken(t, client, {
          scope: ADMIN_SCOPES.filter((s) => s !== scope).join(' '),
        });
      }
      const wrong: unknown[] = [];
      for (const op of ops) {
        const res = await send(t, op, `Bearer ${tokens[op.scope]}`);
        const seen = {
          status: res.status,
          code: res.body.error?.code,
          message: res.body.error?.message,
          details: res.body.error?.details,
          challenge: res.headers['www-authenticate'],
        };
        const expected = {
          status: 403,
          code: 'AUTH_INSUFFICIENT_SCOPE',
          message: `This operation needs the scope "${op.scope}"`,
          details: [{ field: 'scope', issue: `Required: ${op.scope}` }],
          challenge: `Bearer realm="${issuer}", error="insufficient_scope", scope="${op.scope}"`,
        };
        if (JSON.stringify(seen) !== JSON.stringify(expected)) wrong.push({ op, seen });
      }
      expect(wrong).toEqual([]);
    });

    it('a token without admin scopes gets 403 everywhere, and a token with the scope gets past the check', async () => {
      const client = await registerServiceClient(t);
      const none = new AdminApi(t, await clientToken(t, client, { scope: '' }), client);
      const res = await none.get('/v2/users');
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      const reader = new AdminApi(t, await clientToken(t, client, { scope: 'user:read' }), client);
      expect((await reader.get('/v2/users')).status).toBe(200);
      expect((await reader.post('/v2/users', {})).status).toBe(403);
      expect((await reader.get('/v2/roles')).status).toBe(403);
      expect((await reader.get('/v2/audit')).status).toBe(403);
    });

    it('a client cannot obtain admin scopes beyond its allowed scope', async () => {
      const client = await registerServiceClient(t, { scope: 'user:read' });
      const res = await requestToken(t, client, { scope: 'user:read user:write' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_scope');
    });

    it('a revoked token is refused with 401 AUTH_TOKEN_INVALID', async () => {
      const api = await adminApi(t);
      expect((await api.get('/v2/users')).status).toBe(200);
      const revoke = await request(t.callback)
        .post('/oauth/revoke')
        .auth(api.client!.clientId, api.client!.clientSecret)
        .type('form')
        .send({ token: api.token });
      expect(revoke.status).toBe(200);
      const res = await api.get('/v2/users');
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_TOKEN_INVALID');
    });

    describe('JWT management tokens (resource=<issuer>/v2)', () => {
      let client: ServiceClient;
      beforeAll(async () => {
        client = await registerServiceClient(t);
      });

      it('a JWT for the management API authenticates until it expires, then gets 401 AUTH_TOKEN_EXPIRED', async () => {
        const resource = `${issuer}/v2`;
        const jwt = await clientToken(t, client, { scope: 'user:read', resource });
        expect(jwt.split('.')).toHaveLength(3);
        const ok = await new AdminApi(t, jwt).get('/v2/users');
        expect(ok.status).toBe(200);

        // A token issued one lifetime (and a minute) ago: its exp has passed by the server's clock.
        // (Shifting Date.now forward instead does not move the JWT library's `new Date()`.)
        const ttl = t.config.clientCredentialsTtlS;
        const old = await withClockShiftedBy(-(ttl + 60), () =>
          clientToken(t, client, { scope: 'user:read', resource }),
        );
        const res = await new AdminApi(t, old).get('/v2/users');
        expect(res.status).toBe(401);
        expect(res.body.error).toMatchObject({
          code: 'AUTH_TOKEN_EXPIRED',
          message: 'The access token has expired',
        });
        expect(res.headers['www-authenticate']).toBe(
          `Bearer realm="${issuer}", error="invalid_token", error_description="The access token has expired"`,
        );
      });

      it('a JWT with a forged signature or for another API is refused with 401 AUTH_TOKEN_INVALID', async () => {
        const resource = `${issuer}/v2`;
        const jwt = await clientToken(t, client, { scope: 'user:read', resource });
        const [header, payload, signature] = jwt.split('.') as [string, string, string];
        const forgedPayload = Buffer.from(
          JSON.stringify({
            ...JSON.parse(Buffer.from(payload, 'base64url').toString()),
            scope: ALL_ADMIN_SCOPES,
          }),
        ).toString('base64url');
        for (const token of [
          `${header}.${forgedPayload}.${signature}`,
          `${header}.${payload}.${signature.slice(0, -4)}AAAA`,
          `${header}.${payload}.`,
        ]) {
          const res = await new AdminApi(t, token).get('/v2/users');
          expect(res.status).toBe(401);
          expect(res.body.error.code).toBe('AUTH_TOKEN_INVALID');
        }

        await t.stores.durable.resourceServers.create({
          identifier: 'https://orders.example.com',
          name: 'Orders',
          scopes: ['user:read'],
          access_token_format: 'jwt',
          access_token_ttl: 600,
        });
        const other = await clientToken(t, client, {
          scope: 'user:read',
          resource: 'https://orders.example.com',
        });
        const res = await new AdminApi(t, other).get('/v2/users');
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('AUTH_TOKEN_INVALID');

        await t.stores.durable.resourceServers.create({
          identifier: 'https://opaque.example.com',
          name: 'Opaque',
          scopes: ['user:read'],
          access_token_format: 'opaque',
          access_token_ttl: 600,
        });
        const opaque = await clientToken(t, client, {
          scope: 'user:read',
          resource: 'https://opaque.example.com',
        });
        const refused = await new AdminApi(t, opaque).get('/v2/users');
        expect(refused.status).toBe(401);
        expect(refused.body.error).toMatchObject({
          code: 'AUTH_TOKEN_INVALID',
          message: 'The access token is for another API',
        });
      });
    });
  },
);

describe.each(availableBackends())(
  '/v2 with a user’s access token, durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let api: AdminApi;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      api = await adminApi(server.t);
    });
    afterAll(() => server.close());

    it('a user’s token carries only the admin scopes their roles grant, checked on every request', async () => {
      const reader = await api.createRole({ permissions: ['user:read'] });
      const writer = await api.createRole({ permissions: ['user:write'] });
      const password = 'quartz-lantern-meadow-57-oboe';
      const person = await api.createUser({ role: reader.name, password, email: uniqueEmail('operator') });
      // The client itself must be allowed the admin scopes; the user's roles then narrow them.
      const web = await registerClient(server.t, 'web', {
        firstParty: true,
        metadata: { scope: 'openid user:read user:write role:manage audit:read' },
      });
      const config = await discover(server.url, web);
      const { tokens } = await codeFlow(
        config,
        web,
        { email: person.email, password },
        { scope: 'openid user:read user:write role:manage' },
      );
      expect(tokens.scope!.split(' ').sort()).toEqual(['openid', 'role:manage', 'user:read', 'user:write']);
      const mine = new AdminApi(server.t, tokens.access_token);

      expect((await mine.get('/v2/users')).status).toBe(200);
      const create = await mine.post('/v2/users', { email: uniqueEmail(), first_name: 'A', last_name: 'B' });
      expect(create.status).toBe(403);
      expect(create.body.error).toMatchObject({
        code: 'AUTH_INSUFFICIENT_SCOPE',
        details: [{ field: 'scope', issue: 'Required: user:write' }],
      });
      expect((await mine.get('/v2/roles')).status).toBe(403);

      // A linked role adds its permissions at once; the union of all roles counts.
      await api.post(`/v2/users/${person.id}/roles/${writer.id}`);
      const created = await mine.post('/v2/users', { email: uniqueEmail(), first_name: 'A', last_name: 'B' });
      expect(created.status).toBe(201);
      const audit = await api.get('/v2/audit', { request_id: created.headers['x-request-id'] });
      expect(audit.body.data[0]).toMatchObject({
        actor: { type: 'user', id: person.id, client_id: web.clientId },
        action: 'user.created',
      });

      // A permission the roles grant but the token was not issued for stays out of reach.
      await api.put(`/v2/roles/${reader.id}`, { permissions: ['user:read', 'audit:read'] });
      expect((await mine.get('/v2/audit')).status).toBe(403);

      await api.delete(`/v2/users/${person.id}/roles/${writer.id}`);
      expect(
        (await mine.post('/v2/users', { email: uniqueEmail(), first_name: 'A', last_name: 'B' })).status,
      ).toBe(403);

      // A suspended user's token stops working at once.
      await api.put(`/v2/users/${person.id}`, { status: 'suspended' });
      const suspended = await mine.get('/v2/users');
      expect(suspended.status).toBe(401);
      expect(suspended.body.error.code).toBe('AUTH_TOKEN_INVALID');
      // …and so does introspection of it.
      const introspected = await oidc.tokenIntrospection(
        await discover(server.url, web),
        tokens.access_token,
      );
      expect(introspected.active).toBe(false);
    });
  },
);
