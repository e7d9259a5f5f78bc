/**
 * Debian's nginx in front of a small API, with the configuration of docs/gateways (auth_request to
 * /gateway/auth), ports and include paths swapped for the test's own. No token, a revoked or
 * expired one → 401 with Latchkey's challenge; the wrong scope or a policy Deny → 403; a good token →
 * the API sees who is calling, and never a caller-supplied X-User-ID. A DPoP-bound token (RFC 9449)
 * passes with openid-client's proof for the URL it called at nginx, and is refused as Bearer or with
 * a proof used before.
 *
 * Runs when NGINX_BIN names the nginx binary (scripts/test-services.sh installs Debian's nginx and
 * sets it, so CI always runs this); without it the suite says so and is skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as oidc from 'openid-client';

import {
  adminApi,
  clientToken,
  randomTag,
  uniqueRoleName,
  userToken,
  type AdminApi,
} from '../helpers/admin-api.js';
import { registerClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const NGINX = process.env.NGINX_BIN;
const DOCS = join(import.meta.dirname, '../../docs/gateways');
const API = 'https://orders.example.com';

if (!NGINX) {
  console.warn('nginx gateway suite skipped: NGINX_BIN is not set (scripts/test-services.sh sets it)');
}

async function waitForPort(port: number, child: ChildProcess, log: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(log, 'utf8')}`);
    try {
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nginx did not listen on ${port}: ${readFileSync(log, 'utf8')}`);
}

(NGINX ? describe : describe.skip)('nginx auth_request in front of an API (docs/gateways/nginx.conf)', () => {
  let server: TestServer;
  let api: AdminApi;
  let upstream: Server;
  let nginx: ChildProcess;
  let dir: string;
  let gateway: string;
  const seen: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    server = await startTestServer({ env: { GATEWAY_RESOURCE_PATTERN: '^/documents/([^/]+)' } });
    api = await adminApi(server.t);
    await server.t.stores.durable.resourceServers.create({
      identifier: API,
      name: 'Orders',
      scopes: ['orders:read', 'orders:write'],
      access_token_format: 'jwt',
      access_token_ttl: 600,
    });

    upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ path: req.url, user: req.headers['x-user-id'] ?? null }));
    });
    const upstreamPort = await freePort();
    await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve));

    dir = mkdtempSync(join(tmpdir(), 'latchkey-nginx-'));
    const port = await freePort();
    gateway = `http://127.0.0.1:${port}`;
    const latchkeyPort = new URL(server.url).port;
    for (const name of ['latchkey_auth_params', 'latchkey_identity_params']) {
      writeFileSync(join(dir, name), readFileSync(join(DOCS, name), 'utf8'));
    }
    const site = readFileSync(join(DOCS, 'nginx.conf'), 'utf8')
      .replaceAll('127.0.0.1:3000', `127.0.0.1:${latchkeyPort}`)
      .replaceAll('127.0.0.1:8080', `127.0.0.1:${upstreamPort}`)
      .replaceAll('127.0.0.1:8000', `127.0.0.1:${port}`)
      .replaceAll('/etc/nginx/', `${dir}/`);
    writeFileSync(join(dir, 'site.conf'), site);
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
      .map((k) => `${k}_temp_path ${dir}/${k};`)
      .join('\n  ');
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off;\nworker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
        `events { worker_connections 64; }\n` +
        `http {\n  access_log off;\n  ${temp}\n  include ${dir}/site.conf;\n}\n`,
    );
    const log = join(dir, 'error.log');
    nginx = spawn(NGINX!, ['-e', log, '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
    await waitForPort(port, nginx, log);
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx.once('exit', r));
      nginx.kill('SIGTERM');
      await exited;
    }
    await new Promise((r) => upstream?.close(r));
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const call = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${gateway}${path}`, { headers, signal: AbortSignal.timeout(5000) });

  it('answers 401 with the challenge without a token, or with a garbage or revoked one', async () => {
    const before = seen.length;
    const none = await call('/api/orders');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe(`Bearer realm="${server.url}"`);
    const garbage = await call('/api/orders', { Authorization: 'Bearer garbage' });
    expect(garbage.status).toBe(401);
    expect(garbage.headers.get('www-authenticate')).toContain('error="invalid_token"');

    await server.t.stores.durable.resourceServers.create({
      identifier: 'https://opaque.example.com',
      name: 'Opaque',
      scopes: ['orders:read'],
      access_token_format: 'opaque',
      access_token_ttl: 600,
    });
    const client = await registerClient(server.t, 'service', { metadata: { api_scopes: ['orders:read'] } });
    const service = { clientId: client.clientId, clientSecret: client.clientSecret! };
    const token = await clientToken(server.t, service, {
      scope: 'orders:read',
      resource: 'https://opaque.example.com',
    });
    expect((await call('/api/orders', { Authorization: `Bearer ${token}` })).status).toBe(200);
    const revoke = await fetch(`${server.url}/oauth/revoke`, {
      method: 'POST',
      headers: {
        Authorization: `Basic ${Buffer.from(`${service.clientId}:${service.clientSecret}`).toString('base64')}`,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }),
    });
    expect(revoke.status).toBe(200);
    expect((await call('/api/orders', { Authorization: `Bearer ${token}` })).status).toBe(401);
    expect(seen.length).toBe(before + 1);
  });

  it('answers 401 for an expired JWT, 403 for the wrong scope, and passes the caller on to the API', async () => {
    const client = await registerClient(server.t, 'service', {
      metadata: { api_scopes: ['orders:read', 'orders:write'] },
    });
    const service = { clientId: client.clientId, clientSecret: client.clientSecret! };
    const writer = await clientToken(server.t, service, { scope: 'orders:write', resource: API });
    const wrong = await call('/api/orders', { Authorization: `Bearer ${writer}` });
    expect(wrong.status).toBe(403);

    const reader = await clientToken(server.t, service, { scope: 'orders:read', resource: API });
    const ok = await call('/api/orders?page=2', { Authorization: `Bearer ${reader}`, 'X-User-ID': 'forged' });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ path: '/api/orders?page=2', user: null });
    const headers = seen.at(-1)!;
    expect(headers['x-client-id']).toBe(service.clientId);
    expect(headers['x-user-scope']).toBe('orders:read');
    expect(headers['x-user-id']).toBeUndefined();

    await server.t.stores.durable.resourceServers.create({
      identifier: 'https://brief.example.com',
      name: 'Brief',
      scopes: ['orders:read'],
      access_token_format: 'jwt',
      access_token_ttl: 1,
    });
    const brief = await clientToken(server.t, service, {
      scope: 'orders:read',
      resource: 'https://brief.example.com',
    });
    const exp = JSON.parse(Buffer.from(brief.split('.')[1]!, 'base64url').toString()).exp as number;
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1100));
    const expired = await call('/api/orders', { Authorization: `Bearer ${brief}` });
    expect(expired.status).toBe(401);
    expect(expired.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('asks the Cedar policies about the document in the path; the API sees the user', async () => {
    const reader = await api.createRole({ name: uniqueRoleName('reader') });
    const alice = await api.createUser({ role: reader.name });
    const bob = await api.createUser();
    const created = await api.post('/v2/policies', {
      id: `nginx-readers-${randomTag()}`,
      policy: `permit(principal in Role::"${reader.name}", action == Action::"read", resource is Document);`,
    });
    expect(created.status).toBe(201);
    const aliceToken = await userToken(server.t, api, alice.id);
    const ok = await call('/documents/d1', { Authorization: `Bearer ${aliceToken}` });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ path: '/documents/d1', user: alice.id });
    expect(seen.at(-1)!['x-user-email']).toBe(alice.email);
    const denied = await call('/documents/d1', {
      Authorization: `Bearer ${await userToken(server.t, api, bob.id)}`,
    });
    expect(denied.status).toBe(403);
  });

  it("passes a DPoP-bound token with openid-client's proof for the URL it called at nginx, once", async () => {
    const client = await registerClient(server.t, 'service', { metadata: { api_scopes: ['orders:read'] } });
    let proof: string | undefined;
    const config = await oidc.discovery(
      new URL(server.url),
      client.clientId,
      undefined,
      oidc.ClientSecretBasic(client.clientSecret!),
      { execute: [oidc.allowInsecureRequests] },
    );
    // Keeps the proof of each request openid-client sends to nginx, to send it again below.
    config[oidc.customFetch] = (url, options) => {
      if (url.startsWith(gateway))
        proof = new Headers(options.headers as Record<string, string>).get('dpop')!;
      return fetch(url, options as RequestInit);
    };
    const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'));
    const tokens = await oidc.clientCredentialsGrant(
      config,
      { scope: 'orders:read', resource: API },
      { DPoP },
    );
    expect(tokens.token_type).toBe('dpop');
    const token = tokens.access_token;

    const ok = await oidc.fetchProtectedResource(
      config,
      token,
      new URL(`${gateway}/api/orders?page=3`),
      'GET',
      undefined,
      undefined,
      { DPoP },
    );
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ path: '/api/orders?page=3', user: null });
    expect(seen.at(-1)!['x-client-id']).toBe(client.clientId);

    const replayed = await call('/api/orders?page=3', { Authorization: `DPoP ${token}`, DPoP: proof! });
    expect(replayed.status).toBe(401);
    expect(replayed.headers.get('www-authenticate')).toMatch(
      /^DPoP realm="[^"]+", error="invalid_dpop_proof"/,
    );
    const asBearer = await call('/api/orders', { Authorization: `Bearer ${token}` });
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers.get('www-authenticate')).toMatch(/^DPoP realm="[^"]+", error="invalid_token"/);
  });
});
