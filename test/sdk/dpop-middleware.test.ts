/**
 * The Express and Koa middleware with DPoP-bound tokens (RFC 9449), in real apps in front of a real
 * Latchkey server: openid-client obtains tokens bound to its key (JWT and opaque) and calls the app
 * with its own proofs; the middleware checks the proof (its key is the token's `cnf.jkt`, `ath`, `htm`,
 * `htu`, `iat`) and takes each one once (its replay cache, shared between apps when given). A bound
 * token as Bearer or without a proof, and proofs for another method, URL or token, are refused with a
 * DPoP challenge.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';

import { calculateJwkThumbprint, exportJWK, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';

import { MemoryDPoPReplayCache, type AuthenticateOptions } from '../../src/sdk/index.js';
import { adminClient, type AdminClient } from '../helpers/admin-client.js';
import { registerClient } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { startGuardedApp, type Framework, type GuardedApp } from './apps.js';

const uniqueApi = (name: string) => `https://${name}-${randomBytes(4).toString('hex')}.api.example.com`;
const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

interface Key {
  pair: Awaited<ReturnType<typeof oidc.randomDPoPKeyPair>>;
  jwk: JWK;
  jkt: string;
}

async function keyPair(): Promise<Key> {
  const pair = await oidc.randomDPoPKeyPair('ES256');
  const jwk = (await exportJWK(pair.publicKey)) as JWK;
  return { pair, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

function joseProof(key: Key, claims: { htm: string; htu: string; ath?: string }): Promise<string> {
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .setIssuedAt()
    .sign(key.pair.privateKey);
}

const CHALLENGE = (realm: string, error: string) =>
  new RegExp(
    `^DPoP realm="${realm}", error="${error}", error_description="[^"]+", algs="ES256 EdDSA RS256 PS256"$`,
  );

describe.each<Framework>(['express', 'koa'])(
  'latchkey middleware in %s with DPoP-bound tokens',
  (framework) => {
    let server: TestServer;
    let admin: AdminClient;
    let config: oidc.Configuration;
    let introspector: { clientId: string; clientSecret: string };
    let key: Key;
    let DPoP: oidc.DPoPHandle;
    const jwtApi = uniqueApi('jwt');
    const opaqueApi = uniqueApi('opaque');
    const apps: GuardedApp[] = [];

    beforeAll(async () => {
      server = await startTestServer();
      admin = await adminClient(server);
      for (const [identifier, format] of [
        [jwtApi, 'jwt'],
        [opaqueApi, 'opaque'],
      ] as const) {
        const res = await admin.post('/v2/resources', {
          identifier,
          name: `API ${format}`,
          scopes: ['things:read'],
          access_token_format: format,
          access_token_ttl: 300,
        });
        if (res.status !== 201) throw new Error(`resource not created: ${JSON.stringify(res.body)}`);
      }
      const created = await admin.post('/v2/clients', {
        kind: 'service',
        client_name: 'Calls the things API with DPoP',
        api_scopes: ['things:read'],
      });
      config = await oidc.discovery(
        new URL(server.url),
        created.body.client_id,
        undefined,
        oidc.ClientSecretBasic(created.body.client_secret),
        { execute: [oidc.allowInsecureRequests] },
      );
      const rs = await registerClient(server.t, 'service');
      introspector = { clientId: rs.clientId, clientSecret: rs.clientSecret! };
      key = await keyPair();
      DPoP = oidc.getDPoPHandle(config, key.pair);
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

    async function boundToken(resource: string): Promise<string> {
      const tokens = await oidc.clientCredentialsGrant(config, { scope: 'things:read', resource }, { DPoP });
      expect(tokens.token_type).toBe('dpop');
      return tokens.access_token;
    }

    /** openid-client's own request to the app, with its proof. */
    async function clientCall(app: GuardedApp, token: string, url = app.url) {
      const res = await oidc.fetchProtectedResource(
        config,
        token,
        new URL(url),
        'GET',
        undefined,
        undefined,
        {
          DPoP,
        },
      );
      return { status: res.status, body: (await res.json()) as { identity?: Record<string, unknown> } };
    }

    async function call(url: string, headers: Record<string, string>) {
      const res = await fetch(url, { headers });
      return {
        status: res.status,
        challenge: res.headers.get('www-authenticate'),
        body: (await res.json()) as {
          identity?: Record<string, unknown>;
          error?: { code: string; message: string };
        },
      };
    }

    it("accepts a bound JWT with openid-client's proof, and names the key", async () => {
      const app = await guarded({ audience: jwtApi });
      const token = await boundToken(jwtApi);
      const res = await clientCall(app, token);
      expect(res.status).toBe(200);
      expect(res.body.identity).toMatchObject({
        kind: 'jwt',
        jkt: key.jkt,
        scopes: ['things:read'],
        claims: expect.objectContaining({ cnf: { jkt: key.jkt } }),
      });
    });

    it('accepts a bound opaque token (introspection says DPoP) with its proof', async () => {
      const app = await guarded({ audience: opaqueApi, accept: ['opaque'], introspection: introspector });
      const token = await boundToken(opaqueApi);
      const res = await clientCall(app, token);
      expect(res.status).toBe(200);
      expect(res.body.identity).toMatchObject({ kind: 'opaque', jkt: key.jkt });
    });

    it('refuses a bound token as Bearer or without a proof with a DPoP challenge', async () => {
      const app = await guarded({ audience: jwtApi });
      const token = await boundToken(jwtApi);
      const asBearer = await call(app.url, { authorization: `Bearer ${token}` });
      expect(asBearer.status).toBe(401);
      expect(asBearer.body.error?.code).toBe('AUTH_TOKEN_INVALID');
      expect(asBearer.challenge).toMatch(CHALLENGE(jwtApi, 'invalid_token'));
      const noProof = await call(app.url, { authorization: `DPoP ${token}` });
      expect(noProof.status).toBe(401);
      expect(noProof.challenge).toMatch(CHALLENGE(jwtApi, 'invalid_dpop_proof'));
    });

    it('refuses proofs for another method, URL or token, and a proof used before', async () => {
      const app = await guarded({ audience: jwtApi });
      const token = await boundToken(jwtApi);
      const good = { htm: 'GET', htu: app.url, ath: ath(token) };
      for (const [what, claims] of [
        ['htm', { ...good, htm: 'POST' }],
        ['htu', { ...good, htu: `${app.url}/other` }],
        ['ath', { ...good, ath: ath(`${token}x`) }],
      ] as const) {
        const res = await call(app.url, {
          authorization: `DPoP ${token}`,
          dpop: await joseProof(key, claims),
        });
        expect({ what, status: res.status }).toEqual({ what, status: 401 });
        expect(res.body.error?.message).toContain(what);
        expect(res.challenge).toMatch(CHALLENGE(jwtApi, 'invalid_dpop_proof'));
      }
      const proof = await joseProof(key, good);
      expect((await call(app.url, { authorization: `DPoP ${token}`, dpop: proof })).status).toBe(200);
      const again = await call(app.url, { authorization: `DPoP ${token}`, dpop: proof });
      expect(again.status).toBe(401);
      expect(again.body.error?.message).toBe('The DPoP proof was already used');
      expect(again.challenge).toMatch(CHALLENGE(jwtApi, 'invalid_dpop_proof'));
    });

    it('takes a proof once across the instances of an API that share a replay cache', async () => {
      const origin = 'https://things.example.com';
      const replayCache = new MemoryDPoPReplayCache();
      const one = await guarded({ audience: jwtApi, dpop: { publicOrigin: origin, replayCache } });
      const two = await guarded({ audience: jwtApi, dpop: { publicOrigin: origin, replayCache } });
      const apart = await guarded({ audience: jwtApi, dpop: { publicOrigin: origin } });
      const token = await boundToken(jwtApi);
      const proof = await joseProof(key, { htm: 'GET', htu: `${origin}/things`, ath: ath(token) });
      const headers = { authorization: `DPoP ${token}`, dpop: proof };
      expect((await call(one.url, headers)).status).toBe(200);
      const replayed = await call(two.url, headers);
      expect(replayed.status).toBe(401);
      expect(replayed.body.error?.message).toBe('The DPoP proof was already used');
      // An instance with a cache of its own does not know the proof was used: hence the shared one.
      expect((await call(apart.url, headers)).status).toBe(200);
    });

    it('compares htu with the public origin when one is configured (an app behind a proxy)', async () => {
      const app = await guarded({ audience: jwtApi, dpop: { publicOrigin: 'https://things.example.com' } });
      const token = await boundToken(jwtApi);
      const forPublic = await joseProof(key, {
        htm: 'GET',
        htu: 'https://things.example.com/things',
        ath: ath(token),
      });
      expect((await call(app.url, { authorization: `DPoP ${token}`, dpop: forPublic })).status).toBe(200);
      const forLocal = await joseProof(key, { htm: 'GET', htu: app.url, ath: ath(token) });
      expect((await call(app.url, { authorization: `DPoP ${token}`, dpop: forLocal })).status).toBe(401);
    });
  },
);
