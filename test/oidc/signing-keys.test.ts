/**
 * Signing keys and tokens live in the shared stores, not in the process: after a restart on the
 * same data the server publishes the same keys (same kid), keeps signing with them, and honours
 * tokens and browser sessions it issued before; a second instance on the same stores does too.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { startServer } from '../../src/server.js';
import { MONGODB_URI, tempDir, uniqueName } from '../helpers/backends.js';
import { createUser, registerClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { authorizationRequest, codeFlow, discover } from '../helpers/relying-party.js';
import { availableBackends, createTestApp, type TestAppOptions } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

/** Like startTestServer, on a port of our choosing, so a restart keeps the issuer URL. */
async function startOnPort(port: number, options: TestAppOptions): Promise<TestServer> {
  const url = `http://127.0.0.1:${port}`;
  const t = await createTestApp({ ...options, env: { PORT: String(port), ISSUER: url, ...options.env } });
  const running = await startServer(t, t.stores, t.logger, {
    port,
    host: '127.0.0.1',
    shutdownDrainMs: 0,
    shutdownTimeoutMs: 2000,
    idleMemoryReleaseMs: 0,
  });
  return {
    t,
    url,
    running,
    close: async () => {
      await running.stop('test finished');
      await t.close().catch(() => undefined);
    },
  };
}

async function publishedKids(url: string): Promise<string[]> {
  const jwks = (await (await fetch(`${url}/oauth/jwks`)).json()) as { keys: { kid: string }[] };
  return jwks.keys.map((k) => k.kid).sort();
}

describe.each(availableBackends())(
  'signing keys with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    const data = tempDir();
    const running: TestServer[] = [];
    afterAll(async () => {
      for (const server of running.reverse()) await server.close().catch(() => undefined);
      data.remove();
    });

    it('survive a restart: the same kids are published and signing, and tokens issued before still work', async () => {
      // The data outlives the first server: our own folder, database and key prefix.
      const env: Record<string, string> = {
        DATA_DIR: data.path,
        REDIS_KEY_PREFIX: `${uniqueName('lk_restart')}:`,
      };
      if (durable === 'mongo') {
        const uri = new URL(MONGODB_URI!);
        uri.pathname = `/${uniqueName('latchkey_restart')}`;
        env.MONGODB_URI = uri.toString();
      }
      const port = await freePort();

      const first = await startOnPort(port, { durable, shortLived, env });
      running.push(first);
      const kidsBefore = await publishedKids(first.url);
      expect(kidsBefore).toHaveLength(2);

      const user = await createUser(first.t);
      const spa = await registerClient(first.t, 'spa', { firstParty: true });
      const service = await registerClient(first.t, 'service');
      await first.t.stores.durable.resourceServers.create({
        identifier: 'https://api.example.com',
        name: 'Example API',
        scopes: ['user:read'],
        access_token_format: 'jwt',
      });
      const spaBefore = await discover(first.url, spa);
      const serviceBefore = await discover(first.url, service);
      const signedIn = await codeFlow(spaBefore, spa, user, {
        scope: 'openid offline_access',
        params: { prompt: 'consent' },
      });
      const idTokenKid = decodeProtectedHeader(signedIn.tokens.id_token!).kid;
      const opaque = await oidc.clientCredentialsGrant(serviceBefore, { scope: 'user:read' });
      const jwt = await oidc.clientCredentialsGrant(serviceBefore, {
        scope: 'user:read',
        resource: 'https://api.example.com',
      });

      await first.close();
      running.pop();
      await expect(fetch(`${first.url}/health/live`)).rejects.toThrow();

      const second = await startOnPort(port, { durable, shortLived, env });
      running.push(second);
      expect(second.url).toBe(first.url);
      expect(await publishedKids(second.url)).toEqual(kidsBefore);

      const spaAfter = await discover(second.url, spa);
      const serviceAfter = await discover(second.url, service);
      // Tokens issued before the restart.
      expect(await oidc.tokenIntrospection(serviceAfter, opaque.access_token)).toMatchObject({
        active: true,
        client_id: service.clientId,
        scope: 'user:read',
      });
      expect(await oidc.tokenIntrospection(serviceAfter, signedIn.tokens.access_token)).toMatchObject({
        active: true,
        sub: user.user.id,
      });
      const { payload } = await jwtVerify(
        jwt.access_token,
        createRemoteJWKSet(new URL(`${second.url}/oauth/jwks`)),
        {
          issuer: second.url,
          audience: 'https://api.example.com',
          typ: 'at+jwt',
        },
      );
      expect(payload.client_id).toBe(service.clientId);

      // New ID tokens are signed with the same key, and openid-client verifies them with the JWKS.
      oidc.enableNonRepudiationChecks(spaAfter);
      const refreshed = await oidc.refreshTokenGrant(spaAfter, signedIn.tokens.refresh_token!);
      expect(refreshed.claims()?.sub).toBe(user.user.id);
      expect(decodeProtectedHeader(refreshed.id_token!).kid).toBe(idTokenKid);

      // The browser session made before the restart still signs the user in without a page.
      const again = await authorizationRequest(spaAfter, spa.redirectUri, 'openid');
      const page = await signedIn.browser.go(again.url.toString());
      expect(page.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(spaAfter, new URL(page.url), {
        pkceCodeVerifier: again.verifier,
        expectedState: again.state,
        expectedNonce: again.nonce,
      });
      expect(tokens.claims()?.sub).toBe(user.user.id);
      expect(decodeProtectedHeader(tokens.id_token!).kid).toBe(idTokenKid);
    });

    it('are shared by a second instance on the same stores, which accepts the first one’s tokens', async () => {
      const a = await startTestServer({ durable, shortLived });
      running.push(a);
      const b = await startTestServer({ durable, shortLived, shareWith: a.t });
      running.push(b);
      expect(await publishedKids(b.url)).toEqual(await publishedKids(a.url));

      const service = await registerClient(a.t, 'service');
      const { access_token } = await oidc.clientCredentialsGrant(await discover(a.url, service), {
        scope: 'user:read',
      });
      const atB = await discover(b.url, service);
      expect(await oidc.tokenIntrospection(atB, access_token)).toMatchObject({
        active: true,
        client_id: service.clientId,
      });
      await oidc.tokenRevocation(atB, access_token);
      expect(await oidc.tokenIntrospection(await discover(a.url, service), access_token)).toEqual({
        active: false,
      });
    });
  },
);
