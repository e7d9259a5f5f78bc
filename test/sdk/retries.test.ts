/**
 * LatchkeyClient's HTTP behaviour against a real local HTTP server that answers from a script: which
 * failures are retried and which are not, the waits chosen (full-jitter backoff, or the server's
 * Retry-After, capped), timeouts, the LatchkeyError of a final failure, and the client-credentials
 * token cache. Waits are asserted on the values handed to an injected sleep, never on wall time.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';

import {
  LatchkeyClient,
  LatchkeyError,
  parseRetryAfter,
  type LatchkeyClientOptions,
} from '../../src/sdk/index.js';
import { envelope, startScriptedServer, type ScriptedServer } from './scripted-server.js';

const USER = {
  id: 'usr_1',
  email: 'ada@example.com',
  first_name: 'Ada',
  last_name: 'Lovelace',
  role: 'user',
  status: 'active',
  email_verified: true,
  created_at: '2026-01-20T16:45:30Z',
  updated_at: '2026-01-20T16:45:30Z',
  last_login: null,
  metadata: {},
};

let server: ScriptedServer;
let sleeps: number[];

beforeAll(async () => {
  server = await startScriptedServer();
});
afterAll(() => server.close());
beforeEach(() => {
  server.reset();
  sleeps = [];
});

function client(over: Partial<LatchkeyClientOptions> = {}): LatchkeyClient {
  return new LatchkeyClient({
    baseUrl: server.url,
    token: 'test-token',
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...over,
  });
}

/** The LatchkeyError a promise rejects with. */
async function failureOf(promise: Promise<unknown>): Promise<LatchkeyError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof LatchkeyError)) throw new Error(`expected a LatchkeyError, got ${String(err)}`);
  return err;
}

