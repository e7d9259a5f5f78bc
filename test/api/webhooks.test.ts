/**
 * /v2/webhooks and delivery, end to end: real receivers on loopback ports (scripted to fail, hang,
 * answer 410 or redirect), real signatures checked with the `standardwebhooks` library and with the
 * receiver code of shared/API.md, retries on a short schedule, the SSRF guard at creation and at
 * delivery, secret rotation, test pings, and the endpoint's own deliveries list. Runs on every
 * backend combination this run has.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import crypto from 'node:crypto';

import { Webhook } from 'standardwebhooks';

import { adminApi, RFC3339, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';
import {
  receiverScripts,
  startReceiver,
  type ReceivedRequest,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

const SECRET = 'your_webhook_secret_0123';

/** The check of shared/API.md's receiver, unchanged (its Express handler's first lines). */
function apiMdAccepts(body: Buffer, headers: Record<string, string | undefined>, SECRET: string): boolean {
  const req = { body, headers };
  const expected = crypto.createHmac('sha256', SECRET).update(req.body.toString()).digest('hex');
  const given = String(req.headers['x-signature'] ?? '');
  if (
    given.length !== expected.length ||
    !crypto.timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(expected, 'hex'))
  )
    return false;
  return true;
}

const standardAccepts = (req: ReceivedRequest, secret: string): boolean => {
  const verifier = secret.startsWith('whsec_')
    ? new Webhook(secret)
    : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
  try {
    verifier.verify(req.body, {
      'webhook-id': req.headers['webhook-id']!,
      'webhook-timestamp': req.headers['webhook-timestamp']!,
      'webhook-signature': req.headers['webhook-signature']!,
    });
    return true;
  } catch {
    return false;
  }
};

// Every backend inline, and the embedded one with attempts signed and sent on the delivery thread.
const variants = [
  ...availableBackends().map((b) => ({ ...b, thread: 'false' })),
  { durable: 'embedded' as const, shortLived: 'embedded' as const, thread: 'true' },
];

