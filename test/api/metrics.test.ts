/**
 * GET /metrics: the Prometheus exposition counts what the server did (tokens by grant type,
 * introspection answers, sign-ins by outcome, requests by route template, storage operations by
 * backend), never puts an id in a label, is guarded by METRICS_TOKEN when set, and is absent when
 * METRICS_ENABLED=false — on every backend.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { ALL_ADMIN_SCOPES, clientCredentials, errorOf } from '../helpers/admin-client.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import { authorizationRequest, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { availableBackends, createTestApp } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const METRICS_TOKEN = 'scrape-token-0123456789abcdef';
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments skipped). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = value!;
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` carrying `labels` (among others); 0 when absent. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

describe.each(availableBackends())(
  'GET /metrics with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let spa: TestClient;
    beforeAll(async () => {
      server = await startTestServer({
        durable,
        shortLived,
        env: {
          METRICS_TOKEN,
          // One wrong password is allowed, the next attempt is locked out.
          LOGIN_MAX_FAILURES: '1',
          LOGIN_IP_MAX_FAILURES: '10000',
        },
      });
      spa = await registerClient(server.t, 'spa');
    });
    afterAll(() => server.close());

    async function scrape(): Promise<{ text: string; samples: Sample[] }> {
      const res = await fetch(`${server.url}/metrics`, {
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      return { text, samples: parseExposition(text) };
    }

    /** A browser on a fresh login page; returns the interaction uid too (it is in the form's action). */
    async function openLoginPage(): Promise<{ browser: FormBrowser; page: Page; uid: string }> {
      const config = await discover(server.url, spa);
      const auth = await authorizationRequest(config, spa.redirectUri, 'openid');
      const browser = new FormBrowser(server.url);
      const page = await browser.go(auth.url.toString());
      expect(isLoginPage(page)).toBe(true);
      const uid = /action="\/interaction\/([^/"]+)\/login"/.exec(page.html)![1]!;
      return { browser, page, uid };
    }

    async function signIn(email: string, password: string): Promise<{ status: number; uid: string }> {
      const { browser, page, uid } = await openLoginPage();
      const answer = await submit(browser, page, { email, password });
      return { status: answer.status, uid };
    }

    it('counts tokens, introspections, sign-ins, /v2 requests and store operations, labelled by template and never by id', async () => {
      const before = (await scrape()).samples;

      // Two client-credentials tokens, one of them introspected (active), and a made-up token (inactive).
      const service = await registerClient(server.t, 'service', {
        metadata: { scope: ALL_ADMIN_SCOPES, plan: 'enterprise' },
      });
      const first = await clientCredentials(server.url, service, { scope: ALL_ADMIN_SCOPES });
      expect(first.status).toBe(200);
      const second = await clientCredentials(server.url, service, { scope: 'user:read' });
      expect(second.status).toBe(200);
      const token = String(first.body.access_token);
      const introspect = (value: string) =>
        request(server.url)
          .post('/oauth/introspect')
          .auth(service.clientId, service.clientSecret!)
          .type('form')
          .send({ token: value });
      expect((await introspect(token)).body).toMatchObject({ active: true });
      expect((await introspect('not-a-token-we-issued')).body).toEqual({ active: false });

      // Sign-ins: a wrong password, then the same account locked; another user signs in; a suspended
      // user's right password is refused.
      const victim = await createUser(server.t);
      const wrong = await signIn(victim.email, 'not the password');
      expect(wrong.status).toBe(401);
      expect((await signIn(victim.email, 'still not it')).status).toBe(429);
      const person = await createUser(server.t);
      const right = await signIn(person.email, person.password);
      expect(right.status).toBe(200);
      const suspended = await createUser(server.t, { status: 'suspended' });
      expect((await signIn(suspended.email, suspended.password)).status).not.toBe(200);

      // A /v2 request naming a user by id.
      const read = await request(server.url)
        .get(`/v2/users/${person.user.id}`)
        .set('Authorization', `Bearer ${token}`);
      expect(read.status).toBe(200);

      const { text, samples: after } = await scrape();
      const delta = (name: string, labels: Record<string, string>) =>
        valueOf(after, name, labels) - valueOf(before, name, labels);

      expect(delta('latchkey_tokens_issued_total', { grant_type: 'client_credentials' })).toBe(2);
      expect(delta('latchkey_introspections_total', { active: 'true' })).toBe(1);
      expect(delta('latchkey_introspections_total', { active: 'false' })).toBe(1);
      expect(delta('latchkey_logins_total', { outcome: 'failed' })).toBe(1);
      expect(delta('latchkey_logins_total', { outcome: 'locked' })).toBe(1);
      expect(delta('latchkey_logins_total', { outcome: 'succeeded' })).toBe(1);
      expect(delta('latchkey_logins_total', { outcome: 'refused' })).toBe(1);

      const requests = 'latchkey_http_request_duration_seconds_count';
      expect(delta(requests, { method: 'GET', route: '/v2/users/:id', status_code: '200' })).toBe(1);
      expect(delta(requests, { method: 'POST', route: '/oauth/token', status_code: '200' })).toBe(2);
      expect(delta(requests, { method: 'POST', route: '/oauth/introspect', status_code: '200' })).toBe(2);
      expect(delta(requests, { method: 'POST', route: '/interaction/:uid/login', status_code: '401' })).toBe(
        1,
      );
      expect(delta(requests, { method: 'POST', route: '/interaction/:uid/login', status_code: '429' })).toBe(
        1,
      );
      expect(delta(requests, { method: 'GET', route: '/oauth/authorize', status_code: '303' })).toBe(4);

      // Storage operations are timed per store, backend and port method.
      const store = 'latchkey_store_operation_duration_seconds_count';
      const durableKind = server.t.stores.durable.kind;
      const shortKind = server.t.stores.artifacts.kind;
      expect(
        delta(store, { store: 'durable', backend: durableKind, operation: 'users.findByEmail' }),
      ).toBeGreaterThanOrEqual(3); // the locked attempt is refused before any lookup
      expect(
        delta(store, { store: 'artifacts', backend: shortKind, operation: 'ClientCredentials.upsert' }),
      ).toBe(2);
      // Every sign-in attempt, the locked one included, is one guardAttempt.
      expect(
        delta(store, { store: 'counters', backend: shortKind, operation: 'guardAttempt' }),
      ).toBeGreaterThanOrEqual(4);

      // No id of a user, client, token or interaction ever becomes a label value.
      for (const id of [person.user.id, victim.user.id, service.clientId, spa.clientId, token, wrong.uid]) {
        expect(text).not.toContain(id);
      }
      const routes = new Set(after.filter((s) => s.name === requests).map((s) => s.labels.route!));
      for (const route of routes) expect(route).toMatch(/^(\/[\w.-]*|\/:\w+)+$|^unmatched$/);
    });

    it('GET /metrics with METRICS_TOKEN set answers 401 without the token or with a wrong one, 200 with it', async () => {
      const missing = await request(server.url).get('/metrics');
      expect(missing.status).toBe(401);
      expect(errorOf(missing.body)).toEqual({
        code: 'AUTH_TOKEN_MISSING',
        message: 'An access token is required',
      });
      expect(missing.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(missing.text).not.toContain('latchkey_');

      const wrong = await request(server.url).get('/metrics').set('Authorization', 'Bearer not-the-token');
      expect(wrong.status).toBe(401);
      expect(errorOf(wrong.body).code).toBe('AUTH_TOKEN_INVALID');

      const basic = await request(server.url).get('/metrics').auth('prometheus', METRICS_TOKEN);
      expect(basic.status).toBe(401);

      const ok = await request(server.url).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
      expect(ok.status).toBe(200);
      expect(ok.headers['content-type']).toBe(PROMETHEUS_TEXT);
      expect(ok.headers['cache-control']).toBe('no-store');
      // Not part of the management API: no rate limit applies.
      expect(ok.headers['x-ratelimit-limit']).toBeUndefined();
      expect(ok.text).toContain('# TYPE latchkey_http_request_duration_seconds histogram');
      expect(ok.text).toContain('# TYPE process_cpu_user_seconds_total counter');
    });
  },
);

