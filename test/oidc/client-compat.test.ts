/**
 * Client compatibility at the token, introspection and revocation endpoints: JSON bodies are
 * accepted with the same parameters, validation and errors as form bodies (from Node's fetch and from
 * Python's requests); introspection answers the RFC 7662 members clients look for; a requested scope
 * is either granted or refused, never dropped.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as oidc from 'openid-client';

import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { codeFlow, discover, oauthFailure } from '../helpers/relying-party.js';
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
          error_description: 'requested scope is not allowed: user:write',
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

    describe('introspection members (RFC 7662 §2.2)', () => {
      const OPAQUE_API = 'https://opaque-api.example.com';
      beforeAll(async () => {
        await server.t.stores.durable.resourceServers.create({
          identifier: OPAQUE_API,
          name: 'Opaque API',
          scopes: ['things:read'],
          access_token_format: 'opaque',
          access_token_ttl: 600,
        });
      });

      it("a client's own token names the client as sub, with client_id, scope, exp, iat and token_type", async () => {
        const config = await discover(server.url, service);
        const tokens = await oidc.clientCredentialsGrant(config, { scope: 'user:read' });
        const info = await oidc.tokenIntrospection(config, tokens.access_token);
        expect(info).toEqual({
          active: true,
          sub: service.clientId,
          client_id: service.clientId,
          scope: 'user:read',
          exp: expect.any(Number),
          iat: expect.any(Number),
          iss: server.url,
          token_type: 'Bearer',
        });
        expect(info.exp! - info.iat!).toBe(server.t.config.clientCredentialsTtlS);
      });

      it('a token for a named resource carries that resource as aud', async () => {
        const client = await registerClient(server.t, 'service', {
          metadata: { api_scopes: ['things:read'] },
        });
        const config = await discover(server.url, client);
        const tokens = await oidc.clientCredentialsGrant(config, {
          scope: 'things:read',
          resource: OPAQUE_API,
        });
        expect(tokens.access_token.split('.')).toHaveLength(1);
        const info = await oidc.tokenIntrospection(await discover(server.url, service), tokens.access_token);
        expect(info).toMatchObject({
          active: true,
          sub: client.clientId,
          client_id: client.clientId,
          aud: OPAQUE_API,
          scope: 'things:read',
        });
      });

      it("a user's token carries the user's sub, and username and email when the email scope was granted", async () => {
        const user = await createUser(server.t);
        const web = await registerClient(server.t, 'web', { firstParty: true });
        const config = await discover(server.url, web);
        const gateway = await discover(server.url, service);

        const withEmail = await codeFlow(config, web, user, { scope: 'openid email' });
        expect(await oidc.tokenIntrospection(gateway, withEmail.tokens.access_token)).toMatchObject({
          active: true,
          sub: user.user.id,
          client_id: web.clientId,
          scope: 'openid email',
          username: user.email,
          email: user.email,
          token_type: 'Bearer',
        });

        const without = await codeFlow(config, web, user, { scope: 'openid' });
        const info = await oidc.tokenIntrospection(gateway, without.tokens.access_token);
        expect(info).toMatchObject({ active: true, sub: user.user.id, scope: 'openid' });
        expect(info).not.toHaveProperty('username');
        expect(info).not.toHaveProperty('email');
      });
    });

    describe('requested scopes are granted or refused, never dropped', () => {
      async function clientCredentials(client: TestClient, params: Record<string, string>) {
        return oauthFailure(oidc.clientCredentialsGrant(await discover(server.url, client), params));
      }

      it('refuses scopes the client may not have with invalid_scope naming them', async () => {
        // Unknown to this server (oidc-provider used to leave these out of the token without a word).
        expect(await clientCredentials(service, { scope: 'read write' })).toEqual({
          status: 400,
          error: 'invalid_scope',
          error_description: 'requested scope is not allowed: read write',
        });
        // Known, but not the client's; beside an allowed one.
        expect(await clientCredentials(service, { scope: 'user:read foo openid' })).toEqual({
          status: 400,
          error: 'invalid_scope',
          error_description: 'requested scope is not allowed: foo openid',
        });
        // With a resource: an API scope the client is not granted.
        const client = await registerClient(server.t, 'service', { metadata: { api_scopes: [] } });
        expect(
          await clientCredentials(client, {
            scope: 'things:read',
            resource: 'https://opaque-api.example.com',
          }),
        ).toEqual({
          status: 400,
          error: 'invalid_scope',
          error_description: 'requested scope is not allowed: things:read',
        });
      });

      it('answers the granted scopes in the token response', async () => {
        const tokens = await oidc.clientCredentialsGrant(await discover(server.url, service), {
          scope: 'user:read',
        });
        expect(tokens.scope).toBe('user:read');
      });
    });

    describe('other HTTP clients posting JSON bodies', () => {
      it('a Python requests client gets a token and introspects it with JSON bodies, unchanged', async () => {
        const script = fileURLToPath(new URL('../fixtures/requests-json-client.py', import.meta.url));
        const { stdout } = await promisify(execFile)(
          'python3',
          [script, server.url, service.clientId, service.clientSecret!, 'user:read'],
          { timeout: 20_000 },
        );
        const result = JSON.parse(stdout) as {
          token: { status: number; body: Body };
          introspection: { status: number; content_type: string; body: Body };
        };
        expect(result.token).toEqual({
          status: 200,
          body: {
            access_token: expect.any(String),
            token_type: 'Bearer',
            expires_in: server.t.config.clientCredentialsTtlS,
            scope: 'user:read',
          },
        });
        expect(result.introspection.status).toBe(200);
        expect(result.introspection.content_type).toMatch(/^application\/json/);
        expect(result.introspection.body).toMatchObject({
          active: true,
          sub: service.clientId,
          client_id: service.clientId,
          scope: 'user:read',
          token_type: 'Bearer',
        });
      });

      it('a Node fetch client authenticating with HTTP Basic and a JSON body introspects a token', async () => {
        const accessToken = await token();
        const basic = Buffer.from(`${service.clientId}:${service.clientSecret}`).toString('base64');
        const res = await postJson(
          '/oauth/introspect',
          { token: accessToken, token_type_hint: 'access_token' },
          { authorization: `Basic ${basic}`, accept: 'application/json' },
        );
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ active: true, sub: service.clientId, scope: 'user:read' });
      });
    });
  },
);