describe.each(variants)(
  '/v2/webhooks with durable=$durable, short-lived=$shortLived, delivery thread=$thread',
  ({ durable, shortLived, thread }) => {
    let t: TestApp;
    let api: AdminApi;
    const receivers: WebhookReceiver[] = [];

    const receiver = async (script = receiverScripts.alwaysOk()) => {
      const r = await startReceiver(script);
      receivers.push(r);
      return r;
    };
    const subscribe = async (
      url: string,
      events: string[] = ['user.created'],
      extra: Record<string, unknown> = {},
    ) => {
      const res = await api.post('/v2/webhooks', { url, events, secret: SECRET, ...extra });
      expect(res.status).toBe(201);
      return res.body as { webhook_id: string };
    };
    const deliveries = async (id: string, query: Record<string, string> = {}) => {
      const res = await api.get(`/v2/webhooks/${id}/deliveries`, query);
      expect(res.status).toBe(200);
      return res.body.data as Record<string, unknown>[];
    };
    const eventually = async <T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> => {
      const until = Date.now() + 15_000;
      for (;;) {
        const value = await read();
        if (ok(value)) return value;
        if (Date.now() > until) throw new Error(`gave up waiting for ${what}: ${JSON.stringify(value)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    beforeAll(async () => {
      t = await createTestApp({
        durable,
        shortLived,
        env: {
          WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
          WEBHOOK_RETRY_SCHEDULE: '100ms,200ms',
          WEBHOOK_TIMEOUT_MS: '500',
          WEBHOOK_POLL_MS: '100',
          // Room for 4 hand-offs inline, 32 with the thread: the burst below overflows both.
          WEBHOOK_CONCURRENCY: '4',
          WEBHOOK_DELIVERY_THREAD: thread,
        },
      });
      api = await adminApi(t);
    });
    afterEach(async () => {
      // Endpoints of one test must not receive the next test's events.
      const list = await api.get('/v2/webhooks', { limit: '100' });
      for (const w of list.body.data as { webhook_id: string }[])
        await api.delete(`/v2/webhooks/${w.webhook_id}`);
    });
    afterAll(async () => {
      await t?.close();
      await Promise.all(receivers.map((r) => r.close()));
    });

    describe('endpoints', () => {
      it('creates an endpoint (201, Location, a generated whsec_ secret shown once) and reads, lists, updates and deletes it', async () => {
        const r = await receiver();
        const res = await api.post('/v2/webhooks', {
          url: r.url,
          events: ['user.created', 'user.updated'],
          active: true,
          description: 'CRM sync',
        });
        expect(res.status).toBe(201);
        expect(res.body).toEqual({
          webhook_id: expect.stringMatching(/^wh_/),
          url: r.url,
          events: ['user.created', 'user.updated'],
          description: 'CRM sync',
          active: true,
          disabled_reason: null,
          failing_since: null,
          previous_secret_expires_at: null,
          secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
          created_at: expect.stringMatching(RFC3339),
          updated_at: expect.stringMatching(RFC3339),
        });
        const id = res.body.webhook_id as string;
        expect(res.headers.location).toBe(`/v2/webhooks/${id}`);

        const got = await api.get(`/v2/webhooks/${id}`);
        expect(got.status).toBe(200);
        expect(got.body).not.toHaveProperty('secret');
        expect(got.body.url).toBe(r.url);

        const listed = await api.get('/v2/webhooks');
        expect(listed.body.data.map((w: { webhook_id: string }) => w.webhook_id)).toContain(id);
        expect(listed.body.pagination).toMatchObject({ limit: 25, offset: 0 });

        const updated = await api.put(`/v2/webhooks/${id}`, { events: ['*'], active: false });
        expect(updated.status).toBe(200);
        expect(updated.body).toMatchObject({ events: ['*'], active: false, description: 'CRM sync' });

        const audit = await api.get('/v2/audit', { target_id: id });
        expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual(
          expect.arrayContaining(['webhook.created', 'webhook.updated']),
        );
        expect(JSON.stringify(audit.body)).not.toContain('whsec_');

        expect((await api.delete(`/v2/webhooks/${id}`)).status).toBe(200);
        expect((await api.get(`/v2/webhooks/${id}`)).body.error.code).toBe('WEBHOOK_NOT_FOUND');
      });

      it('refuses bad input in the error envelope and stores nothing', async () => {
        const before = (await api.get('/v2/webhooks')).body.pagination.total;
        const cases: [unknown, string][] = [
          [{ url: 'not a url', events: ['user.created'] }, 'url'],
          [{ url: 'ftp://example.com/x', events: ['user.created'] }, 'url'],
          [{ url: 'https://example.com/x', events: [] }, 'events'],
          [{ url: 'https://example.com/x', events: ['user.exploded'] }, 'events.0'],
          [{ url: 'https://example.com/x', events: ['user.created'], secret: 'short' }, 'secret'],
          [{ url: 'https://example.com/x', events: ['user.created'], extra: 1 }, 'extra'],
        ];
        for (const [body, field] of cases) {
          const res = await api.post('/v2/webhooks', body);
          expect(res.status).toBe(400);
          expect(res.body.error.code).toMatch(/VALIDATION_ERROR|MISSING_REQUIRED_FIELD/);
          expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
        }
        expect((await api.get('/v2/webhooks')).body.pagination.total).toBe(before);
      });

      it('needs webhook:manage', async () => {
        const reader = await adminApi(t, { scope: 'user:read' });
        const res = await reader.get('/v2/webhooks');
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      });
    });

    describe('delivery', () => {
      it('delivers user.created signed both ways, with the API.md payload, and records the delivery', async () => {
        const r = await receiver();
        const { webhook_id } = await subscribe(r.url, ['user.created']);
        const user = await api.createUser({ first_name: 'John', last_name: 'Doe' });
        const [req] = await r.waitFor(1, 10_000);
        expect(req!.method).toBe('POST');
        expect(req!.headers['content-type']).toBe('application/json');
        expect(req!.headers['x-event-type']).toBe('user.created');
        const payload = JSON.parse(req!.body);
        // The API's user, less the upstream identities (single sign-on), which events do not carry.
        const { identities, ...shown } = (await api.get(`/v2/users/${user.id}`)).body;
        expect(identities).toEqual([]);
        expect(payload).toEqual({
          event: 'user.created',
          type: 'user.created',
          timestamp: expect.stringMatching(RFC3339),
          data: { user: shown },
          webhook_id,
        });
        expect(JSON.stringify(payload)).not.toMatch(/password|hash/);
        expect(apiMdAccepts(Buffer.from(req!.body), req!.headers, SECRET)).toBe(true);
        expect(apiMdAccepts(Buffer.from(req!.body), req!.headers, 'another secret entirely')).toBe(false);
        expect(standardAccepts(req!, SECRET)).toBe(true);

        const [delivery] = await eventually(
          () => deliveries(webhook_id),
          (d) => d[0]?.status === 'succeeded',
          'a succeeded delivery',
        );
        expect(delivery).toMatchObject({
          id: req!.headers['webhook-id'],
          event_type: 'user.created',
          status: 'succeeded',
          attempts: 1,
          response_status: 200,
          next_attempt_at: null,
          last_error: null,
        });
        expect(delivery!.latency_ms).toEqual(expect.any(Number));
      });

      it('attempts its own new deliveries without a claim, claims what exceeds its room, and delivers each once', async () => {
        const r = await receiver();
        const { webhook_id } = await subscribe(r.url, ['user.created']);
        const outbox = t.stores.durable.outbox;
        const claimed = new Set<string>();
        const claimDue = outbox.claimDue.bind(outbox);
        outbox.claimDue = async (...args: Parameters<typeof outbox.claimDue>) => {
          const got = await claimDue(...args);
          for (const d of got) claimed.add(d.id);
          return got;
        };
        try {
          // One event: handed to this instance's worker as it is enqueued, never claimed.
          await api.createUser();
          const [first] = await r.waitFor(1, 10_000);
          expect(claimed.has(first!.headers['webhook-id']!)).toBe(false);
          // A bulk beyond the worker's room (WEBHOOK_CONCURRENCY 4, eight times that with the
          // thread): some handed over, the rest claimed.
          const burst = 40;
          const users = Array.from({ length: burst }, (_, i) => ({
            email: `burst${i}-${Date.now()}@example.com`,
            first_name: 'Burst',
            last_name: String(i),
          }));
          expect((await api.post('/v2/users/bulk', { users })).status).toBe(201);
          const got = await r.waitFor(burst + 1, 15_000);
          const ids = got.map((q) => q.headers['webhook-id']!);
          expect(new Set(ids).size).toBe(burst + 1);
          const claimedOfBurst = ids.slice(1).filter((id) => claimed.has(id)).length;
          expect(claimedOfBurst).toBeGreaterThan(0);
          expect(claimedOfBurst).toBeLessThan(burst);
          const listed = await eventually(
            () => deliveries(webhook_id, { limit: '100' }),
            (d) => d.length === burst + 1 && d.every((x) => x.status === 'succeeded'),
            'every delivery succeeded',
          );
          expect(listed.every((d) => d.attempts === 1)).toBe(true);
        } finally {
          delete (outbox as Partial<typeof outbox>).claimDue; // the adapter's own method again
        }
      });

      it('sends only subscribed events; * gets them all', async () => {
        const some = await receiver();
        const all = await receiver();
        await subscribe(some.url, ['user.deleted']);
        await subscribe(all.url, ['*']);
        const user = await api.createUser();
        await api.put(`/v2/users/${user.id}`, { first_name: 'Changed', metadata: { department: 'ops' } });
        await api.delete(`/v2/users/${user.id}`);
        const got = await all.waitFor(3, 10_000);
        const types = got.map((q) => JSON.parse(q.body).event);
        expect(types).toEqual(expect.arrayContaining(['user.created', 'user.updated', 'user.deleted']));
        const updated = got.map((q) => JSON.parse(q.body)).find((p) => p.event === 'user.updated');
        expect(updated.data.changes).toEqual(['first_name', 'metadata.department']);
        const [deleted] = await some.waitFor(1, 10_000);
        expect(JSON.parse(deleted!.body)).toMatchObject({
          event: 'user.deleted',
          data: { permanent: true },
        });
        expect(some.requests.map((q) => JSON.parse(q.body).event)).toEqual(['user.deleted']);
      });

      it('retries a failing endpoint on the schedule with the same webhook-id until it succeeds', async () => {
        const r = await receiver(receiverScripts.failThenOk(2));
        const { webhook_id } = await subscribe(r.url);
        await api.createUser();
        const got = await r.waitFor(3, 10_000);
        expect(got.map((q) => q.headers['webhook-id'])).toEqual(Array(3).fill(got[0]!.headers['webhook-id']));
        // The schedule (100 ms, 200 ms, ±10%) sets the gaps between attempts.
        expect(got[1]!.receivedAt.getTime() - got[0]!.receivedAt.getTime()).toBeGreaterThanOrEqual(85);
        expect(got[2]!.receivedAt.getTime() - got[1]!.receivedAt.getTime()).toBeGreaterThanOrEqual(170);
        const [delivery] = await eventually(
          () => deliveries(webhook_id),
          (d) => d[0]?.status === 'succeeded',
          'success',
        );
        expect(delivery).toMatchObject({ attempts: 3, response_status: 200 });
      });

      it('gives up after the last retry (dead) and retries a dead delivery on request', async () => {
        const r = await receiver(() => ({ status: 500, body: 'broken' }));
        const { webhook_id } = await subscribe(r.url);
        await api.createUser();
        const [dead] = await eventually(
          () => deliveries(webhook_id),
          (d) => d[0]?.status === 'dead',
          'a dead delivery',
        );
        expect(dead).toMatchObject({
          attempts: 3,
          response_status: 500,
          last_error: 'the endpoint answered 500',
        });
        expect(r.requests).toHaveLength(3);
        const retried = await api.post(`/v2/webhooks/${webhook_id}/deliveries/${dead!.id}/retry`);
        expect(retried.status).toBe(202);
        expect(retried.body.status).toBe('pending');
        await r.waitFor(4, 10_000);
        const again = await api.post(`/v2/webhooks/${webhook_id}/deliveries/${dead!.id}/retry`);
        // Until it is dead again, it cannot be retried.
        if (again.status !== 202) expect(again.body.error.code).toBe('CONFLICT');
        expect(
          (await api.post(`/v2/webhooks/${webhook_id}/deliveries/dlv_missing/retry`)).body.error.code,
        ).toBe('DELIVERY_NOT_FOUND');
      });

      it('disables an endpoint that answers 410 Gone, and says why', async () => {
        const r = await receiver(receiverScripts.gone());
        const { webhook_id } = await subscribe(r.url);
        await api.createUser();
        const [delivery] = await eventually(
          () => deliveries(webhook_id),
          (d) => d[0]?.status === 'dead',
          'dead',
        );
        expect(delivery).toMatchObject({ attempts: 1, response_status: 410 });
        const endpoint = (await api.get(`/v2/webhooks/${webhook_id}`)).body;
        expect(endpoint).toMatchObject({ active: false, disabled_reason: 'the endpoint answered 410 Gone' });
        const audit = await api.get('/v2/audit', { target_id: webhook_id, action: 'webhook.disabled' });
        expect(audit.body.data).toHaveLength(1);
        // Disabled: later events are not delivered to it.
        await api.createUser();
        await api.createUser();
        expect(r.requests).toHaveLength(1);
      });

      it('does not follow redirects and times out a hanging endpoint', async () => {
        const redirecting = await receiver(receiverScripts.redirect('/elsewhere'));
        const hanging = await receiver(receiverScripts.hang());
        const a = await subscribe(redirecting.url);
        const b = await subscribe(hanging.url);
        await api.createUser();
        const [redirected] = await eventually(
          () => deliveries(a.webhook_id),
          (d) => d[0]?.attempts === 1 && d[0]?.status === 'failed',
          'a failed attempt',
        );
        expect(redirected).toMatchObject({ response_status: 302 });
        expect(String(redirected!.last_error)).toContain('redirects are not followed');
        expect(redirecting.requests.every((q) => q.path !== '/elsewhere')).toBe(true);
        const [timedOut] = await eventually(
          () => deliveries(b.webhook_id),
          (d) => Number(d[0]?.attempts) >= 1 && d[0]?.status !== 'pending',
          'a timed-out attempt',
        );
        expect(String(timedOut!.last_error)).toMatch(/^timeout/);
        expect(timedOut!.response_status).toBeNull();
      });

      it('signs with both secrets for a day after a rotation; X-Signature with the new one', async () => {
        const r = await receiver();
        const { webhook_id } = await subscribe(r.url);
        const rotated = await api.post(`/v2/webhooks/${webhook_id}/secret`);
        expect(rotated.status).toBe(200);
        const fresh = rotated.body.secret as string;
        expect(fresh).toMatch(/^whsec_/);
        expect(Date.parse(rotated.body.previous_secret_expires_at) - Date.now()).toBeGreaterThan(
          23 * 3600_000,
        );
        await api.createUser();
        const [req] = await r.waitFor(1, 10_000);
        expect(req!.headers['webhook-signature']!.split(' ')).toHaveLength(2);
        expect(standardAccepts(req!, SECRET)).toBe(true);
        expect(standardAccepts(req!, fresh)).toBe(true);
        expect(apiMdAccepts(Buffer.from(req!.body), req!.headers, fresh)).toBe(true);
      });

      it('sends a ping to one endpoint only, active or not', async () => {
        const r = await receiver();
        const other = await receiver();
        const { webhook_id } = await subscribe(r.url, ['*'], { active: false });
        await subscribe(other.url, ['*']);
        const res = await api.post(`/v2/webhooks/${webhook_id}/test`);
        expect(res.status).toBe(202);
        expect(res.body).toMatchObject({ event_type: 'ping', status: 'pending' });
        const [req] = await r.waitFor(1, 10_000);
        expect(JSON.parse(req!.body)).toMatchObject({ event: 'ping', data: { message: expect.any(String) } });
        expect(other.requests).toHaveLength(0);
      });

      it('disables an endpoint failing continuously past the limit', async () => {
        const r = await receiver(() => ({ status: 503 }));
        const { webhook_id } = await subscribe(r.url);
        // As if it had been failing for six days.
        await t.stores.durable.webhooks.update(webhook_id, {
          failing_since: new Date(Date.now() - 6 * 86_400_000),
        });
        await api.createUser();
        const endpoint = await eventually(
          async () => (await api.get(`/v2/webhooks/${webhook_id}`)).body,
          (w) => w.active === false,
          'the endpoint disabled',
        );
        expect(endpoint.disabled_reason).toMatch(/^every attempt failed since/);
        // Turned on again by an administrator: the failing clock starts over.
        const on = await api.put(`/v2/webhooks/${webhook_id}`, { active: true });
        expect(on.body).toMatchObject({ active: true, disabled_reason: null, failing_since: null });
      });
    });

    describe('SSRF guard', () => {
      let strict: TestApp;
      let strictApi: AdminApi;
      beforeAll(async () => {
        strict = await createTestApp({
          durable,
          shortLived,
          env: { WEBHOOK_POLL_MS: '100', WEBHOOK_DELIVERY_THREAD: thread },
        });
        strictApi = await adminApi(strict);
      });
      afterAll(() => strict?.close());

      it.each([
        'http://127.0.0.1:9/hook',
        'http://10.1.2.3/hook',
        'http://169.254.169.254/latest/meta-data/',
        'http://[::1]:8080/hook',
        'http://[::ffff:127.0.0.1]/hook',
        'http://localhost:8080/hook',
        'http://192.168.0.10/hook',
      ])('refuses %s at creation without WEBHOOK_ALLOW_PRIVATE_NETWORKS', async (url) => {
        const res = await strictApi.post('/v2/webhooks', { url, events: ['user.created'] });
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({ code: 'WEBHOOK_URL_REFUSED' });
        expect(res.body.error.details[0]).toMatchObject({ field: 'url', provided: url });
      });

      it('refuses every attempt to a private address, with the reason, whatever the endpoint was saved with', async () => {
        const r = await receiver();
        // One instance saved the endpoint while it allowed private networks and delivers nothing;
        // another on the same data delivers under the guard.
        const writer = await createTestApp({
          durable,
          shortLived,
          env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_DELIVERY: 'false' },
        });
        const deliverer = await createTestApp({
          durable,
          shortLived,
          shareWith: writer,
          env: { WEBHOOK_POLL_MS: '100', WEBHOOK_DELIVERY_THREAD: thread },
        });
        try {
          const writerApi = await adminApi(writer);
          const res = await writerApi.post('/v2/webhooks', {
            url: r.url,
            events: ['user.created'],
            secret: SECRET,
          });
          expect(res.status).toBe(201);
          await writerApi.createUser();
          const [failed] = await eventually(
            async () =>
              (await writerApi.get(`/v2/webhooks/${res.body.webhook_id}/deliveries`)).body.data as Record<
                string,
                unknown
              >[],
            (d) => d[0]?.status === 'failed',
            'a refused attempt',
          );
          expect(String(failed!.last_error)).toMatch(/^blocked_address/);
          expect(r.requests).toHaveLength(0);
        } finally {
          await deliverer.close();
          await writer.close();
        }
      });
    });
  },
);