describe('LatchkeyClient retries', () => {
  it('retries a 429 after the Retry-After seconds, then returns the answer', async () => {
    server.script('GET', '/v2/users/usr_1', [
      { status: 429, headers: { 'retry-after': '3' }, body: envelope('RATE_LIMIT_EXCEEDED', 'Slow down') },
      { status: 200, body: USER },
    ]);
    await expect(client().users.get('usr_1')).resolves.toEqual(USER);
    expect(sleeps).toEqual([3000]);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /v2/users/usr_1',
      'GET /v2/users/usr_1',
    ]);
    expect(server.requests[1]!.headers.authorization).toBe('Bearer test-token');
  });

  it('retries a 503 twice with full-jitter backoff, then returns the answer', async () => {
    server.script('GET', '/v2/users/usr_1', [
      { status: 503, body: envelope('SERVICE_UNAVAILABLE', 'Down') },
      { status: 503, body: envelope('SERVICE_UNAVAILABLE', 'Down') },
      { status: 200, body: USER },
    ]);
    await expect(client({ baseDelayMs: 100 }).users.get('usr_1')).resolves.toEqual(USER);
    // random() = 0.5 of ceilings 100 and 200 ms.
    expect(sleeps).toEqual([50, 100]);
    expect(server.requests).toHaveLength(3);
  });

  it('caps the backoff ceiling at maxRetryDelayMs', async () => {
    server.script('GET', '/v2/roles', [
      { status: 502 },
      { status: 502 },
      { status: 502 },
      { status: 200, body: { data: [] } },
    ]);
    await expect(
      client({ baseDelayMs: 1000, maxRetryDelayMs: 1500, random: () => 0.999 }).roles.list(),
    ).resolves.toEqual([]);
    expect(sleeps).toEqual([999, 1498, 1498]);
  });

  it('honours Retry-After as an HTTP date', async () => {
    const soon = new Date(Date.now() + 3_600_000).toUTCString();
    server.script('GET', '/v2/users/usr_1', [
      { status: 503, headers: { 'retry-after': soon } },
      { status: 200, body: USER },
    ]);
    await expect(client({ maxRetryDelayMs: 7_200_000 }).users.get('usr_1')).resolves.toEqual(USER);
    // An HTTP date has whole seconds, and a second may tick between sending and reading it.
    expect(sleeps).toHaveLength(1);
    expect(sleeps[0]).toBeGreaterThanOrEqual(3_598_000);
    expect(sleeps[0]).toBeLessThanOrEqual(3_600_000);
  });

  it('throws at once when Retry-After asks for a longer wait than maxRetryDelayMs', async () => {
    server.script('GET', '/v2/users/usr_1', [
      { status: 429, headers: { 'retry-after': '120' }, body: envelope('RATE_LIMIT_EXCEEDED', 'Slow down') },
      { status: 200, body: USER },
    ]);
    const err = await failureOf(client({ maxRetryDelayMs: 60_000 }).users.get('usr_1'));
    expect(err).toMatchObject({ status: 429, code: 'RATE_LIMIT_EXCEEDED', retryAfter: 120 });
    expect(server.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('does not retry QUOTA_EXCEEDED, whatever its Retry-After', async () => {
    server.script('POST', '/api/v1/auth/verify-key', [
      {
        status: 429,
        headers: { 'retry-after': '1' },
        body: envelope('QUOTA_EXCEEDED', 'The quota is used up', { resets_at: '2026-01-21T00:00:00Z' }),
      },
      { status: 200, body: { valid: true } },
    ]);
    const err = await failureOf(client().verifyKey('sk_test_abc', { consume: false }));
    expect(err).toMatchObject({ status: 429, code: 'QUOTA_EXCEEDED', retryAfter: 1 });
    expect(err.data).toMatchObject({ resets_at: '2026-01-21T00:00:00Z' });
    expect(server.requests).toHaveLength(1);
  });

  it('uses retry_after of the error body when there is no Retry-After header', async () => {
    server.script('GET', '/v2/users/usr_1', [
      { status: 429, body: envelope('RATE_LIMIT_EXCEEDED', 'Slow down', { retry_after: 7 }) },
      { status: 200, body: USER },
    ]);
    await client().users.get('usr_1');
    expect(sleeps).toEqual([7000]);
  });

  it('gives up after the configured retries with the fields of the last error envelope', async () => {
    server.script('GET', '/v2/users/usr_1', [
      {
        status: 503,
        headers: { 'retry-after': '2', 'x-request-id': 'req_header' },
        body: envelope('SERVICE_UNAVAILABLE', 'The service is temporarily unavailable', {
          details: [{ field: 'store', issue: 'unreachable' }],
        }),
      },
    ]);
    const err = await failureOf(client({ retries: 2 }).users.get('usr_1'));
    expect(err).toMatchObject({
      name: 'LatchkeyError',
      status: 503,
      code: 'SERVICE_UNAVAILABLE',
      message: 'The service is temporarily unavailable',
      details: [{ field: 'store', issue: 'unreachable' }],
      requestId: 'req_test123',
      retryAfter: 2,
    });
    expect(err.data).toMatchObject({ timestamp: '2026-01-20T16:45:30Z' });
    expect(server.requests).toHaveLength(3);
    expect(sleeps).toEqual([2000, 2000]);
  });

  it('does not retry client errors, and maps their envelope (404 USER_NOT_FOUND)', async () => {
    server.script('GET', '/v2/users/nope', [
      { status: 404, body: envelope('USER_NOT_FOUND', 'User not found') },
    ]);
    const err = await failureOf(client().users.get('nope'));
    expect(err).toMatchObject({
      status: 404,
      code: 'USER_NOT_FOUND',
      message: 'User not found',
      retryAfter: undefined,
    });
    expect(server.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('does not retry a POST without an Idempotency-Key after a network error', async () => {
    server.script('POST', '/v2/users', ['drop', { status: 201, body: USER }]);
    const err = await failureOf(
      client().users.create({ email: 'ada@example.com', first_name: 'Ada', last_name: 'Lovelace' }),
    );
    expect(err).toMatchObject({ status: 0, code: 'NETWORK_ERROR' });
    expect(server.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('does not retry a POST without an Idempotency-Key after a 500, but does after a 503', async () => {
    server.script('POST', '/v2/users', [{ status: 500, body: envelope('INTERNAL_ERROR', 'Oops') }]);
    const input = { email: 'ada@example.com', first_name: 'Ada', last_name: 'Lovelace' };
    expect(await failureOf(client().users.create(input))).toMatchObject({
      status: 500,
      code: 'INTERNAL_ERROR',
    });
    expect(server.requests).toHaveLength(1);

    server.reset();
    server.script('POST', '/v2/users', [{ status: 503 }, { status: 201, body: USER }]);
    await expect(client().users.create(input)).resolves.toEqual(USER);
    expect(server.requests).toHaveLength(2);
  });

  it('retries a POST with an Idempotency-Key after a network error, sending the same key', async () => {
    server.script('POST', '/v2/users', ['drop', { status: 201, body: USER }]);
    const created = await client().users.create(
      { email: 'ada@example.com', first_name: 'Ada', last_name: 'Lovelace' },
      { idempotencyKey: 'create-ada-1' },
    );
    expect(created).toEqual(USER);
    expect(server.requests.map((r) => r.headers['idempotency-key'])).toEqual([
      'create-ada-1',
      'create-ada-1',
    ]);
    expect(JSON.parse(server.requests[1]!.body)).toEqual({
      email: 'ada@example.com',
      first_name: 'Ada',
      last_name: 'Lovelace',
    });
    expect(sleeps).toHaveLength(1);
  });

  it('retries a GET that times out, and reports TIMEOUT when every attempt does', async () => {
    server.script('GET', '/v2/users/usr_1', ['hang', { status: 200, body: USER }]);
    await expect(client({ timeoutMs: 150 }).users.get('usr_1')).resolves.toEqual(USER);
    expect(server.requests).toHaveLength(2);

    server.reset();
    sleeps = [];
    server.script('GET', '/v2/users/usr_1', ['hang']);
    const err = await failureOf(client({ timeoutMs: 100, retries: 1 }).users.get('usr_1'));
    expect(err).toMatchObject({ status: 0, code: 'TIMEOUT' });
    expect(err.message).toBe('No answer to GET /v2/users/usr_1 within 100 ms');
    expect(server.requests).toHaveLength(2);
    expect(sleeps).toHaveLength(1);
  });

  it('does not retry a timed-out POST without an Idempotency-Key (verify-key consuming quota)', async () => {
    server.script('POST', '/api/v1/auth/verify-key', ['hang']);
    const err = await failureOf(client({ timeoutMs: 100 }).verifyKey('sk_test_abc'));
    expect(err).toMatchObject({ status: 0, code: 'TIMEOUT' });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!.headers.authorization).toBe('Bearer sk_test_abc');
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ consume: true });
  });

  it('retries verify-key with consume: false after a network error, since it consumes nothing', async () => {
    const valid = { valid: true, key_id: 'key_1', owner_type: 'user', scopes: [], plan: 'basic' };
    server.script('POST', '/api/v1/auth/verify-key', ['drop', { status: 200, body: valid }]);
    await expect(client().verifyKey('sk_test_abc', { consume: false })).resolves.toEqual(valid);
    expect(server.requests.map((r) => JSON.parse(r.body))).toEqual([{ consume: false }, { consume: false }]);
  });

  it('reads an OAuth error from the token endpoint as a LatchkeyError', async () => {
    server.script('POST', '/oauth/token', [
      { status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } },
    ]);
    const err = await failureOf(
      client({ token: undefined, clientCredentials: { clientId: 'svc', clientSecret: 's' } }).users.get(
        'usr_1',
      ),
    );
    expect(err).toMatchObject({
      status: 401,
      code: 'invalid_client',
      message: 'client authentication failed',
    });
    expect(server.requests.map((r) => r.path)).toEqual(['/oauth/token']);
  });
});

describe('LatchkeyClient client credentials', () => {
  it('fetches one token with client_secret_basic, reuses it, and fetches a new one after a 401', async () => {
    server.script('POST', '/oauth/token', [
      { status: 200, body: { access_token: 'tok-1', token_type: 'Bearer', expires_in: 3600 } },
      { status: 200, body: { access_token: 'tok-2', token_type: 'Bearer', expires_in: 3600 } },
    ]);
    server.script('GET', '/v2/users/usr_1', [
      { status: 200, body: USER },
      { status: 200, body: USER },
      { status: 401, body: envelope('AUTH_TOKEN_INVALID', 'The access token is invalid') },
      { status: 200, body: USER },
    ]);
    const c = client({
      token: undefined,
      clientCredentials: { clientId: 'svc:1', clientSecret: 'p@ss word', scope: 'user:read' },
    });
    await Promise.all([c.users.get('usr_1'), c.users.get('usr_1')]);
    await c.users.get('usr_1');

    const tokenRequests = server.requests.filter((r) => r.path === '/oauth/token');
    expect(tokenRequests).toHaveLength(2);
    // RFC 6749 §2.3.1: form-encoded, then joined and base64-encoded.
    expect(tokenRequests[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from('svc%3A1:p%40ss+word').toString('base64')}`,
    );
    expect(Object.fromEntries(new URLSearchParams(tokenRequests[0]!.body))).toEqual({
      grant_type: 'client_credentials',
      scope: 'user:read',
    });
    const apiAuth = server.requests
      .filter((r) => r.path === '/v2/users/usr_1')
      .map((r) => r.headers.authorization);
    expect(apiAuth).toEqual(['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2']);
  });

  it('refuses more than one token source', () => {
    expect(() => new LatchkeyClient({ baseUrl: server.url, token: 't', getToken: async () => 'u' })).toThrow(
      'Give only one of token, getToken and clientCredentials',
    );
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-20T16:45:30Z');
  it.each([
    ['120', 120],
    ['0', 0],
    ['Tue, 20 Jan 2026 16:46:00 GMT', 30],
    ['Tue, 20 Jan 2026 16:40:00 GMT', 0],
    ['soon', undefined],
    [null, undefined],
  ])('reads %p as %p seconds', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds);
  });
});
