/**
 * Rate limits of /v2: the X-RateLimit-* headers on every answer, 429 RATE_LIMIT_EXCEEDED with
 * retry_after and Retry-After once a client's plan allowance (hourly, or per second) is used up, on
 * one instance with each counter backend, and across two instances sharing Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { AdminApi, adminApi, clientToken, registerServiceClient } from '../helpers/admin-api.js';
import { describeWithBackend, REDIS_URL } from '../helpers/backends.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

type Response = Awaited<ReturnType<AdminApi['get']>>;

function limits(res: Response) {
  return {
    limit: res.headers['x-ratelimit-limit'],
    remaining: res.headers['x-ratelimit-remaining'],
    reset: res.headers['x-ratelimit-reset'],
    window: res.headers['x-ratelimit-window'],
  };
}

function expectRefused(res: Response, message: string) {
  expect(res.status).toBe(429);
  expect(res.body.error).toEqual({
    code: 'RATE_LIMIT_EXCEEDED',
    message,
    retry_after: expect.any(Number),
    request_id: res.headers['x-request-id'],
    timestamp: expect.any(String),
  });
  expect(res.headers['retry-after']).toBe(String(res.body.error.retry_after));
}

const nowS = () => Math.floor(Date.now() / 1000);

describe.each(availableBackends())(
  '/v2 rate limits on one instance with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { TRUST_PROXY: 'true' } });
    });
    afterAll(() => t.close());

    it('every /v2 answer carries X-RateLimit-Limit, -Remaining, -Reset and -Window, counted per client', async () => {
      const api = await adminApi(t, { plan: 'basic' });
      const first = await api.get('/v2/users');
      expect(first.status).toBe(200);
      const reset = Number(first.headers['x-ratelimit-reset']);
      expect(reset).toBeGreaterThanOrEqual(nowS());
      expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 3600);
      expect(limits(first)).toEqual({
        limit: '1000',
        remaining: '999',
        reset: String(reset),
        window: '3600',
      });

      // Errors count and carry the headers too: 404, 400, 403, 409.
      const notFound = await api.get('/v2/users/usr_nobody');
      expect(notFound.status).toBe(404);
      const invalid = await api.get('/v2/users', { limit: 0 });
      expect(invalid.status).toBe(400);
      const user = await api.createUser();
      const conflict = await api.post('/v2/users', { email: user.email, first_name: 'A', last_name: 'B' });
      expect(conflict.status).toBe(409);
      const narrow = new AdminApi(t, await clientToken(t, api.client!, { scope: 'user:read' }), api.client);
      const forbidden = await narrow.post('/v2/users', {});
      expect(forbidden.status).toBe(403);
      const remaining = [notFound, invalid, conflict, forbidden].map((r) => limits(r));
      expect(remaining).toEqual([
        { limit: '1000', remaining: '998', reset: String(reset), window: '3600' },
        { limit: '1000', remaining: '997', reset: String(reset), window: '3600' },
        { limit: '1000', remaining: '995', reset: String(reset), window: '3600' }, // createUser was 996
        { limit: '1000', remaining: '994', reset: String(reset), window: '3600' },
      ]);

      // Another client has its own allowance, from its own plan.
      const pro = await adminApi(t, { plan: 'professional' });
      expect(limits(await pro.get('/v2/users'))).toMatchObject({ limit: '10000', remaining: '9999' });
    });

    it('unauthenticated and refused-token answers carry the headers, counted per address on the small anonymous budget', async () => {
      const address = '203.0.113.77';
      const missing = await request(t.callback).get('/v2/users').set('X-Forwarded-For', address);
      expect(missing.status).toBe(401);
      expect(missing.headers['x-ratelimit-plan']).toBe('anonymous');
      expect(limits(missing)).toMatchObject({ limit: '300', remaining: '299', window: '3600' });
      const garbage = await request(t.callback)
        .get('/v2/roles')
        .set('X-Forwarded-For', address)
        .set('Authorization', 'Bearer garbage');
      expect(garbage.status).toBe(401);
      expect(limits(garbage)).toMatchObject({ limit: '300', remaining: '298', window: '3600' });
      const docs = await request(t.callback).get('/v2/openapi.json').set('X-Forwarded-For', address);
      expect(docs.status).toBe(200);
      expect(limits(docs)).toMatchObject({ limit: '300', remaining: '297', window: '3600' });
    });

    describe('a client on the enterprise plan with a small hourly limit', () => {
      let small: TestApp;
      beforeAll(async () => {
        small = await createTestApp({
          durable,
          shortLived,
          env: { RATE_LIMIT_ENTERPRISE_PER_HOUR: '5', RATE_LIMIT_ENTERPRISE_BURST: '1000' },
        });
      });
      afterAll(() => small.close());

      it('/v2 answers 429 RATE_LIMIT_EXCEEDED with retry_after and Retry-After once the hourly limit is used up', async () => {
        const api = await adminApi(small, { plan: 'enterprise' });
        const remaining: string[] = [];
        for (let i = 0; i < 5; i += 1) {
          const res = await api.get('/v2/users');
          expect(res.status).toBe(200);
          remaining.push(res.headers['x-ratelimit-remaining']!);
        }
        expect(remaining).toEqual(['4', '3', '2', '1', '0']);
        const refused = await api.get('/v2/users');
        expectRefused(refused, 'The hourly limit of 5 requests of the enterprise plan is used up');
        expect(refused.body.error.retry_after).toBeGreaterThanOrEqual(3590);
        expect(refused.body.error.retry_after).toBeLessThanOrEqual(3600);
        expect(limits(refused)).toMatchObject({ limit: '5', remaining: '0', window: '3600' });
        // Refused before anything else: a write is not carried out.
        const write = await api.post('/v2/users', {
          email: 'limited@example.com',
          first_name: 'A',
          last_name: 'B',
        });
        expect(write.status).toBe(429);
        expect(await small.stores.durable.users.findByEmail('limited@example.com')).toBeNull();

        // Other clients are not affected.
        const other = await adminApi(small, { plan: 'enterprise' });
        expect((await other.get('/v2/users')).status).toBe(200);
      });
    });

    describe('a client on the enterprise plan with a small burst limit', () => {
      let bursty: TestApp;
      beforeAll(async () => {
        bursty = await createTestApp({
          durable,
          shortLived,
          env: { RATE_LIMIT_ENTERPRISE_PER_HOUR: '1000', RATE_LIMIT_ENTERPRISE_BURST: '3' },
        });
      });
      afterAll(() => bursty.close());

      it('/v2 answers 429 RATE_LIMIT_EXCEEDED to requests beyond the burst allowance within one second', async () => {
        const api = await adminApi(bursty, { plan: 'enterprise' });
        const answers = await Promise.all(Array.from({ length: 7 }, () => api.get('/v2/users')));
        const refused = answers.filter((r) => r.status === 429);
        expect(answers.filter((r) => r.status === 200)).toHaveLength(3);
        expect(refused).toHaveLength(4);
        for (const res of refused) {
          expectRefused(
            res,
            "More than 3 requests within one second (the enterprise plan's burst allowance)",
          );
          expect(res.body.error.retry_after).toBe(1);
        }
      });
    });
  },
);

const durables = [...new Set(availableBackends().map((b) => b.durable))];

describeWithBackend('/v2 rate limits across two instances sharing Redis', 'REDIS_URL', REDIS_URL, () => {
  describe.each(durables)('with durable=%s', (durable) => {
    /** Two instances on one data set and one Redis key space, as behind a load balancer. */
    async function pair(env: Record<string, string>): Promise<[TestApp, TestApp]> {
      const a = await createTestApp({ durable, shortLived: 'redis', env });
      const b = await createTestApp({ durable, shortLived: 'redis', env, shareWith: a });
      return [a, b];
    }
    let hourly: [TestApp, TestApp];
    let burst: [TestApp, TestApp];
    beforeAll(async () => {
      hourly = await pair({ RATE_LIMIT_ENTERPRISE_PER_HOUR: '6', RATE_LIMIT_ENTERPRISE_BURST: '1000' });
      burst = await pair({ RATE_LIMIT_ENTERPRISE_PER_HOUR: '1000', RATE_LIMIT_ENTERPRISE_BURST: '4' });
    });
    afterAll(async () => {
      for (const [a, b] of [hourly, burst]) {
        await b?.close();
        await a?.close();
      }
    });

    it('two instances count one client’s requests together and refuse with 429 once the total passes the hourly limit', async () => {
      const [a, b] = hourly;
      const client = await registerServiceClient(a, { plan: 'enterprise' });
      const token = await clientToken(a, client);
      const onA = new AdminApi(a, token);
      const onB = new AdminApi(b, token);
      const seen: { status: number; remaining: string; reset: string }[] = [];
      for (let i = 0; i < 6; i += 1) {
        const res = await (i % 2 ? onB : onA).get('/v2/users');
        seen.push({
          status: res.status,
          remaining: res.headers['x-ratelimit-remaining']!,
          reset: res.headers['x-ratelimit-reset']!,
        });
      }
      expect(seen.map((s) => s.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(seen.map((s) => s.remaining)).toEqual(['5', '4', '3', '2', '1', '0']);
      // Both instances report the same window end.
      expect(new Set(seen.map((s) => s.reset)).size).toBe(1);

      for (const api of [onB, onA]) {
        const res = await api.get('/v2/users');
        expectRefused(res, 'The hourly limit of 6 requests of the enterprise plan is used up');
        expect(res.headers['x-ratelimit-limit']).toBe('6');
        expect(res.headers['x-ratelimit-reset']).toBe(seen[0]!.reset);
        expect(res.body.error.retry_after).toBeGreaterThan(3500);
      }
    });

    it('two instances share the burst allowance: parallel requests beyond it on either instance get 429', async () => {
      const [a, b] = burst;
      const client = await registerServiceClient(a, { plan: 'enterprise' });
      const token = await clientToken(a, client);
      const apis = [new AdminApi(a, token), new AdminApi(b, token)];
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => apis[i % 2]!.get('/v2/users')));
      expect(answers.filter((r) => r.status === 200)).toHaveLength(4);
      const refused = answers.filter((r) => r.status === 429);
      expect(refused).toHaveLength(4);
      for (const res of refused) {
        expectRefused(res, "More than 4 requests within one second (the enterprise plan's burst allowance)");
        expect(res.headers['retry-after']).toBe('1');
      }
    });
  });
});
