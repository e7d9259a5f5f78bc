/**
 * The Express and Koa middleware in real apps in front of a real Latchkey server: JWT access tokens of
 * a registered API verified locally (and still after the server rotates its signing keys), opaque
 * tokens introspected with a cache bounded by the token's expiry, and every refusal answered with the
 * error envelope and an RFC 6750 challenge: missing, garbage, expired and wrong-audience tokens (401),
 * missing scopes (403), an unreachable or misconfigured server (503).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';

import type { AuthenticateOptions, FetchLike } from '../../src/sdk/index.js';
import { adminClient, clientCredentials, type AdminClient } from '../helpers/admin-client.js';
import { registerClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { startGuardedApp, type Framework, type GuardedApp } from './apps.js';

const uniqueApi = (name: string) => `https://${name}-${randomBytes(4).toString('hex')}.api.example.com`;
const ENVELOPE = {
  code: expect.any(String),
  message: expect.any(String),
  request_id: expect.stringMatching(/^req_[0-9a-f]{32}$/),
  timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/),
};

/** A fetch that records the URLs it was asked for and then really fetches them. */
function countingFetch(): { fetch: FetchLike; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    fetch: (input, init) => {
      calls.push(input);
      return globalThis.fetch(input, init);
    },
  };
}

describe.each<Framework>(['express', 'koa'])('latchkey middleware in %s', (framework) => {
  let server: TestServer;
  let admin: AdminClient;
  let caller: { clientId: string; clientSecret: string };
  let introspector: { clientId: string; clientSecret: string };
  const jwtApi = uniqueApi('jwt');
  const otherApi = uniqueApi('other');
  const opaqueApi = uniqueApi('opaque');
  const otherOpaqueApi = uniqueApi('other-opaque');
  const apps: GuardedApp[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    admin = await adminClient(server);
    for (const [identifier, format] of [
      [jwtApi, 'jwt'],
      [otherApi, 'jwt'],
      [opaqueApi, 'opaque'],
      [otherOpaqueApi, 'opaque'],
    ] as const) {
      const res = await admin.post('/v2/resources', {
        identifier,
        name: `API ${format}`,
        scopes: ['things:read', 'things:write'],
        access_token_format: format,
        access_token_ttl: 300,
      });
      if (res.status !== 201) throw new Error(`resource not created: ${JSON.stringify(res.body)}`);
    }
    const created = await admin.post('/v2/clients', {
      kind: 'service',
      client_name: 'Calls the things API',
      api_scopes: ['things:read', 'things:write'],
    });
    caller = { clientId: created.body.client_id, clientSecret: created.body.client_secret };
    const rs = await registerClient(server.t, 'service');
    introspector = { clientId: rs.clientId, clientSecret: rs.clientSecret! };
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await server.close();
  });

  async function guarded(options: Partial<AuthenticateOptions>): Promise<GuardedApp> {
    const app = await startGuardedApp(framework, { issuer: server.url, ...options });
    apps.push(app);
    return app;
  }

  async function tokenFor(resource: string, scope = 'things:read'): Promise<string> {
    const issued = await clientCredentials(server.url, caller, { scope, resource });
    if (issued.status !== 200) throw new Error(`no token: ${JSON.stringify(issued.body)}`);
    return String(issued.body.access_token);
  }

  async function call(app: GuardedApp, headers: Record<string, string> = {}) {
    const res = await fetch(app.url, { headers });
    return {
      status: res.status,
      challenge: res.headers.get('www-authenticate'),
      body: (await res.json()) as { identity?: Record<string, unknown>; error?: Record<string, unknown> },
    };
  }

  describe('JWT access tokens', () => {
    it('accepts a JWT access token of the API and attaches the identity', async () => {
      const app = await guarded({ audience: jwtApi });
      const token = await tokenFor(jwtApi);
      const res = await call(app, { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      expect(res.body.identity).toEqual({
        kind: 'jwt',
        subject: caller.clientId,
        clientId: caller.clientId,
        scopes: ['things:read'],
        claims: expect.objectContaining({ iss: server.url, aud: jwtApi, client_id: caller.clientId }),
      });
    });

    it('refuses a JWT for another API with 401 invalid_token', async () => {
      const app = await guarded({ audience: jwtApi });
      const res = await call(app, { authorization: `Bearer ${await tokenFor(otherApi)}` });
      expect(res.status).toBe(401);
      expect(res.body.error).toEqual({
        ...ENVELOPE,
        code: 'AUTH_TOKEN_INVALID',
        message: 'The access token is invalid: unexpected "aud" claim value',
      });
      expect(res.challenge).toBe(
        `Bearer realm="${jwtApi}", error="invalid_token", error_description="The access token is invalid: unexpected 'aud' claim value"`,
      );
    });

    it('refuses an expired JWT with 401 AUTH_TOKEN_EXPIRED', async () => {
      const token = await tokenFor(jwtApi);
      const exp = decodeJwt(token).exp! * 1000;
      // The middleware's clock is past the token's expiry (and the tolerance).
      const app = await guarded({ audience: jwtApi, now: () => exp + 10_000 });
      const res = await call(app, { authorization: `Bearer ${token}` });
      expect(res.status).toBe(401);
      expect(res.body.error).toEqual({
        ...ENVELOPE,
        code: 'AUTH_TOKEN_EXPIRED',
        message: 'The access token has expired',
      });
      expect(res.challenge).toBe(
        `Bearer realm="${jwtApi}", error="invalid_token", error_description="The access token has expired"`,
      );
    });

    it.each([
      ['a garbage token', { authorization: 'Bearer not-a-token' }, 'The access token is invalid'],
      [
        'a token with a forged signature',
        { authorization: 'Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2ln' },
        'The access token is invalid',
      ],
      [
        'Basic credentials',
        { authorization: 'Basic dXNlcjpwYXNz' },
        'The Authorization header must be "Bearer <token>" or "DPoP <token>"',
      ],
    ])('refuses %s with 401 AUTH_TOKEN_INVALID', async (_name, headers, message) => {
      const app = await guarded({ audience: jwtApi });
      const res = await call(app, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toEqual({ ...ENVELOPE, code: 'AUTH_TOKEN_INVALID', message });
      expect(res.challenge).toBe(
        `Bearer realm="${jwtApi}", error="invalid_token", error_description="${message.replace(/"/g, "'")}"`,
      );
    });

    it('answers a request without credentials with 401 and a bare challenge', async () => {
      const app = await guarded({ audience: jwtApi });
      const res = await call(app, { 'x-request-id': 'req-from-gateway.1' });
      expect(res.status).toBe(401);
      expect(res.body.error).toEqual({
        ...ENVELOPE,
        code: 'AUTH_TOKEN_MISSING',
        message: 'An access token is required',
        request_id: 'req-from-gateway.1',
      });
      expect(res.challenge).toBe(`Bearer realm="${jwtApi}"`);
    });

    it('refuses a token without a required scope with 403 insufficient_scope', async () => {
      const app = await guarded({ audience: jwtApi, requiredScopes: ['things:write'] });
      const res = await call(app, { authorization: `Bearer ${await tokenFor(jwtApi, 'things:read')}` });
      expect(res.status).toBe(403);
      expect(res.body.error).toEqual({
        ...ENVELOPE,
        code: 'AUTH_INSUFFICIENT_SCOPE',
        message: 'The credentials lack the scope this operation needs: things:write',
        required_scopes: ['things:write'],
      });
      expect(res.challenge).toBe(
        `Bearer realm="${jwtApi}", error="insufficient_scope", scope="things:write"`,
      );

      const both = await tokenFor(jwtApi, 'things:read things:write');
      expect((await call(app, { authorization: `Bearer ${both}` })).status).toBe(200);
    });

    it('accepts tokens signed by a new key after the server rotates its keys', async () => {
      const { fetch: counting, calls } = countingFetch();
      const app = await guarded({ audience: jwtApi, fetch: counting, jwksCooldownMs: 0 });
      const before = await tokenFor(jwtApi);
      expect((await call(app, { authorization: `Bearer ${before}` })).status).toBe(200);
      const jwksUri = `${server.url}/oauth/jwks`;
      expect(calls.filter((u) => u === jwksUri)).toHaveLength(1);

      await server.t.services.signingKeys.rotate(0);
      await server.t.services.provider.refresh();
      const after = await tokenFor(jwtApi);
      expect(decodeProtectedHeader(after).kid).not.toBe(decodeProtectedHeader(before).kid);

      // The unknown kid makes the middleware fetch the key set again, once.
      const res = await call(app, { authorization: `Bearer ${after}` });
      expect(res.status).toBe(200);
      expect(res.body.identity).toMatchObject({ kind: 'jwt', subject: caller.clientId });
      expect(calls.filter((u) => u === jwksUri)).toHaveLength(2);
      // The retired key stays published, so tokens it signed keep working.
      expect((await call(app, { authorization: `Bearer ${before}` })).status).toBe(200);
      expect(calls.filter((u) => u.endsWith('/.well-known/openid-configuration'))).toHaveLength(1);
    });
  });

  describe('opaque access tokens', () => {
    it('accepts an opaque token through introspection, and caches the answer', async () => {
      const { fetch: counting, calls } = countingFetch();
      const app = await guarded({ audience: opaqueApi, introspection: introspector, fetch: counting });
      const token = await tokenFor(opaqueApi, 'things:read things:write');
      expect(token.split('.')).toHaveLength(1);
      for (let i = 0; i < 3; i += 1) {
        const res = await call(app, { authorization: `Bearer ${token}` });
        expect(res.status).toBe(200);
        expect(res.body.identity).toEqual({
          kind: 'opaque',
          subject: caller.clientId,
          clientId: caller.clientId,
          scopes: ['things:read', 'things:write'],
          claims: expect.objectContaining({ active: true, aud: opaqueApi, token_type: 'Bearer' }),
        });
      }
      expect(calls.filter((u) => u === `${server.url}/oauth/introspect`)).toHaveLength(1);
    });

    it('never uses a cached introspection past the token’s expiry', async () => {
      const { fetch: counting, calls } = countingFetch();
      let offsetMs = 0;
      const app = await guarded({
        audience: opaqueApi,
        introspection: { ...introspector, cacheTtlMs: 3_600_000 },
        fetch: counting,
        now: () => Date.now() + offsetMs,
      });
      const token = await tokenFor(opaqueApi);
      const introspections = () => calls.filter((u) => u.endsWith('/oauth/introspect')).length;
      expect((await call(app, { authorization: `Bearer ${token}` })).status).toBe(200);
      offsetMs = 200_000; // within the token's 300 s
      expect((await call(app, { authorization: `Bearer ${token}` })).status).toBe(200);
      expect(introspections()).toBe(1);

      offsetMs = 301_000; // past its expiry, well within the configured hour
      const res = await call(app, { authorization: `Bearer ${token}` });
      expect(introspections()).toBe(2);
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ code: 'AUTH_TOKEN_EXPIRED' });
    });

    it('refuses an inactive (unknown) token and a token for another audience with 401', async () => {
      const app = await guarded({ audience: opaqueApi, introspection: introspector });
      const unknown = await call(app, { authorization: 'Bearer AbCdEfGhIjKlMnOpQrStUvWxYz0123456789' });
      expect(unknown.status).toBe(401);
      expect(unknown.body.error).toEqual({
        ...ENVELOPE,
        code: 'AUTH_TOKEN_INVALID',
        message: 'The access token is not active',
      });
      expect(unknown.challenge).toContain('error="invalid_token"');

      const res = await call(app, { authorization: `Bearer ${await tokenFor(otherOpaqueApi)}` });
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({
        code: 'AUTH_TOKEN_INVALID',
        message: 'The access token is not meant for this API',
      });
    });

    it('refuses a JWT where only opaque tokens are accepted (Latchkey does not introspect JWTs)', async () => {
      const app = await guarded({ audience: jwtApi, introspection: introspector, accept: ['opaque'] });
      const res = await call(app, { authorization: `Bearer ${await tokenFor(jwtApi)}` });
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({
        code: 'AUTH_TOKEN_INVALID',
        message: 'JWT access tokens are not accepted here',
      });
    });

    it('answers 503 when introspection refuses the resource server’s credentials, and reports it', async () => {
      const errors: unknown[] = [];
      const app = await guarded({
        audience: opaqueApi,
        introspection: { clientId: introspector.clientId, clientSecret: 'wrong' },
        onError: (err) => errors.push(err),
      });
      const res = await call(app, { authorization: `Bearer ${await tokenFor(opaqueApi)}` });
      expect(res.status).toBe(503);
      expect(res.body.error).toEqual({
        ...ENVELOPE,
        code: 'SERVICE_UNAVAILABLE',
        message: expect.stringMatching(/^Introspection answered 401/),
      });
      expect(errors).toHaveLength(1);
    });
  });

  it('answers 503 when the issuer cannot be reached', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const app = await startGuardedApp(framework, { issuer: closed, audience: jwtApi });
    apps.push(app);
    const res = await call(app, { authorization: `Bearer ${await tokenFor(jwtApi)}` });
    expect(res.status).toBe(503);
    expect(res.body.error).toEqual({
      ...ENVELOPE,
      code: 'SERVICE_UNAVAILABLE',
      message: 'The authorization server could not be reached',
    });
  });
});
