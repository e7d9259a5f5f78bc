/**
 * DPoP (RFC 9449) with openid-client as the client, on every backend pair: client credentials bound
 * to the client's key (token type DPoP, `cnf.jkt` in introspection), a proof used twice refused, a
 * proof's jti taken once across two instances on the same stores, clients registered with
 * `dpop_bound_access_tokens` refused without a proof, and server nonces (DPOP_REQUIRE_NONCE).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';

import { calculateJwkThumbprint, exportJWK, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

async function keyPair() {
  const pair = await oidc.randomDPoPKeyPair('ES256');
  const jwk = (await exportJWK(pair.publicKey)) as JWK;
  return { pair, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

/** A DPoP proof made by hand, to send the very same one twice. */
async function proof(key: Awaited<ReturnType<typeof keyPair>>, htu: string, nonce?: string) {
  return new SignJWT({ jti: randomUUID(), htm: 'POST', htu, ...(nonce ? { nonce } : {}) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .setIssuedAt()
    .sign(key.pair.privateKey);
}

describe.each(availableBackends())('DPoP, durable=$durable, short-lived=$shortLived', (backends) => {
  let server: TestServer;
  let api: AdminApi;
  let client: { client_id: string; client_secret: string };
  let config: oidc.Configuration;

  beforeAll(async () => {
    server = await startTestServer(backends);
    api = await adminApi(server.t);
    const created = await api.post('/v2/clients', { kind: 'service', client_name: 'Bound service' });
    expect(created.status).toBe(201);
    client = created.body;
    config = await oidc.discovery(
      new URL(server.url),
      client.client_id,
      undefined,
      oidc.ClientSecretBasic(client.client_secret),
      { execute: [oidc.allowInsecureRequests] },
    );
  });
  afterAll(() => server?.close());

  const tokenRequest = (dpop: string) =>
    fetch(`${server.url}/oauth/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        dpop,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    }).then(async (res) => ({ status: res.status, body: (await res.json()) as Record<string, unknown> }));

  it('binds client credentials to the key of the proof: token type DPoP, cnf.jkt in introspection', async () => {
    expect(config.serverMetadata().dpop_signing_alg_values_supported).toEqual(
      expect.arrayContaining(['ES256', 'EdDSA']),
    );
    const key = await keyPair();
    const tokens = await oidc.clientCredentialsGrant(
      config,
      {},
      { DPoP: oidc.getDPoPHandle(config, key.pair) },
    );
    expect(tokens.token_type).toBe('dpop');
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    expect(introspected).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } });
  });

  it('refuses a proof sent a second time', async () => {
    const key = await keyPair();
    const once = await proof(key, `${server.url}/oauth/token`);
    expect((await tokenRequest(once)).status).toBe(200);
    const again = await tokenRequest(once);
    expect(again.status).toBe(400);
    // oidc-provider answers a replayed proof at the token endpoint with invalid_grant (its detail,
    // "DPoP proof JWT Replay detected", stays out of the response).
    expect(again.body).toMatchObject({ error: 'invalid_grant' });
  });

  it('takes a proof jti once across two instances on the same stores', async () => {
    const second = await createTestApp({ ...backends, shareWith: server.t });
    try {
      const unique = (app: typeof server.t) =>
        (
          app.services.provider.current.ReplayDetection as unknown as {
            unique(iss: string, jti: string, exp: number): Promise<boolean>;
          }
        ).unique('client-x', `jti-${randomUUID()}`, Math.floor(Date.now() / 1000) + 60);
      const jti = randomUUID();
      const exp = Math.floor(Date.now() / 1000) + 60;
      const at = (app: typeof server.t) =>
        (
          app.services.provider.current.ReplayDetection as unknown as {
            unique(iss: string, jti: string, exp: number): Promise<boolean>;
          }
        ).unique('client-x', jti, exp);
      const results = await Promise.all([at(server.t), at(second), at(server.t), at(second)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await unique(second)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('refuses a client registered with dpop_bound_access_tokens a token without a proof', async () => {
    const created = await api.post('/v2/clients', {
      kind: 'service',
      client_name: 'Must bind',
      dpop_bound_access_tokens: true,
    });
    expect(created.status).toBe(201);
    expect(created.body.dpop_bound_access_tokens).toBe(true);
    const bound = await oidc.discovery(
      new URL(server.url),
      created.body.client_id,
      undefined,
      oidc.ClientSecretBasic(created.body.client_secret),
      { execute: [oidc.allowInsecureRequests] },
    );
    await expect(oidc.clientCredentialsGrant(bound, {})).rejects.toMatchObject({ error: 'invalid_grant' });
    const key = await keyPair();
    const tokens = await oidc.clientCredentialsGrant(
      bound,
      {},
      { DPoP: oidc.getDPoPHandle(bound, key.pair) },
    );
    expect(tokens.token_type).toBe('dpop');
  });
});

describe('DPoP nonces (DPOP_REQUIRE_NONCE=true, embedded)', () => {
  let server: TestServer;
  let api: AdminApi;
  beforeAll(async () => {
    server = await startTestServer({ env: { DPOP_REQUIRE_NONCE: 'true' } });
    api = await adminApi(server.t);
  });
  afterAll(() => server?.close());

  it('asks for a nonce (use_dpop_nonce with DPoP-Nonce), which openid-client then sends by itself', async () => {
    const created = await api.post('/v2/clients', { kind: 'service', client_name: 'Nonce service' });
    const { client_id: clientId, client_secret: secret } = created.body;
    const key = await keyPair();
    const res = await fetch(`${server.url}/oauth/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
        dpop: await proof(key, `${server.url}/oauth/token`),
      },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('use_dpop_nonce');
    const nonce = res.headers.get('dpop-nonce');
    expect(nonce).toMatch(/\S{16,}/);

    const config = await oidc.discovery(
      new URL(server.url),
      clientId,
      undefined,
      oidc.ClientSecretBasic(secret),
      {
        execute: [oidc.allowInsecureRequests],
      },
    );
    const DPoP = oidc.getDPoPHandle(config, key.pair);
    // openid-client learns the nonce from the refusal and retries with it on its own.
    const tokens = await oidc.clientCredentialsGrant(config, {}, { DPoP });
    expect(tokens.token_type).toBe('dpop');
  });
});
