/**
 * API keys, plans, quotas and usage through the HTTP API, on every backend combination: the key
 * lifecycle under /v2, hash-only storage, verify-key (owner, expiry, IP allow-lists, quota taken
 * atomically under concurrency, period reset with the clock moved), log-message with idempotency,
 * usage totals, and the exchange of a key for an ordinary access token (introspection, /v2, refresh,
 * the token endpoint grant), across two instances when Redis is configured.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import request from 'supertest';

import { AdminApi, adminApi, registerServiceClient, uniqueEmail } from '../helpers/admin-api.js';
import { REDIS_URL } from '../helpers/backends.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const KEY_SHAPE = /^sk_live_[0-9a-z]{12}_[A-Za-z0-9_-]{43}$/;
const API_KEY_GRANT = 'urn:latchkey:params:oauth:grant-type:api-key';

interface Setup {
  userId: string;
  key: string;
  keyId: string;
}

function verify(t: TestApp, key: string, options: { ip?: string; consume?: boolean } = {}) {
  const req = request(t.callback).post('/api/v1/auth/verify-key').set('Authorization', `Bearer ${key}`);
  if (options.ip) req.set('X-Forwarded-For', options.ip);
  return options.consume === undefined ? req : req.send({ consume: options.consume });
}

function expectError(res: request.Response, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(res.body.error).toMatchObject({
    request_id: res.headers['x-request-id'],
    timestamp: expect.any(String),
  });
}

describe.each(availableBackends())(
  'API keys, quotas and usage with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let admin: AdminApi;
    let plan: string;

    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { TRUST_PROXY: 'true' } });
      admin = await adminApi(t);
      plan = `metered-${Date.now().toString(36)}`;
      const created = await admin.post('/v2/plans', {
        name: plan,
        requests_per_hour: 100_000,
        burst: 10_000,
        quota: 10,
        quota_period: 'month',
        credits: 0,
      });
      expect(created.status).toBe(201);
    });
    afterAll(() => t.close());

    /** A user whose role grants chat:write and user:read, on the metered plan, with one key. */
    async function userWithKey(body: Record<string, unknown> = {}): Promise<Setup> {
      const role = await admin.createRole({ permissions: ['chat:write', 'user:read'] });
      const user = await admin.createUser({ email: uniqueEmail('keys'), role: role.name });
      expect((await admin.put(`/v2/users/${user.id}/plan`, { plan })).status).toBe(200);
      const res = await admin.post(`/v2/users/${user.id}/api-keys`, { name: 'Production', ...body });
      expect(res.status).toBe(201);
      return { userId: user.id, key: res.body.key, keyId: res.body.id };
    }

    it('creates a key shown once, lists it without the secret, and stores only its hash', async () => {
      const { userId, key, keyId } = await userWithKey({ scopes: ['chat:write'] });
      expect(key).toMatch(KEY_SHAPE);
      const listed = await admin.get(`/v2/users/${userId}/api-keys`);
      expect(listed.status).toBe(200);
      expect(listed.body.data).toEqual([
        {
          id: keyId,
          name: 'Production',
          prefix: key.slice(0, 'sk_live_'.length + 12),
          scopes: ['chat:write'],
          allowed_ips: [],
          created_at: expect.any(String),
          expires_at: null,
          last_used_at: null,
          revoked_at: null,
        },
      ]);
      const stored = await t.stores.durable.apiKeys.findById(keyId);
      expect(stored!.secret_hash).toBe(createHash('sha256').update(key).digest('hex'));
      // The secret is the last 43 characters (32 bytes, base64url, which may itself contain "_").
      const secret = /^sk_(?:live|test)_[0-9a-z]{12}_([A-Za-z0-9_-]{43})$/.exec(key)![1]!;
      expect(JSON.stringify(stored)).not.toContain(secret);
      expect(JSON.stringify(await t.stores.durable.audit.list({ limit: 500 }))).not.toContain(secret);
      // Default scopes: everything the owner holds.
      const all = await admin.post(`/v2/users/${userId}/api-keys`, { name: 'All' });
      expect(all.body.scopes).toEqual(['chat:write', 'user:read']);
    });

    it('refuses scopes the owner lacks, bad allow-list entries and past expiry with field details', async () => {
      const { userId } = await userWithKey();
      // Scopes the owner lacks and an expiry already past are well-formed: 422, not 400.
      const scopes = await admin.post(`/v2/users/${userId}/api-keys`, { name: 'x', scopes: ['user:write'] });
      expectError(scopes, 422, 'BUSINESS_RULE_VIOLATION');
      expect(scopes.body.error.details).toEqual([
        { field: 'scopes', issue: 'Not held by the key owner', provided: 'user:write' },
      ]);
      const ips = await admin.post(`/v2/users/${userId}/api-keys`, {
        name: 'x',
        allowed_ips: ['10.0.0.0/33'],
      });
      expectError(ips, 400, 'VALIDATION_ERROR');
      expect(ips.body.error.details[0]).toMatchObject({ field: 'allowed_ips.0' });
      const past = await admin.post(`/v2/users/${userId}/api-keys`, {
        name: 'x',
        expires_at: '2001-01-01T00:00:00Z',
      });
      expectError(past, 422, 'BUSINESS_RULE_VIOLATION');
      expect((await admin.post('/v2/users/usr_missing/api-keys', { name: 'x' })).status).toBe(404);
      expect(await t.stores.durable.apiKeys.listByOwner('user', userId)).toHaveLength(1);
    });

    it('verifies a key, consuming one unit unless consume=false, and says who it belongs to', async () => {
      const { userId, key, keyId } = await userWithKey();
      const first = await verify(t, key);
      expect(first.status).toBe(200);
      expect(first.headers['cache-control']).toBe('no-store');
      expect(first.body).toEqual({
        valid: true,
        key_id: keyId,
        owner_type: 'user',
        user_id: userId,
        username: expect.stringContaining('@'),
        email: expect.stringContaining('@'),
        scopes: ['chat:write', 'user:read'],
        plan,
        remaining_conversations: 9,
        credits: 0,
        resets_at: expect.any(String),
      });
      expect((await verify(t, key, { consume: false })).body.remaining_conversations).toBe(9);
      const viaQuery = await request(t.callback)
        .post('/api/v1/auth/verify-key?consume=false')
        .set('X-API-Key', key);
      expect(viaQuery.body.remaining_conversations).toBe(9);
      expect((await verify(t, key)).body.remaining_conversations).toBe(8);
    });

    it('answers 401 for a missing, malformed, unknown or tampered key', async () => {
      const { key } = await userWithKey();
      expectError(await request(t.callback).post('/api/v1/auth/verify-key'), 401, 'API_KEY_MISSING');
      expectError(await verify(t, 'not-a-key'), 401, 'API_KEY_INVALID');
      const tampered = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      expectError(await verify(t, tampered), 401, 'API_KEY_INVALID');
      expectError(await verify(t, `sk_live_${'a'.repeat(12)}_${'A'.repeat(43)}`), 401, 'API_KEY_INVALID');
    });

    it('stops a revoked or rotated key at once, and an expired one; a suspended owner gets 403', async () => {
      const { userId, key, keyId } = await userWithKey();
      expect((await verify(t, key)).status).toBe(200);
      const rotated = await admin.post(`/v2/users/${userId}/api-keys/${keyId}/rotate`);
      expect(rotated.status).toBe(200);
      expect(rotated.body).toMatchObject({ id: keyId, key: expect.stringMatching(KEY_SHAPE) });
      expectError(await verify(t, key), 401, 'API_KEY_INVALID');
      const fresh = rotated.body.key as string;
      expect((await verify(t, fresh)).status).toBe(200);

      expect((await admin.delete(`/v2/users/${userId}/api-keys/${keyId}`)).status).toBe(204);
      expectError(await verify(t, fresh), 401, 'API_KEY_INVALID');
      const listed = await admin.get(`/v2/users/${userId}/api-keys/${keyId}`);
      expect(listed.body.revoked_at).toEqual(expect.any(String));
      expectError(
        await admin.post(`/v2/users/${userId}/api-keys/${keyId}/rotate`),
        422,
        'BUSINESS_RULE_VIOLATION',
      );

      const other = await admin.post(`/v2/users/${userId}/api-keys`, { name: 'soon' });
      const record = await t.stores.durable.apiKeys.update(other.body.id, {
        expires_at: new Date(Date.now() - 1000),
      });
      await t.services.apiKeys.invalidate(record!.lookup_id);
      expectError(await verify(t, other.body.key), 401, 'API_KEY_EXPIRED');

      const third = await admin.post(`/v2/users/${userId}/api-keys`, { name: 'third' });
      expect((await verify(t, third.body.key)).status).toBe(200);
      expect((await admin.put(`/v2/users/${userId}`, { status: 'suspended' })).status).toBe(200);
      expectError(await verify(t, third.body.key), 403, 'USER_INACTIVE');
    });

    it('honours the IP allow-list with IPv4, IPv6 and CIDR ranges (the client address behind TRUST_PROXY)', async () => {
      const { key } = await userWithKey({ allowed_ips: ['203.0.113.7', '10.0.0.0/8', '2001:db8::/32'] });
      for (const ip of ['203.0.113.7', '10.20.30.40', '2001:db8::1', '2001:db8:ffff::42']) {
        expect({ ip, status: (await verify(t, key, { ip, consume: false })).status }).toEqual({
          ip,
          status: 200,
        });
      }
      for (const ip of ['203.0.113.8', '11.0.0.1', '2001:db9::1', '::1']) {
        const res = await verify(t, key, { ip, consume: false });
        expect({ ip, status: res.status, code: res.body.error?.code }).toEqual({
          ip,
          status: 403,
          code: 'IP_NOT_ALLOWED',
        });
      }
    });

    it('grants exactly the quota to 100 concurrent calls: 10 successes, 90 QUOTA_EXCEEDED with when it resets', async () => {
      const { key } = await userWithKey();
      const results = await Promise.all(Array.from({ length: 100 }, () => verify(t, key)));
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 429);
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(90);
      expect(ok.map((r) => r.body.remaining_conversations).sort((a, b) => a - b)).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
      for (const res of refused) {
        expect(res.body.error.code).toBe('QUOTA_EXCEEDED');
        expect(res.body.error.resets_at).toBe(ok[0]!.body.resets_at);
        expect(res.headers['retry-after']).toBe(String(res.body.error.retry_after));
      }
    });

    it('resets the quota at the period boundary (clock moved, not slept) and lets admins adjust it', async () => {
      const dayPlan = `daily-${Date.now().toString(36)}`;
      expect(
        (
          await admin.post('/v2/plans', {
            name: dayPlan,
            requests_per_hour: 100_000,
            burst: 10_000,
            quota: 2,
            quota_period: 'day',
            credits: 1,
          })
        ).status,
      ).toBe(201);
      const { userId, key } = await userWithKey();
      expect((await admin.put(`/v2/users/${userId}/plan`, { plan: dayPlan })).status).toBe(200);
      const quotas = t.services.quotas;
      const realNow = quotas.now;
      try {
        quotas.now = () => new Date('2031-01-31T23:00:00Z');
        expect((await verify(t, key)).body).toMatchObject({ remaining_conversations: 1, credits: 1 });
        expect((await verify(t, key)).body).toMatchObject({ remaining_conversations: 0, credits: 1 });
        expect((await verify(t, key)).body).toMatchObject({ remaining_conversations: 0, credits: 0 });
        const used = await verify(t, key);
        expectError(used, 429, 'QUOTA_EXCEEDED');
        expect(used.body.error.resets_at).toBe('2031-02-01T00:00:00.000Z');
        expect(used.headers['retry-after']).toBe('3600');

        quotas.now = () => new Date('2031-02-01T00:00:00Z');
        expect((await verify(t, key)).body).toMatchObject({ remaining_conversations: 1, credits: 0 });

        const adjusted = await admin.put(`/v2/users/${userId}/usage`, {
          remaining_conversations: 40,
          credits: 5,
        });
        expect(adjusted.status).toBe(200);
        expect(adjusted.body).toMatchObject({
          plan: dayPlan,
          period_start: '2031-02-01T00:00:00.000Z',
          period_end: '2031-02-02T00:00:00.000Z',
          quota: 2,
          remaining_conversations: 40,
          used: 1,
          credits: 5,
        });
        expect((await verify(t, key)).body).toMatchObject({ remaining_conversations: 39, credits: 5 });
        const remainingOnly = await admin.put(`/v2/users/${userId}/usage`, { remaining_conversations: 3 });
        expect(remainingOnly.body).toMatchObject({ remaining_conversations: 3, credits: 5 });
        const creditsOnly = await admin.put(`/v2/users/${userId}/usage`, { credits: 0 });
        expect(creditsOnly.body).toMatchObject({ remaining_conversations: 3, credits: 0 });
        expectError(await admin.put(`/v2/users/${userId}/usage`, {}), 400, 'VALIDATION_ERROR');
      } finally {
        quotas.now = realNow;
      }
    });

    it('records usage once per idempotency key and totals it per day and per model', async () => {
      const { userId, key } = await userWithKey();
      const log = (model: string, idem?: string) => {
        const req = request(t.callback)
          .post('/api/v1/auth/log-message')
          .set('Authorization', `Bearer ${key}`);
        if (idem) req.set('Idempotency-Key', idem);
        return req.send({
          model,
          messages: [
            { role: 'user', content: 'Hello there' },
            { role: 'assistant', content: 'Hi!' },
          ],
          research_model: false,
        });
      };
      const first = await log('gpt-small', 'conv-1');
      expect(first.status).toBe(201);
      expect(first.body).toMatchObject({
        recorded: true,
        duplicate: false,
        message_count: 2,
        characters: 14,
      });
      const retry = await log('gpt-small', 'conv-1');
      expect(retry.status).toBe(200);
      expect(retry.body).toMatchObject({ id: first.body.id, recorded: false, duplicate: true });
      expect((await log('gpt-small')).status).toBe(201);
      expect((await log('gpt-large', 'conv-2')).status).toBe(201);
      const stored = await t.stores.durable.usage.summarize(
        'user',
        userId,
        new Date(0),
        new Date('2100-01-01'),
      );
      expect(stored.total).toBe(3);

      const usage = await admin.get(`/v2/users/${userId}/usage`);
      expect(usage.status).toBe(200);
      const today = new Date().toISOString().slice(0, 10);
      expect(usage.body).toMatchObject({
        user_id: userId,
        plan,
        remaining_conversations: 10,
        used: 0,
        total_messages_logged: 3,
        by_day: [{ date: today, count: 3 }],
        by_model: [
          { model: 'gpt-small', count: 2 },
          { model: 'gpt-large', count: 1 },
        ],
      });
      // Bodies are not kept unless USAGE_STORE_MESSAGES is on.
      const entry = await t.stores.durable.usage.record({
        ...{
          owner_type: 'user',
          owner_id: userId,
          key_id: null,
          model: 'm',
          message_count: 0,
          characters: 0,
        },
        research_model: false,
        messages: null,
        idempotency_key: 'conv-1',
        created_at: new Date(),
      });
      expect(entry).toMatchObject({ duplicate: true, entry: { messages: null } });
      const bad = await request(t.callback)
        .post('/api/v1/auth/log-message')
        .set('Authorization', `Bearer ${key}`)
        .send({ model: '', messages: 'nope' });
      expectError(bad, 400, 'VALIDATION_ERROR');
    });

    it('exchanges a key for an ordinary access token: introspectable, usable on /v2, refreshable, dead with the key', async () => {
      const { userId, key, keyId } = await userWithKey();
      const exchanged = await request(t.callback)
        .post('/v2/auth/token')
        .send({ api_key: key, grant_type: 'client_credentials' });
      expect(exchanged.status).toBe(200);
      expect(exchanged.body).toEqual({
        access_token: expect.any(String),
        token_type: 'Bearer',
        expires_in: 86400,
        scope: 'chat:write user:read',
      });
      const token = exchanged.body.access_token as string;

      const resourceServer = await registerServiceClient(t, { scope: 'user:read' });
      const introspect = (value: string) =>
        request(t.callback)
          .post('/oauth/introspect')
          .auth(resourceServer.clientId, resourceServer.clientSecret)
          .type('form')
          .send({ token: value });
      expect((await introspect(token)).body).toMatchObject({
        active: true,
        sub: userId,
        client_id: 'latchkey-api-keys',
        scope: 'chat:write user:read',
      });
      // The token is a user token: /v2 accepts it within the user's permissions, and the user
      // reaches their own keys and usage without key:manage.
      const asUser = new AdminApi(t, token);
      expect((await asUser.get('/v2/users')).status).toBe(200);
      expect((await asUser.get(`/v2/users/${userId}/api-keys`)).status).toBe(200);
      expect((await asUser.get(`/v2/users/${userId}/usage`)).status).toBe(200);
      const stranger = await admin.createUser();
      expectError(await asUser.get(`/v2/users/${stranger.id}/api-keys`), 403, 'AUTH_INSUFFICIENT_SCOPE');

      const refreshed = await request(t.callback)
        .post('/v2/auth/refresh')
        .set('Authorization', `Bearer ${token}`);
      expect(refreshed.status).toBe(200);
      expect(refreshed.body.access_token).not.toBe(token);
      expect(refreshed.body.scope).toBe('chat:write user:read');
      const notFromKey = await request(t.callback)
        .post('/v2/auth/refresh')
        .set('Authorization', `Bearer ${admin.token}`);
      expectError(notFromKey, 401, 'AUTH_TOKEN_INVALID');

      const viaGrant = await request(t.callback)
        .post('/oauth/token')
        .type('form')
        .send({ grant_type: API_KEY_GRANT, api_key: key, client_id: 'latchkey-api-keys' });
      expect(viaGrant.status).toBe(200);
      expect(viaGrant.body).toMatchObject({ token_type: 'Bearer', scope: 'chat:write user:read' });
      const badGrant = await request(t.callback)
        .post('/oauth/token')
        .type('form')
        .send({ grant_type: API_KEY_GRANT, api_key: 'sk_live_nope', client_id: 'latchkey-api-keys' });
      expect(badGrant.status).toBe(400);
      expect(badGrant.body.error).toBe('invalid_grant');

      const audit = await admin.get('/v2/audit', { target_id: keyId });
      expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual(
        expect.arrayContaining(['api_key.created', 'api_key.token_issued', 'api_key.token_refreshed']),
      );

      expect((await admin.delete(`/v2/users/${userId}/api-keys/${keyId}`)).status).toBe(204);
      expect((await introspect(token)).body).toEqual({ active: false });
      expect((await introspect(viaGrant.body.access_token)).body).toEqual({ active: false });
      expectError(await asUser.get('/v2/users'), 401, 'AUTH_TOKEN_INVALID');
      expectError(
        await request(t.callback).post('/v2/auth/token').send({ api_key: key }),
        401,
        'API_KEY_INVALID',
      );
    });

    it('gives service clients keys within their scopes, exchanged for client-credentials tokens', async () => {
      const service = await registerServiceClient(t, { scope: 'user:read' });
      const created = await admin.post(`/v2/clients/${service.clientId}/api-keys`, { name: 'worker' });
      expect(created.status).toBe(201);
      expect(created.body.scopes).toEqual(['user:read']);
      const verified = await verify(t, created.body.key, { consume: false });
      expect(verified.body).toMatchObject({ owner_type: 'client', client_id: service.clientId });
      const exchanged = await request(t.callback).post('/v2/auth/token').send({ api_key: created.body.key });
      expect(exchanged.status).toBe(200);
      expect((await new AdminApi(t, exchanged.body.access_token).get('/v2/users')).status).toBe(200);
      expectError(
        await admin.post(`/v2/clients/${service.clientId}/api-keys`, { name: 'x', scopes: ['user:write'] }),
        422,
        'BUSINESS_RULE_VIOLATION',
      );
    });

    it('manages plans: built-ins listed and protected, custom ones created, changed and deleted when unused', async () => {
      const list = await admin.get('/v2/plans');
      expect(list.body.data.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(['basic', 'enterprise', 'professional', plan]),
      );
      expect(list.body.data.find((p: { name: string }) => p.name === 'basic')).toMatchObject({
        requests_per_hour: 1000,
        burst: 50,
        built_in: true,
      });
      expectError(await admin.delete('/v2/plans/basic'), 422, 'BUSINESS_RULE_VIOLATION');
      expectError(await admin.delete(`/v2/plans/${plan}`), 422, 'BUSINESS_RULE_VIOLATION');
      expectError(await admin.get('/v2/plans/nope'), 404, 'PLAN_NOT_FOUND');
      expectError(
        await admin.post('/v2/plans', {
          name: plan,
          requests_per_hour: 1,
          burst: 1,
          quota: 1,
          quota_period: 'day',
          credits: 0,
        }),
        409,
        'CONFLICT',
      );
      const name = `tmp-${Date.now().toString(36)}`;
      const body = { name, requests_per_hour: 5, burst: 1, quota: 1, quota_period: 'week', credits: 0 };
      expectError(await admin.post('/v2/plans', body), 400, 'VALIDATION_ERROR');
      expect((await admin.post('/v2/plans', { ...body, quota_period: 'day' })).status).toBe(201);
      expect((await admin.put(`/v2/plans/${name}`, { quota: 7 })).body).toMatchObject({
        quota: 7,
        requests_per_hour: 5,
      });
      const professional = await admin.put('/v2/plans/professional', { credits: 3 });
      expect(professional.body).toMatchObject({
        name: 'professional',
        credits: 3,
        built_in: true,
        requests_per_hour: 10000,
      });
      expect((await admin.delete(`/v2/plans/${name}`)).status).toBe(204);
      // The URL's user exists: a plan that does not is a 422 naming the field, not a 404.
      const gone = await admin.put(`/v2/users/${(await admin.createUser()).id}/plan`, { plan: name });
      expectError(gone, 422, 'BUSINESS_RULE_VIOLATION');
      expect(gone.body.error.details).toEqual([{ field: 'plan', issue: 'Unknown plan', provided: name }]);
      const limited = await adminApi(t, { scope: 'user:read' });
      expectError(await limited.get('/v2/plans'), 403, 'AUTH_INSUFFICIENT_SCOPE');
    });
  },
);

(REDIS_URL ? describe : describe.skip)('API keys across two instances sharing Redis', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    a = await createTestApp({ shortLived: 'redis', durable: 'embedded' });
    b = await createTestApp({ shortLived: 'redis', durable: 'embedded', shareWith: a });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('a key revoked on one instance is refused by the other at once, though it had cached it', async () => {
    const admin = await adminApi(a);
    const user = await admin.createUser();
    const created = await admin.post(`/v2/users/${user.id}/api-keys`, { name: 'shared' });
    expect(created.status).toBe(201);
    expect((await verify(b, created.body.key, { consume: false })).status).toBe(200); // now cached on B
    expect((await admin.delete(`/v2/users/${user.id}/api-keys/${created.body.id}`)).status).toBe(204);
    // Pub/sub delivery is asynchronous: allow it a bounded moment, then require the refusal.
    const deadline = Date.now() + 2000;
    let status = 200;
    while (Date.now() < deadline) {
      status = (await verify(b, created.body.key, { consume: false })).status;
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(status).toBe(401);
  });
});
