/**
 * Client compatibility at the token, introspection and revocation endpoints: JSON bodies are
 * accepted with the same parameters, validation and errors as form bodies.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

type Body = Record<string, unknown>;

describe.each(availableBackends())(
  'client compatibility with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let service: TestClient;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      service = await registerClient(server.t, 'service');
    });
    afterAll(() => server.close());

    async function postJson(path: string, body: unknown, headers: Record<string, string> = {}) {
      const res = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      return { status: res.status, headers: res.headers, body: (await res.json()) as Body };
    }

    function credentials(): Body {
      return { client_id: service.clientId, client_secret: service.clientSecret };
    }

    async function token(): Promise<string> {
      const res = await postJson('/oauth/token', {
        grant_type: 'client_credentials',
        scope: 'user:read',
        ...credentials(),
      });
      expect(res.status).toBe(200);
      return String(res.body.access_token);
    }

    describe('JSON bodies', () => {
      it('POST /oauth/token with a JSON body issues client credentials (client_secret_post in the body)', async () => {
        const res = await postJson('/oauth/token', {
          grant_type: 'client_credentials',
          scope: 'user:read',
          ...credentials(),
        });
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          access_token: expect.any(String),
          token_type: 'Bearer',
          expires_in: server.t.config.clientCredentialsTtlS,
          scope: 'user:read',
        });
      });

      it('POST /oauth/token with a JSON body meets the same validation as a form body', async () => {
        const res = await postJson('/oauth/token', {
          grant_type: 'client_credentials',
          scope: 'user:write',
          ...credentials(),
        });
        expect(res.status).toBe(400);
        expect(res.body).toMatchObject({
          error: 'invalid_scope',
          error_description: 'requested scope is not allowed',
        });
        // Exactly what the same parameters as a form body get.
        const form = await fetch(`${server.url}/oauth/token`, {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'client_credentials',
            scope: 'user:write',
            client_id: service.clientId,
            client_secret: service.clientSecret!,
          }),
        });
        expect(form.status).toBe(400);
        expect(await form.json()).toEqual(res.body);
        // A repeated parameter (an array) is refused as a repeated form parameter is.
        const twice = await postJson('/oauth/token', {
          grant_type: 'client_credentials',
          scope: ['user:read', 'user:read'],
          ...credentials(),
        });
        expect(twice.status).toBe(400);
        expect(twice.body.error).toBe('invalid_request');
      });

      it('POST /oauth/introspect and /oauth/revoke accept JSON bodies', async () => {
        const accessToken = await token();
        const active = await postJson('/oauth/introspect', { token: accessToken, ...credentials() });
        expect(active.status).toBe(200);
        expect(active.body).toMatchObject({ active: true, client_id: service.clientId, scope: 'user:read' });

        const revoke = await fetch(`${server.url}/oauth/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify({ token: accessToken, ...credentials() }),
        });
        expect(revoke.status).toBe(200);
        const after = await postJson('/oauth/introspect', { token: accessToken, ...credentials() });
        expect(after.body).toEqual({ active: false });
      });

      it('refuses malformed JSON, a non-object and non-string values with invalid_request', async () => {
        for (const body of ['{"grant_type": "client_credentials"', '["grant_type"]', '"x"', 'null', '']) {
          const res = await postJson('/oauth/token', body);
          expect(res.status).toBe(400);
          expect(res.body).toEqual({ error: 'invalid_request', error_description: expect.any(String) });
        }
        const numeric = await postJson('/oauth/introspect', { token: 5, ...credentials() });
        expect(numeric.status).toBe(400);
        expect(numeric.body.error).toBe('invalid_request');
      });

      it('refuses a JSON body over the size limit with invalid_request', async () => {
        const res = await postJson('/oauth/revoke', { token: 'x'.repeat(60 * 1024), ...credentials() });
        expect(res.status).toBe(400);
        expect(res.body).toEqual({
          error: 'invalid_request',
          error_description: 'request body is too large',
        });
      });
    });

    describe('requests without client authentication (RFC 6749 §5.2)', () => {
      const CASES = [
        ['/oauth/token', { grant_type: 'client_credentials', scope: 'user:read' }],
        ['/oauth/introspect', { token: 'some-token' }],
        ['/oauth/revoke', { token: 'some-token' }],
      ] as const;

      it.each(CASES)('POST %s answers 401 invalid_client with a Basic challenge', async (path, params) => {
        for (const body of [new URLSearchParams(params), JSON.stringify(params)]) {
          const res = await fetch(`${server.url}${path}`, {
            method: 'POST',
            headers: typeof body === 'string' ? { 'content-type': 'application/json' } : {},
            body,
          });
          expect(res.status).toBe(401);
          expect(res.headers.get('www-authenticate')).toBe(`Basic realm="${server.url}"`);
          expect(await res.json()).toEqual({
            error: 'invalid_client',
            error_description: 'client authentication is required',
          });
        }
      });

      it('leaves other client errors as they were', async () => {
        // An unknown client is invalid_client already (no challenge without an Authorization header).
        const unknown = await fetch(`${server.url}/oauth/token`, {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'client_credentials',
            client_id: 'nobody',
            client_secret: 'x',
          }),
        });
        expect(unknown.status).toBe(401);
        expect(unknown.headers.get('www-authenticate')).toBeNull();
        expect(await unknown.json()).toEqual({
          error: 'invalid_client',
          error_description: 'client authentication failed',
        });
        // A request the client authenticated keeps its own error.
        const noGrant = await fetch(`${server.url}/oauth/token`, {
          method: 'POST',
          body: new URLSearchParams({ ...credentials(), scope: 'user:read' } as Record<string, string>),
        });
        expect(noGrant.status).toBe(400);
        expect(((await noGrant.json()) as Body).error).toBe('invalid_request');
      });
    });
  },
);
