/**
 * The SDK's policy calls against a real Latchkey server: authorize() and authorizeBatch(), and
 * requirePermission in real Express and Koa apps (after the authentication middleware, with API
 * keys): Allow passes through, Deny is a 403, no identity is a 401.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import Koa from 'koa';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

import {
  latchkeyExpress,
  latchkeyKoa,
  LatchkeyClient,
  requirePermission,
  requirePermissionKoa,
  type LatchkeyKoaState,
} from '../../src/sdk/index.js';
import { ALL_ADMIN_SCOPES, registerServiceClient } from '../helpers/admin-api.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const tag = () => randomBytes(4).toString('hex');

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('SDK policy decisions', () => {
  let server: TestServer;
  let admin: LatchkeyClient;
  let key: string;
  let userId: string;
  const action = `read-${tag()}`;
  const apps: { url: string; close(): Promise<void> }[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    const service = await registerServiceClient(server.t);
    admin = new LatchkeyClient({
      baseUrl: server.url,
      clientCredentials: { ...service, scope: ALL_ADMIN_SCOPES },
    });
    const role = await admin.roles.create({ name: `readers-${tag()}`, permissions: ['docs:read'] });
    const user = await admin.users.create({
      email: `reader-${tag()}@example.com`,
      first_name: 'Rea',
      last_name: 'Der',
      role: role.name,
    });
    userId = user.id;
    key = (await admin.apiKeys.create(user.id, { name: 'app', scopes: ['docs:read'] })).key;
    await admin.request({
      method: 'POST',
      path: '/v2/policies',
      json: {
        id: `sdk-${action}`,
        policy: `permit(principal in Role::"${role.name}", action == Action::"${action}", resource == Document::"open");`,
      },
    });

    const e = express();
    e.get(
      '/docs/:id',
      latchkeyExpress({ issuer: server.url, accept: ['api_key'] }),
      requirePermission(admin, action, (req) => ({
        type: 'Document',
        id: String((req as unknown as express.Request).params.id),
      })),
      (_req, res) => {
        res.json({ ok: true });
      },
    );
    e.get(
      '/bare/:id',
      requirePermission(admin, action, () => ({ type: 'Document', id: 'open' })),
      (_req, res) => {
        res.json({ ok: true });
      },
    );
    apps.push(await listen(e.listen(0, '127.0.0.1')));

    const k = new Koa<LatchkeyKoaState>();
    const guard = latchkeyKoa({ issuer: server.url, accept: ['api_key'] });
    const permit = requirePermissionKoa(admin, action, (ctx) => ({
      type: 'Document',
      id: (ctx as unknown as { path: string }).path.split('/')[2]!,
    }));
    k.use(async (ctx, next) => guard(ctx, () => permit(ctx, next)));
    k.use((ctx) => {
      ctx.body = { ok: true };
    });
    apps.push(await listen(k.listen(0, '127.0.0.1')));
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await server.close();
  });

  it('authorize() and authorizeBatch() return the server’s decisions', async () => {
    const check = (id: string) => ({
      principal: { type: 'User', id: userId },
      action: { type: 'Action', id: action },
      resource: { type: 'Document', id },
    });
    expect(await admin.authorize(check('open'))).toEqual({
      decision: 'Allow',
      diagnostics: { reasons: [`sdk-${action}`], errors: [] },
    });
    const batch = await admin.authorizeBatch([check('open'), check('closed')]);
    expect(batch.map((d) => d.decision)).toEqual(['Allow', 'Deny']);
  });

  it.each([0, 1])('requirePermission lets Allow through and answers Deny with 403 (app %i)', async (i) => {
    const get = (path: string) =>
      fetch(`${apps[i]!.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    const open = await get('/docs/open');
    expect(open.status).toBe(200);
    expect(await open.json()).toEqual({ ok: true });
    const closed = await get('/docs/closed');
    expect(closed.status).toBe(403);
    expect(((await closed.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
  });

  it('requirePermission without an authenticated caller is a 401', async () => {
    expect((await fetch(`${apps[0]!.url}/bare/x`)).status).toBe(401);
  });
});
