/**
 * /v2/resources: registering APIs (resource servers) through the management API, and checking that
 * the token endpoint follows: a registered API gets RFC 9068 JWT (or opaque) access tokens with its
 * identifier as audience and its scopes, a change to its scopes applies to the next token, and a
 * deleted API is refused with invalid_target. The management API's own identifier is reserved.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';

import { adminClient, clientCredentials, errorOf, type AdminClient } from '../helpers/admin-client.js';
import { registerClient } from '../helpers/fixtures.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const INVALID_TARGET = {
  status: 400,
  body: { error: 'invalid_target', error_description: 'unknown or unregistered resource indicator' },
};

const uniqueApi = () => `https://${randomBytes(4).toString('hex')}.api.example.com`;

describe.each(availableBackends())(
  '/v2/resources with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    /** A service client granted the test APIs' scopes for itself (api_scopes). */
    let service: { clientId: string; clientSecret: string };
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived, env: { CLIENT_CACHE_TTL_S: '0' } });
      admin = await adminClient(server);
      const created = await admin.post('/v2/clients', {
        kind: 'service',
        client_name: 'API caller',
        api_scopes: ['read:things', 'write:things'],
      });
      service = { clientId: created.body.client_id, clientSecret: created.body.client_secret };
    });
    afterAll(() => server.close());

    const createResource = async (body: object) => {
      const res = await admin.post('/v2/resources', body);
      if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body as Record<string, unknown> & { id: string; identifier: string };
    };

    it('POST /v2/resources registers an API: 201 with Location; GET and the list show it', async () => {
      const identifier = uniqueApi();
      const res = await admin.post('/v2/resources', {
        identifier,
        name: 'Things API',
        scopes: ['read:things', 'write:things'],
        access_token_format: 'jwt',
        access_token_ttl: 600,
      });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^api_[A-Za-z0-9]+$/),
        identifier,
        name: 'Things API',
        scopes: ['read:things', 'write:things'],
        access_token_format: 'jwt',
        access_token_ttl: 600,
        created_at: expect.stringMatching(TIMESTAMP),
        updated_at: expect.stringMatching(TIMESTAMP),
      });
      expect(res.headers.location).toBe(`/v2/resources/${res.body.id}`);

      const got = await admin.get(`/v2/resources/${res.body.id}`);
      expect(got.status).toBe(200);
      expect(got.body).toEqual(res.body);

      const list = await admin.get('/v2/resources');
      expect(list.status).toBe(200);
      const data = list.body.data as { identifier: string }[];
      expect(data).toContainEqual(res.body);
      // Sorted by identifier.
      expect(data.map((r) => r.identifier)).toEqual([...data.map((r) => r.identifier)].sort());
    });

    it('POST /v2/resources fills in the defaults: no scopes, JWT tokens, one hour', async () => {
      const body = await createResource({ identifier: uniqueApi(), name: 'Bare API' });
      expect(body).toMatchObject({ scopes: [], access_token_format: 'jwt', access_token_ttl: 3600 });
    });

    it('POST /v2/resources refuses an identifier already registered with 409 CONFLICT', async () => {
      const identifier = uniqueApi();
      await createResource({ identifier, name: 'First' });
      const res = await admin.post('/v2/resources', { identifier, name: 'Second' });
      expect(res.status).toBe(409);
      expect(errorOf(res.body)).toEqual({
        code: 'CONFLICT',
        message: 'An API with this identifier already exists',
        details: [{ field: 'identifier', issue: 'Already taken' }],
      });
    });

    it('POST /v2/resources refuses the management API’s own identifier <issuer>/v2 with 409 CONFLICT', async () => {
      const res = await admin.post('/v2/resources', { identifier: `${server.url}/v2`, name: 'Hijack' });
      expect(res.status).toBe(409);
      expect(errorOf(res.body)).toEqual({
        code: 'CONFLICT',
        message: 'The resource already exists or was changed concurrently',
        details: [{ field: 'identifier', issue: 'Reserved for this server’s own API' }],
      });
      const list = await admin.get('/v2/resources');
      expect((list.body.data as { identifier: string }[]).map((r) => r.identifier)).not.toContain(
        `${server.url}/v2`,
      );
    });

    it.each([
      [
        'an identifier that is not a URI',
        { identifier: 'things-api', name: 'X' },
        { field: 'identifier', issue: 'An absolute URI without fragment', provided: 'things-api' },
      ],
      [
        'an identifier with a fragment',
        { identifier: 'https://api.example.com/#v1', name: 'X' },
        {
          field: 'identifier',
          issue: 'An absolute URI without fragment',
          provided: 'https://api.example.com/#v1',
        },
      ],
      [
        'a token lifetime below one minute',
        { identifier: 'https://ttl.example.com', name: 'X', access_token_ttl: 59 },
        { field: 'access_token_ttl', issue: 'Too small: expected number to be >=60' },
      ],
      [
        'a token lifetime above one day',
        { identifier: 'https://ttl.example.com', name: 'X', access_token_ttl: 86_401 },
        { field: 'access_token_ttl', issue: 'Too big: expected number to be <=86400' },
      ],
      [
        'a fractional token lifetime',
        { identifier: 'https://ttl.example.com', name: 'X', access_token_ttl: 600.5 },
        { field: 'access_token_ttl', issue: 'Invalid input: expected int, received number' },
      ],
      [
        'an unknown token format',
        { identifier: 'https://fmt.example.com', name: 'X', access_token_format: 'paseto' },
        {
          field: 'access_token_format',
          issue: 'Invalid option: expected one of "jwt"|"opaque"',
        },
      ],
      [
        'a scope with a space',
        { identifier: 'https://scope.example.com', name: 'X', scopes: ['read things'] },
        { field: 'scopes.0', issue: 'A scope token without spaces or quotes', provided: 'read things' },
      ],
      [
        'unknown fields',
        { identifier: 'https://extra.example.com', name: 'X', audience: 'https://other.example.com' },
        { field: 'audience', issue: 'Unknown field' },
      ],
      // No `provided` for access_token_*: the detail builder hides values of fields named like
      // credentials ("token"), and these names match.
    ])('POST /v2/resources refuses %s with 400 VALIDATION_ERROR', async (_name, body, detail) => {
      const res = await admin.post('/v2/resources', body);
      expect(res.status).toBe(400);
      expect(errorOf(res.body)).toEqual({
        code: 'VALIDATION_ERROR',
        message: 'The request contains invalid data',
        details: [detail],
      });
    });

    it('POST /v2/resources without a name answers 400 MISSING_REQUIRED_FIELD', async () => {
      const res = await admin.post('/v2/resources', { identifier: uniqueApi() });
      expect(res.status).toBe(400);
      expect(errorOf(res.body)).toEqual({
        code: 'MISSING_REQUIRED_FIELD',
        message: 'A required field is missing',
        details: [{ field: 'name', issue: expect.any(String) }],
      });
    });

    it.each([
      ['GET', (a: AdminClient) => a.get('/v2/resources/api_nope')],
      ['PUT', (a: AdminClient) => a.put('/v2/resources/api_nope', { name: 'X' })],
      ['DELETE', (a: AdminClient) => a.del('/v2/resources/api_nope')],
    ])('%s /v2/resources/{id} answers 404 RESOURCE_NOT_FOUND for an unknown API', async (_m, call) => {
      const res = await call(admin);
      expect(res.status).toBe(404);
      expect(errorOf(res.body)).toEqual({
        code: 'RESOURCE_NOT_FOUND',
        message: 'API (resource server) not found',
      });
    });

    it('PUT /v2/resources/{id} changes only what it is given and refuses a taken or reserved identifier', async () => {
      const taken = await createResource({ identifier: uniqueApi(), name: 'Taken' });
      const body = await createResource({
        identifier: uniqueApi(),
        name: 'Before',
        scopes: ['a:read'],
        access_token_ttl: 900,
      });

      const res = await admin.put(`/v2/resources/${body.id}`, {
        name: 'After',
        access_token_format: 'opaque',
      });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        ...body,
        name: 'After',
        access_token_format: 'opaque',
        updated_at: expect.stringMatching(TIMESTAMP),
      });

      const conflict = await admin.put(`/v2/resources/${body.id}`, { identifier: taken.identifier });
      expect(conflict.status).toBe(409);
      expect(errorOf(conflict.body)).toMatchObject({
        code: 'CONFLICT',
        details: [{ field: 'identifier', issue: 'Already taken' }],
      });
      const reserved = await admin.put(`/v2/resources/${body.id}`, { identifier: `${server.url}/v2` });
      expect(reserved.status).toBe(409);
      expect(errorOf(reserved.body)).toMatchObject({
        code: 'CONFLICT',
        details: [{ field: 'identifier', issue: 'Reserved for this server’s own API' }],
      });
      const invalid = await admin.put(`/v2/resources/${body.id}`, { access_token_ttl: 10 });
      expect(invalid.status).toBe(400);
      expect(errorOf(invalid.body)).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'access_token_ttl' }],
      });
      expect((await admin.get(`/v2/resources/${body.id}`)).body).toEqual(res.body);
    });

    it('a registered API gets JWT access tokens with its audience, scopes and lifetime; changes apply to the next token; after DELETE it is invalid_target', async () => {
      const identifier = uniqueApi();
      const api = await createResource({
        identifier,
        name: 'Live API',
        scopes: ['read:things', 'write:things'],
        access_token_ttl: 900,
      });

      // A scope the client may not have is refused, never dropped silently.
      const refused = await clientCredentials(server.url, service, {
        scope: 'read:things write:things other:scope',
        resource: identifier,
      });
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({
        error: 'invalid_scope',
        error_description: 'requested scope is not allowed: other:scope',
      });
      const issued = await clientCredentials(server.url, service, {
        scope: 'read:things write:things',
        resource: identifier,
      });
      expect(issued).toEqual({
        status: 200,
        body: {
          access_token: expect.any(String),
          token_type: 'Bearer',
          expires_in: 900,
          scope: 'read:things write:things',
        },
      });
      const jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
      const { payload, protectedHeader } = await jwtVerify(String(issued.body.access_token), jwks, {
        issuer: server.url,
        audience: identifier,
        typ: 'at+jwt',
      });
      expect(protectedHeader.alg).toBe('RS256');
      expect(payload).toMatchObject({
        iss: server.url,
        aud: identifier,
        sub: service.clientId,
        client_id: service.clientId,
        scope: 'read:things write:things',
      });
      expect(payload.exp! - payload.iat!).toBe(900);

      // The API drops a scope: asking for it is refused, and the next token no longer carries it.
      const updated = await admin.put(`/v2/resources/${api.id}`, { scopes: ['read:things'] });
      expect(updated.status).toBe(200);
      const dropped = await clientCredentials(server.url, service, {
        scope: 'read:things write:things',
        resource: identifier,
      });
      expect(dropped.status).toBe(400);
      expect(dropped.body.error_description).toBe('requested scope is not allowed: write:things');
      const narrowed = await clientCredentials(server.url, service, {
        scope: 'read:things',
        resource: identifier,
      });
      expect(narrowed.status).toBe(200);
      expect(narrowed.body.scope).toBe('read:things');
      expect(decodeJwt(String(narrowed.body.access_token)).scope).toBe('read:things');

      const removed = await admin.del(`/v2/resources/${api.id}`);
      expect(removed.status).toBe(204);
      expect(removed.text).toBe('');
      expect(
        await clientCredentials(server.url, service, { scope: 'read:things', resource: identifier }),
      ).toEqual(INVALID_TARGET);
      expect((await admin.get(`/v2/resources/${api.id}`)).status).toBe(404);
      expect((await admin.del(`/v2/resources/${api.id}`)).status).toBe(404);
    });

    it('an API registered with opaque tokens gets opaque tokens that introspection ties to its audience', async () => {
      const identifier = uniqueApi();
      await createResource({
        identifier,
        name: 'Opaque API',
        scopes: ['read:things'],
        access_token_format: 'opaque',
        access_token_ttl: 300,
      });
      const issued = await clientCredentials(server.url, service, {
        scope: 'read:things',
        resource: identifier,
      });
      expect(issued.status).toBe(200);
      expect(issued.body.expires_in).toBe(300);
      const token = String(issued.body.access_token);
      expect(token.split('.')).toHaveLength(1);

      const res = await fetch(`${server.url}/oauth/introspect`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${service.clientId}:${service.clientSecret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }),
      });
      expect(await res.json()).toMatchObject({
        active: true,
        aud: identifier,
        client_id: service.clientId,
        scope: 'read:things',
      });
    });

    it('a service client gets for itself only the API scopes granted to it (scope or api_scopes); others are invalid_scope', async () => {
      const identifier = uniqueApi();
      await createResource({ identifier, name: 'Granted API', scopes: ['orders:read', 'orders:write'] });
      const none = await registerClient(server.t, 'service', { metadata: { scope: 'user:read' } });
      const denied = await clientCredentials(server.url, none, {
        scope: 'orders:read',
        resource: identifier,
      });
      expect(denied.status).toBe(400);
      expect(denied.body).toMatchObject({ error: 'invalid_scope' });
      const granted = await registerClient(server.t, 'service', {
        metadata: { api_scopes: ['orders:read'] },
      });
      const partly = await clientCredentials(server.url, granted, {
        scope: 'orders:read orders:write',
        resource: identifier,
      });
      expect(partly.status).toBe(400);
      expect(partly.body.error_description).toBe('requested scope is not allowed: orders:write');
      const issued = await clientCredentials(server.url, granted, {
        scope: 'orders:read',
        resource: identifier,
      });
      expect(issued.body.scope).toBe('orders:read');
    });

    it('a client’s allowed scope further limits what it gets for an API', async () => {
      const identifier = uniqueApi();
      await createResource({ identifier, name: 'Mixed API', scopes: ['user:read', 'user:write'] });
      const limited = await registerClient(server.t, 'service', { metadata: { scope: 'user:read' } });
      const issued = await clientCredentials(server.url, limited, {
        scope: 'user:read',
        resource: identifier,
      });
      expect(issued.status).toBe(200);
      expect(issued.body.scope).toBe('user:read');
      expect(decodeJwt(String(issued.body.access_token)).aud).toBe(identifier);
    });

    it('GET /v2/resources needs the client:manage scope', async () => {
      const reader = await adminClient(server, 'user:read');
      const res = await reader.get('/v2/resources');
      expect(res.status).toBe(403);
      expect(errorOf(res.body)).toMatchObject({
        code: 'AUTH_INSUFFICIENT_SCOPE',
        message: 'This operation needs the scope "client:manage"',
      });
    });
  },
);
