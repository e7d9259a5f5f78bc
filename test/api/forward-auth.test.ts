/**
 * Forward authentication (/gateway/auth) as nginx auth_request, Traefik ForwardAuth and Envoy
 * ext_authz call it: JWT access tokens checked against our keys, opaque tokens and API keys through
 * the store, required scopes and audiences, an optional Cedar check with the resource id taken from
 * the original URI, RFC 6750 challenges, and a cache that revocations and user changes empty at once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import {
  adminApi,
  clientToken,
  randomTag,
  uniqueRoleName,
  userToken,
  type AdminApi,
  type ServiceClient,
} from '../helpers/admin-api.js';
import { registerClient } from '../helpers/fixtures.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const API = 'https://orders.example.com';
const OPAQUE_API = 'https://opaque-orders.example.com';

describe.each(availableBackends())(
  '/gateway/auth with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    let service: ServiceClient;
    const gate = (path = '/gateway/auth') => request(t.callback).get(path);
    const bearer = (token: string) => `Bearer ${token}`;

    beforeAll(async () => {
      t = await createTestApp({
        durable,
        shortLived,
        env: { GATEWAY_RESOURCE_PATTERN: '^/documents/([^/]+)', GATEWAY_AUTH_CACHE_TTL_S: '30' },
      });
      api = await adminApi(t);
      await t.stores.durable.resourceServers.create({
        identifier: API,
        name: 'Orders',
        scopes: ['orders:read', 'orders:write'],
        access_token_format: 'jwt',
        access_token_ttl: 600,
      });
      await t.stores.durable.resourceServers.create({
        identifier: OPAQUE_API,
        name: 'Orders (opaque tokens)',
        scopes: ['orders:read'],
        access_token_format: 'opaque',
        access_token_ttl: 600,
      });
      const client = await registerClient(t, 'service', {
        metadata: { api_scopes: ['orders:read', 'orders:write'] },
      });
      service = { clientId: client.clientId, clientSecret: client.clientSecret! };
    });
    afterAll(() => t.close());

    it('refuses a request without credentials, or with unusable ones, with an RFC 6750 challenge', async () => {
      const none = await gate();
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toBe(`Bearer realm="${t.config.issuer}"`);
      expect(none.body.error.code).toBe('AUTH_TOKEN_MISSING');
      expect(none.headers['x-user-id']).toBeUndefined();

      for (const authorization of ['Bearer garbage', 'Basic YTpi', `Bearer a.b.c`, 'Bearer sk_live_nope']) {
        const res = await gate().set('Authorization', authorization);
        expect([authorization, res.status]).toEqual([authorization, 401]);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="[^"]+", error="invalid_token"/);
      }
      const jwt = await clientToken(t, service, { scope: 'orders:read', resource: API });
      const [header, payload, signature] = jwt.split('.');
      const tampered = await gate().set(
        'Authorization',
        bearer(`${header}.${payload}.${signature!.slice(0, -4)}AAAA`),
      );
      expect(tampered.status).toBe(401);
    });

    it('passes a JWT access token of an API, naming the client and its scopes; audience and scope are checked', async () => {
      const jwt = await clientToken(t, service, { scope: 'orders:read', resource: API });
      const ok = await gate().set('Authorization', bearer(jwt));
      expect(ok.status).toBe(200);
      expect(ok.headers['x-client-id']).toBe(service.clientId);
      expect(ok.headers['x-user-scope']).toBe('orders:read');
      expect(ok.headers['x-user-id']).toBeUndefined();
      expect(ok.headers['cache-control']).toBe('no-store');

      expect(
        (await gate(`/gateway/auth?audience=${encodeURIComponent(API)}`).set('Authorization', bearer(jwt)))
          .status,
      ).toBe(200);
      const otherApi = await gate('/gateway/auth?audience=https%3A%2F%2Fother.example.com').set(
        'Authorization',
        bearer(jwt),
      );
      expect(otherApi.status).toBe(401);
      expect(otherApi.body.error.message).toContain('https://other.example.com');

      const write = await gate('/gateway/auth?scope=orders:write').set('Authorization', bearer(jwt));
      expect(write.status).toBe(403);
      expect(write.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      expect(write.headers['www-authenticate']).toContain('error="insufficient_scope", scope="orders:write"');
      // The scope may also come from a header the gateway adds (Envoy cannot add query parameters).
      const byHeader = await gate().set('Authorization', bearer(jwt)).set('X-Auth-Scope', 'orders:write');
      expect(byHeader.status).toBe(403);
    });

    it('refuses an expired JWT', async () => {
      await t.stores.durable.resourceServers.create({
        identifier: 'https://brief.example.com',
        name: 'Brief',
        scopes: ['orders:read'],
        access_token_format: 'jwt',
        access_token_ttl: 1,
      });
      const jwt = await clientToken(t, service, {
        scope: 'orders:read',
        resource: 'https://brief.example.com',
      });
      const exp = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).exp as number;
      await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1100));
      const res = await gate().set('Authorization', bearer(jwt));
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_TOKEN_EXPIRED');
    });

    it('remembers an opaque token for the cache period, and forgets it at once when it is revoked', async () => {
      const token = await clientToken(t, service, { scope: 'orders:read', resource: OPAQUE_API });
      expect(token.split('.')).toHaveLength(1);
      expect((await gate().set('Authorization', bearer(token))).status).toBe(200);
      // Removed behind the provider's back (no revocation announced): the cached answer stands.
      await t.stores.artifacts.adapterFor('ClientCredentials').destroy(token);
      expect((await gate().set('Authorization', bearer(token))).status).toBe(200);

      const revoked = await clientToken(t, service, { scope: 'orders:read', resource: OPAQUE_API });
      expect((await gate().set('Authorization', bearer(revoked))).status).toBe(200);
      const res = await request(t.callback)
        .post('/oauth/revoke')
        .auth(service.clientId, service.clientSecret)
        .type('form')
        .send({ token: revoked });
      expect(res.status).toBe(200);
      const after = await gate().set('Authorization', bearer(revoked));
      expect(after.status).toBe(401);
      expect(after.body.error.code).toBe('AUTH_TOKEN_INVALID');
    });

    it("names a user's token's user, and refuses it once the user is suspended", async () => {
      const user = await api.createUser();
      const token = await userToken(t, api, user.id);
      const ok = await gate().set('Authorization', bearer(token));
      expect(ok.status).toBe(200);
      expect(ok.headers['x-user-id']).toBe(user.id);
      expect(ok.headers['x-user-email']).toBe(user.email);
      const suspend = await api.put(`/v2/users/${user.id}`, { status: 'suspended' });
      expect(suspend.status).toBe(200);
      expect((await gate().set('Authorization', bearer(token))).status).toBe(401);
    });

    it('accepts API keys in Authorization or X-API-Key, and refuses a revoked one', async () => {
      const user = await api.createUser();
      const created = await api.post(`/v2/users/${user.id}/api-keys`, { name: 'gateway' });
      expect(created.status).toBe(201);
      const key = created.body.key as string;
      for (const set of [{ Authorization: bearer(key) }, { 'X-API-Key': key }]) {
        const res = await gate().set(set);
        expect(res.status).toBe(200);
        expect(res.headers['x-user-id']).toBe(user.id);
        expect(res.headers['x-user-email']).toBe(user.email);
      }
      expect((await api.delete(`/v2/users/${user.id}/api-keys/${created.body.id}`)).status).toBe(204);
      const res = await gate().set('X-API-Key', key);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    });

    it('asks Cedar with the resource id from the original URI (nginx, Traefik and Envoy forms)', async () => {
      const editor = await api.createRole({ name: uniqueRoleName('editor') });
      const alice = await api.createUser({ role: editor.name });
      const bob = await api.createUser();
      const action = `read-${randomTag()}`;
      for (const [id, policy] of [
        [
          `gw-editors-${action}`,
          `permit(principal in Role::"${editor.name}", action == Action::"${action}", resource is Document);`,
        ],
        [
          `gw-no-delete-${action}`,
          `forbid(principal, action == Action::"${action}", resource) when { context.method == "DELETE" };`,
        ],
      ] as const) {
        expect((await api.post('/v2/policies', { id, policy })).status).toBe(201);
      }
      const aliceToken = await userToken(t, api, alice.id);
      const bobToken = await userToken(t, api, bob.id);
      const check = `/gateway/auth?action=${action}&resource_type=Document`;

      // nginx: X-Original-URI; Traefik: X-Forwarded-Uri and X-Forwarded-Method.
      const allowed = await gate(check)
        .set('Authorization', bearer(aliceToken))
        .set('X-Original-URI', '/documents/d1?x=1');
      expect(allowed.status).toBe(200);
      expect(allowed.headers['x-user-id']).toBe(alice.id);
      const denied = await gate(check)
        .set('Authorization', bearer(bobToken))
        .set('X-Forwarded-Uri', '/documents/d1');
      expect(denied.status).toBe(403);
      expect(denied.body.error.code).toBe('ACCESS_DENIED');
      expect(denied.headers['www-authenticate']).toBeUndefined();
      const deleting = await gate(check)
        .set('Authorization', bearer(aliceToken))
        .set('X-Forwarded-Uri', '/documents/d1')
        .set('X-Forwarded-Method', 'DELETE');
      expect(deleting.status).toBe(403);
      const noResource = await gate(check)
        .set('Authorization', bearer(aliceToken))
        .set('X-Forwarded-Uri', '/elsewhere');
      expect(noResource.status).toBe(403);

      // Envoy: the original path after the prefix, options in headers; the client's own query
      // string is never read as options (an empty ?scope= cannot lift the gateway's requirement).
      const envoy = (token: string, path: string) =>
        request(t.callback)
          .post(`/gateway/auth${path}`)
          .set('Authorization', bearer(token))
          .set('X-Auth-Action', action)
          .set('X-Auth-Resource-Type', 'Document');
      expect((await envoy(aliceToken, '/documents/d2')).status).toBe(200);
      expect((await envoy(bobToken, '/documents/d2')).status).toBe(403);
      const lifted = await envoy(aliceToken, '/documents/d2?action=&scope=').set(
        'X-Auth-Scope',
        'orders:write',
      );
      expect(lifted.status).toBe(403);
      expect(lifted.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    });
  },
);
