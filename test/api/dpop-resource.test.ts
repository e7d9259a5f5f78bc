/**
 * DPoP-bound access tokens (RFC 9449) at our own resource endpoints, on every backend pair:
 * openid-client obtains a token bound to its key, and its proofs (or jose's, with the same key, for
 * the refusals) go to forward auth (/gateway/auth, as a gateway forwards them), the management API
 * (/v2) and policy decisions (/v1/authorize). A proof is accepted once across two instances on the
 * same stores; a bound token as Bearer or without a proof, a proof for another method, URL, token or
 * key, or a stale one, is refused with a DPoP challenge.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';

import { calculateJwkThumbprint, decodeJwt, exportJWK, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';
import request from 'supertest';

import { ALL_ADMIN_SCOPES } from '../helpers/admin-api.js';
import { registerClient } from '../helpers/fixtures.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const API = 'https://orders.example.com';
const OPAQUE_API = 'https://opaque-orders.example.com';
/** What the client called, behind the gateway. */
const ORIGINAL = 'https://orders.example.com/orders/7';

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

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

/** A proof made with jose (for the refusals: another method, URL, token, key or time). */
function joseProof(
  key: Key,
  claims: { htm: string; htu: string; ath?: string },
  iat = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .setIssuedAt(iat)
    .sign(key.pair.privateKey);
}

/** Traefik's forwarded request headers for `url` (ForwardAuth adds them itself). */
function forwarded(url: string, method = 'GET'): Record<string, string> {
  const parsed = new URL(url);
  return {
    'X-Forwarded-Method': method,
    'X-Forwarded-Proto': parsed.protocol.slice(0, -1),
    'X-Forwarded-Host': parsed.host,
    'X-Forwarded-Uri': `${parsed.pathname}${parsed.search}`,
  };
}

