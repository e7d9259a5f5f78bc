/**
 * CORS preflights of the provider's endpoints answer only for origins the real request would be
 * allowed from (provider.ts clientBasedCORS): public clients' redirect origins at the token,
 * revocation and PAR endpoints, any client's at userinfo, none at introspection, anyone at JWKS and
 * discovery, and never the `null` origin.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

describe.each(availableBackends())(
  'CORS preflights with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let spa: TestClient;
    let web: TestClient;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { CLIENT_CACHE_TTL_S: '0' } });
      spa = await registerClient(t, 'spa');
      web = await registerClient(t, 'web');
    });
    afterAll(() => t.close());

    const preflight = (path: string, origin: string) =>
      request(t.callback)
        .options(path)
        .set('Origin', origin)
        .set(
          'Access-Control-Request-Method',
          path.includes('jwks') || path.includes('well-known') ? 'GET' : 'POST',
        );

    it('answers each endpoint only for the origins its policy allows, and never for null', async () => {
      const spaOrigin = new URL(spa.redirectUri).origin;
      const webOrigin = new URL(web.redirectUri).origin;
      const cases: [string, string, boolean][] = [
        ['/oauth/token', spaOrigin, true],
        ['/oauth/token', webOrigin, false],
        ['/oauth/token', 'https://evil.example', false],
        ['/oauth/token', 'null', false],
        ['/oauth/revoke', spaOrigin, true],
        ['/oauth/revoke', 'https://evil.example', false],
        ['/oauth/par', spaOrigin, true],
        ['/oauth/par', 'null', false],
        ['/oauth/introspect', spaOrigin, false],
        ['/oauth/introspect', webOrigin, false],
        ['/oauth/userinfo', spaOrigin, true],
        ['/oauth/userinfo', webOrigin, true],
        ['/oauth/userinfo', 'https://evil.example', false],
        ['/oauth/userinfo', 'null', false],
        ['/oauth/jwks', 'https://anyone.example', true],
        ['/oauth/jwks', 'null', false],
        ['/.well-known/openid-configuration', 'https://anyone.example', true],
        ['/.well-known/oauth-authorization-server', 'https://anyone.example', true],
        ['/.well-known/openid-configuration', 'null', false],
      ];
      const wrong: unknown[] = [];
      for (const [path, origin, allowed] of cases) {
        const res = await preflight(path, origin);
        const granted = res.headers['access-control-allow-origin'];
        const ok = allowed ? res.status === 204 && granted === origin : granted === undefined;
        if (!ok) wrong.push({ path, origin, allowed, status: res.status, granted });
      }
      expect(wrong).toEqual([]);
    });

    it('follows client changes: a new public client’s origin is allowed at once with no cache', async () => {
      const origin = 'https://late.example.com';
      expect(
        (await preflight('/oauth/token', origin)).headers['access-control-allow-origin'],
      ).toBeUndefined();
      await registerClient(t, 'spa', { redirectUri: `${origin}/callback` });
      expect((await preflight('/oauth/token', origin)).headers['access-control-allow-origin']).toBe(origin);
    });
  },
);