describe('GET /metrics settings', () => {
  it('GET /metrics without METRICS_TOKEN is open, and every verify-key outcome starts at 0 and counts', async () => {
    const t = await createTestApp();
    try {
      const first = await request(t.callback).get('/metrics');
      expect(first.status).toBe(200);
      expect(first.headers['content-type']).toBe(PROMETHEUS_TEXT);
      const outcomes = [
        'ok',
        'invalid',
        'expired',
        'ip_denied',
        'quota_exceeded',
        'rate_limited',
        'unavailable',
      ];
      const initial = parseExposition(first.text);
      for (const outcome of outcomes) {
        expect(valueOf(initial, 'latchkey_verify_key_total', { outcome })).toBe(0);
      }

      t.services.metrics.verifyKey('quota_exceeded');
      t.services.metrics.verifyKey('quota_exceeded');
      t.services.metrics.verifyKey('ok');
      const later = parseExposition((await request(t.callback).get('/metrics')).text);
      expect(valueOf(later, 'latchkey_verify_key_total', { outcome: 'quota_exceeded' })).toBe(2);
      expect(valueOf(later, 'latchkey_verify_key_total', { outcome: 'ok' })).toBe(1);
      expect(valueOf(later, 'latchkey_verify_key_total', { outcome: 'invalid' })).toBe(0);
      // The first scrape itself was measured, under its route.
      expect(
        valueOf(later, 'latchkey_http_request_duration_seconds_count', {
          method: 'GET',
          route: '/metrics',
          status_code: '200',
        }),
      ).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('GET /metrics with METRICS_ENABLED=false answers 404', async () => {
    const t = await createTestApp({ env: { METRICS_ENABLED: 'false', METRICS_TOKEN } });
    try {
      const res = await request(t.callback).get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
      expect(res.status).toBe(404);
      expect(errorOf(res.body).code).toBe('NOT_FOUND');
      // Nor are process metrics collected.
      expect(t.services.metrics.registry.getSingleMetric('process_cpu_user_seconds_total')).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it('two apps in one process keep separate registries', async () => {
    const a = await createTestApp();
    const b = await createTestApp();
    try {
      a.services.metrics.verifyKey('invalid');
      const aText = (await request(a.callback).get('/metrics')).text;
      const bText = (await request(b.callback).get('/metrics')).text;
      expect(valueOf(parseExposition(aText), 'latchkey_verify_key_total', { outcome: 'invalid' })).toBe(1);
      expect(valueOf(parseExposition(bText), 'latchkey_verify_key_total', { outcome: 'invalid' })).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
