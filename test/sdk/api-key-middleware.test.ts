/**
 * The Express and Koa middleware taking API keys, in real apps in front of a real Latchkey server and
 * its POST /api/v1/auth/verify-key: keys of users and of service clients as bearer or X-API-Key,
 * quota consumed per request unless turned off, and the server's refusals passed on with their
 * status, code and headers: revoked key (401), address not allowed and suspended owner (403), quota
 * used up (429 with Retry-After), plus our own 403 for a missing scope.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { LatchkeyClient, type AuthenticateOptions, type FetchLike } from '../../src/sdk/index.js';
import { ALL_ADMIN_SCOPES, registerServiceClient } from '../helpers/admin-api.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { startGuardedApp, type Framework, type GuardedApp } from './apps.js';

const tag = () => randomBytes(4).toString('hex');

describe.each<Framework>(['express', 'koa'])('latchkey middleware with API keys in %s', (framework) => {
  let server: TestServer;
  let admin: LatchkeyClient;
  let roleName: string;
  const apps: GuardedApp[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    const service = await registerServiceClient(server.t);
    admin = new LatchkeyClient({
      baseUrl: server.url,
      clientCredentials: { ...service, scope: ALL_ADMIN_SCOPES },
    });
    roleName = (
      await admin.roles.create({ name: `api-${tag()}`, permissions: ['things:read', 'things:write'] })
    ).name;
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await server.close();
  });

  async function guarded(options: Partial<AuthenticateOptions> = {}): Promise<GuardedApp> {
    const app = await startGuardedApp(framework, {
      issuer: server.url,
      accept: ['jwt', 'api_key'],
      ...options,
    });
    apps.push(app);
    return app;
  }

  /** A fresh user (own quota) holding the role, and a key of theirs. */
  async function userWithKey(keyInput: { scopes?: string[]; allowed_ips?: string[] } = {}) {
    const user = await admin.users.create({
      email: `key-${tag()}@example.com`,
      first_name: 'Key',
      last_name: 'User',
      role: roleName,
    });
    const issued = await admin.apiKeys.create(user.id, { name: 'app', scopes: ['things:read'], ...keyInput });
    return { user, key: issued.key, keyId: issued.id };
  }

  async function call(app: GuardedApp, headers: Record<string, string>) {
    const res = await fetch(app.url, { headers });
    return {
      status: res.status,
      headers: res.headers,
      body: (await res.json()) as { identity?: Record<string, unknown>; error?: Record<string, unknown> },
    };
  }

  const remaining = async (key: string) =>
    (await admin.verifyKey(key, { consume: false })).remaining_conversations;

  it('accepts a user’s key as a bearer token, attaching who it belongs to, and consumes one unit', async () => {
    const app = await guarded();
    const { user, key, keyId } = await userWithKey();
    const before = await remaining(key);
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(200);
    expect(res.body.identity).toEqual({
      kind: 'api_key',
      subject: user.id,
      scopes: ['things:read'],
      apiKey: {
        valid: true,
        key_id: keyId,
        owner_type: 'user',
        user_id: user.id,
        username: expect.anything(),
        email: user.email,
        scopes: ['things:read'],
        plan: expect.any(String),
        remaining_conversations: before - 1,
        credits: expect.any(Number),
        resets_at: expect.any(String),
      },
    });
    expect(await remaining(key)).toBe(before - 1);
  });

  it('accepts a key in X-API-Key, and consumes nothing with verifyKeyConsume: false', async () => {
    const app = await guarded({ verifyKeyConsume: false });
    const { user, key } = await userWithKey();
    const before = await remaining(key);
    for (let i = 0; i < 2; i += 1) {
      const res = await call(app, { 'x-api-key': key });
      expect(res.status).toBe(200);
      expect(res.body.identity).toMatchObject({ kind: 'api_key', subject: user.id });
    }
    expect(await remaining(key)).toBe(before);
  });

  it('accepts a service client’s key, with the client as subject', async () => {
    const app = await guarded();
    const service = await registerServiceClient(server.t, { scope: 'user:read' });
    const issued = await admin.clientApiKeys.create(service.clientId, { name: 'svc', scopes: ['user:read'] });
    const res = await call(app, { authorization: `Bearer ${issued.key}` });
    expect(res.status).toBe(200);
    expect(res.body.identity).toMatchObject({
      kind: 'api_key',
      subject: service.clientId,
      clientId: service.clientId,
      scopes: ['user:read'],
      apiKey: { owner_type: 'client', client_id: service.clientId },
    });
  });

  it('passes on 401 API_KEY_INVALID for a revoked key, with an invalid_token challenge', async () => {
    const app = await guarded();
    const { user, key, keyId } = await userWithKey();
    await admin.apiKeys.revoke(user.id, keyId);
    const res = await call(app, { authorization: `Bearer ${key}`, 'x-request-id': 'req-revoked-1' });
    expect(res.status).toBe(401);
    expect(res.body.error).toEqual({
      code: 'API_KEY_INVALID',
      message: 'The API key is invalid or has been revoked',
      request_id: 'req-revoked-1',
      timestamp: expect.any(String),
    });
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="${server.url}", error="invalid_token", error_description="The API key is invalid or has been revoked"`,
    );
  });

  it('passes on 403 IP_NOT_ALLOWED for a key bound to other addresses', async () => {
    const app = await guarded();
    const { key } = await userWithKey({ allowed_ips: ['203.0.113.7', '2001:db8::/32'] });
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(res.headers.get('www-authenticate')).toBeNull();
  });

  it('passes on 403 USER_INACTIVE when the key’s owner is suspended', async () => {
    const app = await guarded();
    const { user, key } = await userWithKey();
    await admin.users.update(user.id, { status: 'suspended' });
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'USER_INACTIVE' });
  });

  it('passes on 429 QUOTA_EXCEEDED with Retry-After and when the quota resets', async () => {
    const app = await guarded();
    const { user, key } = await userWithKey();
    await admin.usage.set(user.id, { remaining_conversations: 1, credits: 0 });
    expect((await call(app, { authorization: `Bearer ${key}` })).status).toBe(200);
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(429);
    const usage = await admin.usage.get(user.id);
    expect(res.body.error).toMatchObject({ code: 'QUOTA_EXCEEDED', resets_at: usage.period_end });
    const retryAfter = res.headers.get('retry-after');
    expect(retryAfter).toMatch(/^[1-9]\d*$/);
    expect(res.body.error!.retry_after).toBe(Number(retryAfter));
  });

  it('answers 403 insufficient_scope for a key without a required scope', async () => {
    const app = await guarded({ requiredScopes: ['things:write'] });
    const { key } = await userWithKey({ scopes: ['things:read'] });
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'AUTH_INSUFFICIENT_SCOPE' });
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="${server.url}", error="insufficient_scope", scope="things:write"`,
    );
    const { key: writer } = await userWithKey({ scopes: ['things:read', 'things:write'] });
    expect((await call(app, { authorization: `Bearer ${writer}` })).status).toBe(200);
  });

  it('refuses keys where they are not accepted, without sending them to the server', async () => {
    const calls: string[] = [];
    const counting: FetchLike = (input, init) => {
      calls.push(input);
      return globalThis.fetch(input, init);
    };
    const app = await guarded({ accept: ['jwt'], fetch: counting });
    const { key } = await userWithKey();
    const res = await call(app, { authorization: `Bearer ${key}` });
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject({
      code: 'AUTH_TOKEN_INVALID',
      message: 'API keys are not accepted here',
    });
    expect(calls).toEqual([]);
  });

  it('answers concurrent requests with a valid and a revoked key each on its own', async () => {
    const app = await guarded();
    const { key } = await userWithKey();
    const { user: other, key: otherKey, keyId } = await userWithKey();
    await admin.apiKeys.revoke(other.id, keyId);
    const [ok, refused] = await Promise.all([
      call(app, { authorization: `Bearer ${key}` }),
      call(app, { authorization: `Bearer ${otherKey}` }),
    ]);
    expect(ok.status).toBe(200);
    expect(refused.status).toBe(401);
    expect(refused.body.identity).toBeUndefined();
  });
});