describe.each(availableBackends())(
  'DPoP-bound tokens at our resource endpoints, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let second: TestApp;
    let config: oidc.Configuration;
    let key: Key;
    let DPoP: oidc.DPoPHandle;
    /** The request openid-client is making to a URL we only want its proof for. */
    let captureFor: string | undefined;
    let captured: string | undefined;

    beforeAll(async () => {
      server = await startTestServer({ ...backends, env: { GATEWAY_AUTH_CACHE_TTL_S: '30' } });
      second = await createTestApp({
        ...backends,
        shareWith: server.t,
        env: { ISSUER: server.url, GATEWAY_AUTH_CACHE_TTL_S: '30' },
      });
      for (const [identifier, format] of [
        [API, 'jwt'],
        [OPAQUE_API, 'opaque'],
      ] as const) {
        await server.t.stores.durable.resourceServers.create({
          identifier,
          name: `Orders (${format})`,
          scopes: ['orders:read'],
          access_token_format: format,
          access_token_ttl: 600,
        });
      }
      const client = await registerClient(server.t, 'service', {
        metadata: { scope: ALL_ADMIN_SCOPES, plan: 'enterprise', api_scopes: ['orders:read'] },
      });
      config = await oidc.discovery(
        new URL(server.url),
        client.clientId,
        undefined,
        oidc.ClientSecretBasic(client.clientSecret!),
        { execute: [oidc.allowInsecureRequests] },
      );
      // Requests to the API behind the gateway are not sent: only the proof openid-client made is kept.
      config[oidc.customFetch] = (url, options) => {
        if (captureFor !== undefined && url.startsWith(captureFor)) {
          const headers = new Headers(options.headers as Record<string, string>);
          captured = headers.get('dpop') ?? undefined;
          return Promise.resolve(new Response('{}', { status: 200 }));
        }
        return fetch(url, options as RequestInit);
      };
      key = await keyPair();
      DPoP = oidc.getDPoPHandle(config, key.pair);
    });
    afterAll(async () => {
      await second?.close();
      await server?.close();
    });

    /** The proof openid-client's DPoP handle makes for a request to `url` with `token`. */
    async function clientProof(token: string, url: string, method = 'GET'): Promise<string> {
      captureFor = url;
      captured = undefined;
      try {
        await oidc.fetchProtectedResource(config, token, new URL(url), method, undefined, undefined, {
          DPoP,
        });
      } finally {
        captureFor = undefined;
      }
      expect(captured).toMatch(/^ey/);
      return captured!;
    }

    const boundToken = async (params: Record<string, string>) => {
      const tokens = await oidc.clientCredentialsGrant(config, params, { DPoP });
      expect(tokens.token_type).toBe('dpop');
      return tokens.access_token;
    };

    const gate = (app: TestApp, headers: Record<string, string>) => {
      let req = request(app.callback).get('/gateway/auth?scope=orders:read');
      for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
      return req;
    };

    const dpopChallenge = (error: string) =>
      new RegExp(
        `^DPoP realm="${server.url}", error="${error}", error_description="[^"]+", algs="ES256 EdDSA RS256 PS256"$`,
      );

    describe('forward auth (/gateway/auth)', () => {
      let jwt: string;
      beforeAll(async () => {
        jwt = await boundToken({ scope: 'orders:read', resource: API });
        expect((decodeJwt(jwt).cnf as { jkt: string }).jkt).toBe(key.jkt);
      });

      it("passes a JWT bound to the client's key with openid-client's proof for the original request", async () => {
        const proof = await clientProof(jwt, `${ORIGINAL}?page=2`);
        const res = await gate(server.t, {
          Authorization: `DPoP ${jwt}`,
          DPoP: proof,
          ...forwarded(`${ORIGINAL}?page=2`),
        });
        expect(res.status).toBe(200);
        expect(res.headers['x-client-id']).toBe(config.clientMetadata().client_id);
        expect(res.headers['x-user-scope']).toBe('orders:read');
      });

      it('refuses the bound token as Bearer, or without a proof, with a DPoP challenge', async () => {
        const asBearer = await gate(server.t, { Authorization: `Bearer ${jwt}`, ...forwarded(ORIGINAL) });
        expect(asBearer.status).toBe(401);
        expect(asBearer.body.error.code).toBe('AUTH_TOKEN_INVALID');
        expect(asBearer.headers['www-authenticate']).toMatch(dpopChallenge('invalid_token'));

        // Even with a good proof alongside: the scheme says how the token may be used.
        const withProof = await gate(server.t, {
          Authorization: `Bearer ${jwt}`,
          DPoP: await clientProof(jwt, ORIGINAL),
          ...forwarded(ORIGINAL),
        });
        expect(withProof.status).toBe(401);

        const noProof = await gate(server.t, { Authorization: `DPoP ${jwt}`, ...forwarded(ORIGINAL) });
        expect(noProof.status).toBe(401);
        expect(noProof.headers['www-authenticate']).toMatch(dpopChallenge('invalid_dpop_proof'));
      });

      it('takes each proof once, on this instance and on another one sharing the stores', async () => {
        const first = await clientProof(jwt, ORIGINAL);
        const headers = { Authorization: `DPoP ${jwt}`, DPoP: first, ...forwarded(ORIGINAL) };
        expect((await gate(server.t, headers)).status).toBe(200);
        const again = await gate(server.t, headers);
        expect(again.status).toBe(401);
        expect(again.body.error.message).toBe('The DPoP proof was already used');
        expect(again.headers['www-authenticate']).toMatch(dpopChallenge('invalid_dpop_proof'));
        expect((await gate(second, headers)).status).toBe(401);

        // The other way round: first used at the second instance.
        const other = { ...headers, DPoP: await clientProof(jwt, ORIGINAL) };
        expect((await gate(second, other)).status).toBe(200);
        const replayed = await gate(server.t, other);
        expect(replayed.status).toBe(401);
        expect(replayed.body.error.message).toBe('The DPoP proof was already used');

        // Sent to both at once: exactly one accepts it.
        const raced = { ...headers, DPoP: await clientProof(jwt, ORIGINAL) };
        const answers = await Promise.all([
          gate(server.t, raced),
          gate(second, raced),
          gate(server.t, raced),
        ]);
        expect(answers.map((a) => a.status).sort()).toEqual([200, 401, 401]);
      });

      it('refuses a proof for another method, URL, token or key, or an old one', async () => {
        const good = { htm: 'GET', htu: ORIGINAL, ath: ath(jwt) };
        const cases: [string, Promise<string>, Record<string, string>, string, string][] = [
          [
            'method',
            joseProof(key, { ...good, htm: 'POST' }),
            forwarded(ORIGINAL),
            'invalid_dpop_proof',
            'htm',
          ],
          [
            'URL',
            joseProof(key, { ...good, htu: 'https://billing.example.com/orders/7' }),
            forwarded(ORIGINAL),
            'invalid_dpop_proof',
            'htu',
          ],
          ['path', joseProof(key, good), forwarded(`${API}/orders/8`), 'invalid_dpop_proof', 'htu'],
          [
            'token',
            joseProof(key, { ...good, ath: ath(`${jwt}x`) }),
            forwarded(ORIGINAL),
            'invalid_dpop_proof',
            'ath',
          ],
          [
            'no ath',
            joseProof(key, { htm: 'GET', htu: ORIGINAL }),
            forwarded(ORIGINAL),
            'invalid_dpop_proof',
            'ath',
          ],
          ['key', joseProof(await keyPair(), good), forwarded(ORIGINAL), 'invalid_token', 'another key'],
          [
            'time',
            joseProof(key, good, Math.floor(Date.now() / 1000) - 600),
            forwarded(ORIGINAL),
            'invalid_dpop_proof',
            'iat',
          ],
        ];
        for (const [what, proof, headers, error, mentions] of cases) {
          const res = await gate(server.t, { Authorization: `DPoP ${jwt}`, DPoP: await proof, ...headers });
          expect({ what, status: res.status }).toEqual({ what, status: 401 });
          expect(res.headers['www-authenticate']).toMatch(dpopChallenge(error));
          expect(res.body.error.message).toContain(mentions);
        }
        // The jose proof made right is accepted: the refusals above are about what each changed.
        const right = await gate(server.t, {
          Authorization: `DPoP ${jwt}`,
          DPoP: await joseProof(key, good),
          ...forwarded(ORIGINAL),
        });
        expect(right.status).toBe(200);
      });

      it("takes Envoy's form: the original path after /gateway/auth, the original Host, options in headers", async () => {
        const envoy = (proof: string) =>
          request(server.t.callback)
            .post('/gateway/auth/orders/7?page=2')
            .set('Host', 'orders.example.com')
            .set('X-Forwarded-Proto', 'https')
            .set('X-Auth-Scope', 'orders:read')
            .set('Authorization', `DPoP ${jwt}`)
            .set('DPoP', proof);
        const ok = await envoy(await clientProof(jwt, `${ORIGINAL}?page=2`, 'POST'));
        expect(ok.status).toBe(200);
        const otherHost = await envoy(await clientProof(jwt, 'https://billing.example.com/orders/7', 'POST'));
        expect(otherHost.status).toBe(401);
        expect(otherHost.headers['www-authenticate']).toMatch(dpopChallenge('invalid_dpop_proof'));
      });

      it('checks opaque bound tokens the same way, and refuses an unbound token presented as DPoP', async () => {
        const opaque = await boundToken({ scope: 'orders:read', resource: OPAQUE_API });
        expect(opaque.split('.')).toHaveLength(1);
        const ok = await gate(server.t, {
          Authorization: `DPoP ${opaque}`,
          DPoP: await clientProof(opaque, ORIGINAL),
          ...forwarded(ORIGINAL),
        });
        expect(ok.status).toBe(200);
        const asBearer = await gate(server.t, { Authorization: `Bearer ${opaque}`, ...forwarded(ORIGINAL) });
        expect(asBearer.status).toBe(401);
        expect(asBearer.headers['www-authenticate']).toMatch(dpopChallenge('invalid_token'));

        const unbound = await oidc.clientCredentialsGrant(config, { scope: 'orders:read', resource: API });
        expect(unbound.token_type).toBe('bearer');
        const plain = await gate(server.t, {
          Authorization: `Bearer ${unbound.access_token}`,
          ...forwarded(ORIGINAL),
        });
        expect(plain.status).toBe(200);
        const asDpop = await gate(server.t, {
          Authorization: `DPoP ${unbound.access_token}`,
          DPoP: await joseProof(key, { htm: 'GET', htu: ORIGINAL, ath: ath(unbound.access_token) }),
          ...forwarded(ORIGINAL),
        });
        expect(asDpop.status).toBe(401);
        expect(asDpop.headers['www-authenticate']).toMatch(dpopChallenge('invalid_token'));
      });
    });

    describe('management API (/v2) and policy decisions (/v1/authorize)', () => {
      it("answers openid-client's protected-resource request with a bound opaque token, and a bound JWT", async () => {
        for (const params of [
          { scope: 'user:read' },
          { scope: 'user:read', resource: `${server.url}/v2` },
        ] as Record<string, string>[]) {
          const token = await boundToken(params);
          const res = await oidc.fetchProtectedResource(
            config,
            token,
            new URL(`${server.url}/v2/users?limit=1`),
            'GET',
            undefined,
            undefined,
            { DPoP },
          );
          expect({ params, status: res.status }).toEqual({ params, status: 200 });
          expect(((await res.json()) as { data: unknown[] }).data).toEqual(expect.any(Array));
        }
      });

      it('refuses a bound token as Bearer, without a proof, with a replayed proof or one for another path', async () => {
        const token = await boundToken({ scope: 'user:read' });
        const users = `${server.url}/v2/users`;
        const asBearer = await request(server.t.callback)
          .get('/v2/users')
          .set('Authorization', `Bearer ${token}`);
        expect(asBearer.status).toBe(401);
        expect(asBearer.body.error.code).toBe('AUTH_TOKEN_INVALID');
        expect(asBearer.headers['www-authenticate']).toMatch(dpopChallenge('invalid_token'));

        const noProof = await request(server.t.callback)
          .get('/v2/users')
          .set('Authorization', `DPoP ${token}`);
        expect(noProof.status).toBe(401);
        expect(noProof.headers['www-authenticate']).toMatch(dpopChallenge('invalid_dpop_proof'));

        const proof = await clientProof(token, users);
        const call = (app: TestApp) =>
          request(app.callback).get('/v2/users').set('Authorization', `DPoP ${token}`).set('DPoP', proof);
        expect((await call(server.t)).status).toBe(200);
        const replayed = await call(second);
        expect(replayed.status).toBe(401);
        expect(replayed.body.error.message).toBe('The DPoP proof was already used');

        const otherPath = await request(server.t.callback)
          .get('/v2/roles')
          .set('Authorization', `DPoP ${token}`)
          .set('DPoP', await clientProof(token, users));
        expect(otherPath.status).toBe(401);
        expect(otherPath.body.error.message).toContain('htu');
      });

      it('/v1/authorize takes a bound token with its proof, and refuses it as Bearer', async () => {
        const token = await boundToken({ scope: 'policy:evaluate' });
        const check = {
          principal: { type: 'User', id: 'nobody' },
          action: { type: 'Action', id: 'read' },
          resource: { type: 'document', id: 'report.pdf' },
        };
        const res = await oidc.fetchProtectedResource(
          config,
          token,
          new URL(`${server.url}/v1/authorize`),
          'POST',
          JSON.stringify(check),
          new Headers({ 'content-type': 'application/json' }),
          { DPoP },
        );
        expect(res.status).toBe(200);
        expect(((await res.json()) as { decision: string }).decision).toBe('Deny');

        const asBearer = await request(server.t.callback)
          .post('/v1/authorize')
          .set('Authorization', `Bearer ${token}`)
          .send(check);
        expect(asBearer.status).toBe(401);
        expect(asBearer.headers['www-authenticate']).toMatch(dpopChallenge('invalid_token'));
      });
    });
  },
);
