/**
 * LatchkeyClient's API-key, plan, usage and gateway calls against the real Latchkey server: a key is
 * created, listed, exchanged for an access token, verified (with and without consuming quota), used
 * to log messages idempotently, rotated and revoked; plans and usage are read and adjusted.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { LatchkeyClient, LatchkeyError, type User } from '../../src/sdk/index.js';
import { ALL_ADMIN_SCOPES, registerServiceClient } from '../helpers/admin-api.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const tag = () => randomBytes(4).toString('hex');

async function failureOf(promise: Promise<unknown>): Promise<LatchkeyError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof LatchkeyError)) throw new Error(`expected a LatchkeyError, got ${String(err)}`);
  return err;
}

describe('LatchkeyClient API keys, plans and usage against a Latchkey server', () => {
  let server: TestServer;
  let client: LatchkeyClient;
  let user: User;
  beforeAll(async () => {
    server = await startTestServer();
    const service = await registerServiceClient(server.t);
    client = new LatchkeyClient({
      baseUrl: server.url,
      clientCredentials: { ...service, scope: ALL_ADMIN_SCOPES },
    });
    const role = await client.roles.create({
      name: `keys-${tag()}`,
      permissions: ['user:read', 'things:read'],
    });
    user = await client.users.create({
      email: `keys-${tag()}@example.com`,
      first_name: 'Key',
      last_name: 'Holder',
      role: role.name,
    });
  });
  afterAll(() => server.close());

  it('creates, lists, rotates and revokes a user’s API key', async () => {
    const issued = await client.apiKeys.create(user.id, { name: 'CI', scopes: ['things:read'] });
    expect(issued).toMatchObject({
      id: expect.any(String),
      name: 'CI',
      key: expect.stringMatching(/^sk_live_/),
      scopes: ['things:read'],
      allowed_ips: [],
      expires_at: null,
      revoked_at: null,
    });
    expect(issued.key.startsWith(issued.prefix)).toBe(true);
    const listed = await client.apiKeys.list(user.id);
    expect(listed.map((k) => k.id)).toContain(issued.id);
    expect(listed.find((k) => k.id === issued.id)).not.toHaveProperty('key');

    const rotated = await client.apiKeys.rotate(user.id, issued.id);
    expect(rotated.id).toBe(issued.id);
    expect(rotated.key).not.toBe(issued.key);
    expect(await failureOf(client.verifyKey(issued.key, { consume: false }))).toMatchObject({
      status: 401,
      code: 'API_KEY_INVALID',
    });
    expect(await client.verifyKey(rotated.key, { consume: false })).toMatchObject({
      valid: true,
      key_id: issued.id,
    });

    await client.apiKeys.revoke(user.id, issued.id);
    expect((await client.apiKeys.get(user.id, issued.id)).revoked_at).toEqual(expect.any(String));
    expect(await failureOf(client.verifyKey(rotated.key))).toMatchObject({
      status: 401,
      code: 'API_KEY_INVALID',
    });
  });

  it('verifies a key, consuming quota only when asked to, and reads the usage it leaves', async () => {
    const { key } = await client.apiKeys.create(user.id, { name: 'verify', scopes: ['things:read'] });
    const first = await client.verifyKey(key, { consume: false });
    expect(first).toMatchObject({
      valid: true,
      owner_type: 'user',
      user_id: user.id,
      email: user.email,
      scopes: ['things:read'],
      plan: expect.any(String),
      remaining_conversations: expect.any(Number),
      resets_at: expect.any(String),
    });
    const consumed = await client.verifyKey(key);
    expect(consumed.remaining_conversations).toBe(first.remaining_conversations - 1);
    expect((await client.verifyKey(key, { consume: false })).remaining_conversations).toBe(
      consumed.remaining_conversations,
    );

    const usage = await client.usage.get(user.id);
    expect(usage).toMatchObject({
      user_id: user.id,
      remaining_conversations: consumed.remaining_conversations,
    });
    const adjusted = await client.usage.set(user.id, { remaining_conversations: 2, credits: 0 });
    expect(adjusted).toMatchObject({ remaining_conversations: 2, credits: 0 });
    await client.verifyKey(key);
    await client.verifyKey(key);
    const exhausted = await failureOf(client.verifyKey(key));
    expect(exhausted).toMatchObject({ status: 429, code: 'QUOTA_EXCEEDED', retryAfter: expect.any(Number) });
    expect(exhausted.data).toMatchObject({ resets_at: expect.any(String) });
    await client.usage.set(user.id, { remaining_conversations: 100, credits: 0 });
  });

  it('logs a message once per Idempotency-Key', async () => {
    const { key } = await client.apiKeys.create(user.id, { name: 'logger' });
    const message = { model: 'gpt-test', messages: [{ role: 'user', content: 'Hello' }] };
    const idempotencyKey = `log-${tag()}`;
    const first = await client.logMessage(key, message, { idempotencyKey });
    expect(first).toMatchObject({ recorded: true, duplicate: false, model: 'gpt-test', user_id: user.id });
    const again = await client.logMessage(key, message, { idempotencyKey });
    expect(again).toMatchObject({ id: first.id, recorded: false, duplicate: true });
    const usage = await client.usage.get(user.id);
    expect(usage.by_model).toContainEqual({ model: 'gpt-test', count: 1 });
  });

  it('exchanges a key for an access token carrying its scopes, and refreshes it', async () => {
    const { key } = await client.apiKeys.create(user.id, { name: 'token', scopes: ['user:read'] });
    const token = await client.auth.token(key);
    expect(token).toEqual({
      access_token: expect.any(String),
      token_type: 'Bearer',
      expires_in: expect.any(Number),
      scope: 'user:read',
    });
    // The token works as the SDK's bearer token.
    const asKeyHolder = new LatchkeyClient({ baseUrl: server.url, token: token.access_token });
    expect((await asKeyHolder.users.get(user.id)).id).toBe(user.id);
    const refreshed = await client.auth.refresh(token.access_token);
    expect(refreshed).toMatchObject({ token_type: 'Bearer', scope: 'user:read' });
    expect(refreshed.access_token).not.toBe(token.access_token);
    expect(await failureOf(client.auth.token('sk_live_nope'))).toMatchObject({
      status: 401,
      code: 'API_KEY_INVALID',
    });
  });

  it('lists, creates and assigns plans', async () => {
    const builtIn = await client.plans.list();
    expect(builtIn.map((p) => p.name)).toEqual(
      expect.arrayContaining(['basic', 'professional', 'enterprise']),
    );
    const name = `plan-${tag()}`;
    const plan = await client.plans.create({
      name,
      requests_per_hour: 500,
      burst: 20,
      quota: 50,
      quota_period: 'day',
      credits: 5,
    });
    expect(plan).toMatchObject({ name, quota: 50, built_in: false });
    expect(await client.plans.update(name, { quota: 60 })).toMatchObject({ name, quota: 60 });
    expect(await client.plans.assign(user.id, name)).toMatchObject({ user_id: user.id, plan: name });
    expect((await client.usage.get(user.id)).plan).toBe(name);
    expect(await failureOf(client.plans.get('no-such-plan'))).toMatchObject({
      status: 404,
      code: 'PLAN_NOT_FOUND',
    });
  });
});
