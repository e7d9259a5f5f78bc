/**
 * Dynamic client registration (RFC 7591) and client self-management (RFC 7592), off by default:
 * an administrator creates an initial access token through /v2, a registrant registers a client
 * with openid-client's own registration call and then uses it like any client (code flow, client
 * credentials), and manages it with its registration access token, which reaches no other client.
 * Registered clients pass the /v2/clients checks, get no management scopes and are not first-party;
 * their creation, changes and deletion are events and audit entries of `dynamic-registration`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';

import { loadConfig } from '../../src/config/load-config.js';
import { adminClient, clientCredentials, type AdminClient } from '../helpers/admin-client.js';
import { createUser } from '../helpers/fixtures.js';
import { codeFlow, discover, oauthFailure } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const REDIRECT = 'https://app.example.com/callback';
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function call(
  url: string,
  init: { method?: string; token?: string; body?: unknown } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers,
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Answer['body']) : {} };
}

describe.each(availableBackends())(
  'dynamic client registration with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    let register: string;
    beforeAll(async () => {
      server = await startTestServer({
        durable,
        shortLived,
        env: { DYNAMIC_REGISTRATION: 'initial_access_token' },
      });
      admin = await adminClient(server);
      register = `${server.url}/oauth/register`;
    });
    afterAll(() => server.close());

    async function initialAccessToken(body: object = { description: 'partner onboarding' }) {
      const res = await admin.post('/v2/clients/registration-tokens', body);
      expect(res.status).toBe(201);
      return res.body as { id: string; token: string };
    }

    const clientCount = () => server.t.stores.durable.clients.count();

    it('POST /v2/clients/registration-tokens returns the token once; the list never shows it; creation is audited', async () => {
      const res = await admin.post('/v2/clients/registration-tokens', {
        description: 'acme',
        expires_in: 600,
      });
      expect(res.status).toBe(201);
      expect(res.headers.location).toBe(`/v2/clients/registration-tokens/${res.body.id}`);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^iat_/),
        token: expect.stringMatching(/^lkiat_[A-Za-z0-9_-]{43}$/),
        description: 'acme',
        created_by: admin.clientId,
        created_at: expect.stringMatching(TIMESTAMP),
        expires_at: expect.stringMatching(TIMESTAMP),
        expired: false,
        last_used_at: null,
        clients_registered: 0,
      });
      const lifetime = Date.parse(res.body.expires_at) - Date.parse(res.body.created_at);
      expect(lifetime).toBeGreaterThanOrEqual(599_000);
      expect(lifetime).toBeLessThanOrEqual(601_000);
      // Only a digest is stored.
      const stored = await server.t.stores.durable.registrationTokens.findById(res.body.id);
      expect(stored?.token_hash).toBe(createHash('sha256').update(res.body.token).digest('base64url'));
      expect(JSON.stringify(stored)).not.toContain(res.body.token);

      const list = await admin.get('/v2/clients/registration-tokens?limit=100');
      expect(list.status).toBe(200);
      const listed = (list.body.data as Record<string, unknown>[]).find((t) => t.id === res.body.id);
      expect(listed).toEqual({ ...res.body, token: undefined });
      expect(JSON.stringify(list.body)).not.toContain(res.body.token);

      const audit = await admin.get(`/v2/audit?target_id=${res.body.id}`);
      expect(audit.body.data).toEqual([
        expect.objectContaining({
          action: 'registration_token.created',
          actor: expect.objectContaining({ id: admin.clientId }),
          target: { type: 'registration_token', id: res.body.id },
        }),
      ]);
      expect(JSON.stringify(audit.body)).not.toContain(res.body.token);
    });

    it('the OpenAPI document describes the initial access token routes', async () => {
      const doc = await call(`${server.url}/v2/openapi.json`);
      const paths = doc.body.paths as Record<string, Record<string, { operationId: string }>>;
      expect(paths['/v2/clients/registration-tokens']?.post?.operationId).toBe('createRegistrationToken');
      expect(paths['/v2/clients/registration-tokens']?.get?.operationId).toBe('listRegistrationTokens');
      expect(paths['/v2/clients/registration-tokens/{id}']?.delete?.operationId).toBe(
        'revokeRegistrationToken',
      );
    });

    it('POST /v2/clients/registration-tokens needs client:manage', async () => {
      const reader = await adminClient(server, 'user:read');
      const res = await reader.post('/v2/clients/registration-tokens', {});
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    });

    it('registers a confidential client with openid-client, which then signs a user in with the code flow', async () => {
      const { token, id } = await initialAccessToken();
      const config = await oidc.dynamicClientRegistration(
        new URL(server.url),
        { client_name: 'Partner app', redirect_uris: [REDIRECT], first_party: true } as never,
        undefined,
        { initialAccessToken: token, execute: [oidc.allowInsecureRequests] },
      );
      const registered = config.clientMetadata();
      expect(registered).toMatchObject({
        client_id: expect.stringMatching(/^cl_/),
        client_secret: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
        client_secret_expires_at: 0,
        client_id_issued_at: expect.any(Number),
        client_name: 'Partner app',
        redirect_uris: [REDIRECT],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        registration_access_token: expect.stringMatching(/^lkrat_/),
        registration_client_uri: `${register}/${registered.client_id}`,
      });
      expect(registered).not.toHaveProperty('first_party');

      // The client works at once: a user signs in (a third-party client: the consent page is shown).
      const user = await createUser(server.t);
      const { tokens } = await codeFlow(config, { redirectUri: REDIRECT }, user, { scope: 'openid email' });
      expect(tokens.claims()?.sub).toBe(user.user.id);

      // Stored like any client: the secret as a digest only, not first-party, counted on the token.
      const stored = await server.t.stores.durable.clients.find(registered.client_id);
      expect(stored).toMatchObject({
        first_party: false,
        client_secret_hash: expect.stringMatching(/^sha256\$/),
      });
      expect(JSON.stringify(stored)).not.toContain(String(registered.client_secret));
      const v2 = await admin.get(`/v2/clients/${registered.client_id}`);
      expect(v2.body).toMatchObject({ kind: 'web', first_party: false, has_secret: true });
      expect(await server.t.stores.durable.registrationTokens.findById(id)).toMatchObject({ use_count: 1 });

      // The event and the audit entry name dynamic registration.
      const events = await server.t.stores.durable.outbox.listEvents({
        types: ['client.created'],
        limit: 1000,
      });
      const created = events.items.find(
        (e) => (e.data.client as { client_id?: string }).client_id === registered.client_id,
      );
      expect(created?.actor).toEqual({ type: 'system', id: 'dynamic-registration' });
      const audit = await admin.get(`/v2/audit?target_id=${registered.client_id}`);
      expect(audit.body.data).toEqual([
        expect.objectContaining({
          action: 'client.created',
          actor: { type: 'system', id: 'dynamic-registration', client_id: null },
          details: { dynamic_registration: true, initial_access_id: id },
        }),
      ]);
      expect(JSON.stringify(audit.body)).not.toContain(String(registered.client_secret));
    });

    it('registers a service client for client credentials; it may not obtain management scopes', async () => {
      const { token } = await initialAccessToken();
      const res = await call(register, {
        method: 'POST',
        token,
        body: { client_name: 'Batch job', grant_types: ['client_credentials'] },
      });
      expect(res.status).toBe(201);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('location')).toBe(res.body.registration_client_uri);
      expect(res.body).toMatchObject({
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      });
      const client = { clientId: String(res.body.client_id), clientSecret: String(res.body.client_secret) };

      const config = await discover(server.url, client);
      const tokens = await oidc.clientCredentialsGrant(config, {});
      expect(tokens.access_token).toEqual(expect.any(String));
      expect(
        await oauthFailure(oidc.clientCredentialsGrant(config, { scope: 'client:manage' })),
      ).toMatchObject({
        status: 400,
        error: 'invalid_scope',
      });
    });

    it('POST /oauth/register refuses management scopes and bad metadata with 400 in RFC 7591 form, creating nothing', async () => {
      const { token } = await initialAccessToken();
      const before = await clientCount();
      const cases: [object, string][] = [
        [{ redirect_uris: ['not a uri'] }, 'invalid_redirect_uri'],
        [{ redirect_uris: [REDIRECT], grant_types: ['implicit'] }, 'invalid_client_metadata'],
        [{ redirect_uris: [REDIRECT], scope: 'openid client:manage' }, 'invalid_client_metadata'],
        // Token exchange (whose users' tokens a client may trade) is an administrator's to give.
        [
          {
            grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
            token_exchange: { subject_clients: ['*'], impersonation: true },
          },
          'invalid_client_metadata',
        ],
        [
          { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'client_secret_jwt' },
          'invalid_client_metadata',
        ],
        // Passes the field checks; the provider's client schema refuses it (same as /v2/clients).
        [
          { redirect_uris: ['com.example.app:/callback'], token_endpoint_auth_method: 'none' },
          'invalid_redirect_uri',
        ],
        [{ redirect_uris: [], grant_types: ['authorization_code'] }, 'invalid_redirect_uri'],
      ];
      for (const [body, error] of cases) {
        const res = await call(register, { method: 'POST', token, body });
        expect({ body, status: res.status, error: res.body.error }).toEqual({ body, status: 400, error });
        expect(res.body.error_description).toEqual(expect.any(String));
      }
      const notJson = await fetch(register, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{"redirect_uris": [',
      });
      expect(notJson.status).toBe(400);
      expect(((await notJson.json()) as { error: string }).error).toBe('invalid_client_metadata');
      expect(await clientCount()).toBe(before);
    });

    it('the same metadata is refused the same way by /v2/clients', async () => {
      const body = { redirect_uris: ['com.example.app:/callback'], token_endpoint_auth_method: 'none' };
      const v2 = await admin.post('/v2/clients', { kind: 'spa', client_name: 'SPA', ...body });
      expect(v2.status).toBe(422);
      const { token } = await initialAccessToken();
      const res = await call(register, { method: 'POST', token, body });
      expect(res.body.error_description).toBe(v2.body.error.details[0].issue);
    });

    it('POST /oauth/register without, with a wrong, an expired or a revoked initial access token is 401, creating nothing', async () => {
      const before = await clientCount();
      const body = { redirect_uris: [REDIRECT] };
      const none = await call(register, { method: 'POST', body });
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe(`Bearer realm="${server.url}"`);
      expect(none.body.error).toBe('invalid_token');

      const wrong = await call(register, { method: 'POST', token: `lkiat_${'A'.repeat(43)}`, body });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toBe(
        `Bearer realm="${server.url}", error="invalid_token"`,
      );
      expect(wrong.body).toEqual({
        error: 'invalid_token',
        error_description: 'the initial access token is invalid, expired or revoked',
      });

      // An expired token, written to the store as the management API would have written it earlier.
      const expiredToken = `lkiat_${'e'.repeat(43)}`;
      const expired = await server.t.stores.durable.registrationTokens.create({
        kind: 'initial_access',
        token_hash: createHash('sha256').update(expiredToken).digest('base64url'),
        expires_at: new Date(Date.now() - 1000),
      });
      expect((await call(register, { method: 'POST', token: expiredToken, body })).status).toBe(401);
      const listed = await admin.get('/v2/clients/registration-tokens?limit=100');
      expect(
        (listed.body.data as { id: string; expired: boolean }[]).find((t) => t.id === expired.id),
      ).toMatchObject({
        expired: true,
      });

      const revoked = await initialAccessToken();
      expect((await admin.del(`/v2/clients/registration-tokens/${revoked.id}`)).status).toBe(204);
      expect((await admin.del(`/v2/clients/registration-tokens/${revoked.id}`)).status).toBe(404);
      expect((await call(register, { method: 'POST', token: revoked.token, body })).status).toBe(401);
      const audit = await admin.get(`/v2/audit?target_id=${revoked.id}&action=registration_token.revoked`);
      expect(audit.body.data).toHaveLength(1);

      // A registration access token is no initial access token.
      const ok = await call(register, { method: 'POST', token: (await initialAccessToken()).token, body });
      expect(ok.status).toBe(201);
      const rat = String(ok.body.registration_access_token);
      expect((await call(register, { method: 'POST', token: rat, body })).status).toBe(401);
      expect(await clientCount()).toBe(before + 1);
    });

    it('RFC 7592: the registration access token reads, replaces and deletes its own client', async () => {
      const { token } = await initialAccessToken();
      const created = await call(register, {
        method: 'POST',
        token,
        body: { client_name: 'Old name', redirect_uris: [REDIRECT], contacts: ['ops@example.com'] },
      });
      expect(created.status).toBe(201);
      const uri = String(created.body.registration_client_uri);
      const rat = String(created.body.registration_access_token);
      const clientId = String(created.body.client_id);
      const secret = String(created.body.client_secret);

      const read = await call(uri, { token: rat });
      expect(read.status).toBe(200);
      const { client_secret: _secret, ...withoutSecret } = created.body;
      expect(read.body).toEqual(withoutSecret);

      // PUT replaces: contacts left out are removed; a plan an administrator set stays.
      expect((await admin.put(`/v2/clients/${clientId}`, { plan: 'professional' })).status).toBe(200);
      const replaced = await call(uri, {
        method: 'PUT',
        token: rat,
        body: {
          client_id: clientId,
          client_secret: secret,
          client_name: 'New name',
          redirect_uris: [REDIRECT, 'https://app.example.com/other'],
        },
      });
      expect(replaced.status).toBe(200);
      expect(replaced.body).toMatchObject({
        client_id: clientId,
        client_name: 'New name',
        redirect_uris: [REDIRECT, 'https://app.example.com/other'],
        registration_access_token: rat,
      });
      expect(replaced.body).not.toHaveProperty('contacts');
      expect(replaced.body).not.toHaveProperty('client_secret');
      const v2 = await admin.get(`/v2/clients/${clientId}`);
      expect(v2.body).toMatchObject({ client_name: 'New name', plan: 'professional', first_party: false });
      expect(v2.body).not.toHaveProperty('contacts');
      // The secret still authenticates the client (which is not registered for client credentials).
      const stillKnown = await clientCredentials(server.url, { clientId, clientSecret: secret });
      expect(stillKnown).toEqual({
        status: 400,
        body: {
          error: 'invalid_request',
          error_description: 'requested grant type is not allowed for this client',
        },
      });

      // A wrong client_id or client_secret in the body is refused.
      const otherId = await call(uri, {
        method: 'PUT',
        token: rat,
        body: { client_id: 'cl_other', redirect_uris: [REDIRECT] },
      });
      expect(otherId.status).toBe(400);
      expect(otherId.body.error).toBe('invalid_client_metadata');
      const otherSecret = await call(uri, {
        method: 'PUT',
        token: rat,
        body: { client_secret: 'x', redirect_uris: [REDIRECT] },
      });
      expect(otherSecret.status).toBe(400);
      const badUri = await call(uri, { method: 'PUT', token: rat, body: { redirect_uris: ['nope'] } });
      expect(badUri.body.error).toBe('invalid_redirect_uri');
      expect((await admin.get(`/v2/clients/${clientId}`)).body.redirect_uris).toHaveLength(2);

      const events = await server.t.stores.durable.outbox.listEvents({
        types: ['client.updated'],
        limit: 1000,
      });
      expect(
        events.items.filter(
          (e) =>
            (e.data.client as { client_id?: string }).client_id === clientId &&
            e.actor.id === 'dynamic-registration',
        ),
      ).toHaveLength(1);

      const removed = await call(uri, { method: 'DELETE', token: rat });
      expect(removed.status).toBe(204);
      expect((await admin.get(`/v2/clients/${clientId}`)).status).toBe(404);
      expect((await call(uri, { token: rat })).status).toBe(401);
      expect(await clientCredentials(server.url, { clientId, clientSecret: secret })).toMatchObject({
        status: 401,
        body: { error: 'invalid_client' },
      });
      const deleted = await server.t.stores.durable.outbox.listEvents({
        types: ['client.deleted'],
        limit: 1000,
      });
      expect(
        deleted.items.find((e) => (e.data.client as { client_id?: string }).client_id === clientId)?.actor,
      ).toEqual({ type: 'system', id: 'dynamic-registration' });
    });

    it("RFC 7592: client A's registration access token cannot read, change or delete client B", async () => {
      const { token } = await initialAccessToken();
      const a = await call(register, { method: 'POST', token, body: { redirect_uris: [REDIRECT] } });
      const b = await call(register, {
        method: 'POST',
        token,
        body: { redirect_uris: [REDIRECT], client_name: 'B' },
      });
      const ratA = String(a.body.registration_access_token);
      const uriB = String(b.body.registration_client_uri);
      for (const [method, body] of [
        ['GET', undefined],
        ['PUT', { redirect_uris: [REDIRECT], client_name: 'taken over' }],
        ['DELETE', undefined],
      ] as const) {
        const res = await call(uriB, { method, token: ratA, body });
        expect({ method, status: res.status, error: res.body.error }).toEqual({
          method,
          status: 401,
          error: 'invalid_token',
        });
      }
      // Neither an initial access token, nor a management token, nor no token manages a client here.
      expect((await call(uriB, { token })).status).toBe(401);
      expect((await call(uriB, { token: admin.token })).status).toBe(401);
      expect((await call(uriB, {})).status).toBe(401);
      expect((await call(uriB, { token: String(b.body.registration_access_token) })).body.client_name).toBe(
        'B',
      );
    });

    it('discovery names the registration endpoint', async () => {
      const res = await call(`${server.url}/.well-known/openid-configuration`);
      expect(res.body.registration_endpoint).toBe(register);
    });
  },
);

describe('dynamic client registration off (the default)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('POST /oauth/register is 404 and discovery has no registration_endpoint', async () => {
    const admin = await adminClient(server);
    const token = await admin.post('/v2/clients/registration-tokens', {});
    expect(token.status).toBe(201);
    const res = await call(`${server.url}/oauth/register`, {
      method: 'POST',
      token: String(token.body.token),
      body: { redirect_uris: [REDIRECT] },
    });
    expect(res.status).toBe(404);
    expect((await call(`${server.url}/oauth/register/cl_x`, { token: 'x' })).status).toBe(404);
    const discovery = await call(`${server.url}/.well-known/openid-configuration`);
    expect(discovery.body).not.toHaveProperty('registration_endpoint');
  });

  it('DYNAMIC_REGISTRATION with a bad value fails start-up naming the setting', () => {
    expect(() => loadConfig({ env: { DYNAMIC_REGISTRATION: 'yes' } })).toThrow(/DYNAMIC_REGISTRATION/);
  });
});

describe('dynamic client registration open to anyone (DYNAMIC_REGISTRATION=open)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { DYNAMIC_REGISTRATION: 'open' } });
  });
  afterAll(() => server.close());

  it('POST /oauth/register needs no token, but a presented one must be valid', async () => {
    const register = `${server.url}/oauth/register`;
    const body = { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', scope: 'openid profile' };
    const res = await call(register, { method: 'POST', body });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ token_endpoint_auth_method: 'none', scope: 'openid profile' });
    expect(res.body).not.toHaveProperty('client_secret');
    expect(res.body).not.toHaveProperty('client_secret_expires_at');
    expect((await call(register, { method: 'POST', token: 'lkiat_nope', body })).status).toBe(401);
    const discovery = await call(`${server.url}/.well-known/openid-configuration`);
    expect(discovery.body.registration_endpoint).toBe(register);
  });
});
