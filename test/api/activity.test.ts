/**
 * GET /v2/users/{id}/activity: what a user did and what was done to them, newest first — sign-ins
 * through the real login form (with the caller's address and user agent), failed sign-ins (counted
 * over the last 30 days), a forced password change, and administrators' changes — and a summary
 * that agrees with the user record.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import type * as oidc from 'openid-client';

import { adminClient, errorOf, type AdminClient } from '../helpers/admin-client.js';
import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { authorizationRequest, codeFlow, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const PASSWORD = 'violet-anchor-glacier-91-trombone';
const NEW_PASSWORD = 'harbour-lantern-quartz-47-meadow';
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
/** The loopback address as the server sees it (IPv4, or IPv4-mapped IPv6). */
const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$/;
/** What Node's fetch (the FormBrowser) sends as User-Agent. */
const NODE_FETCH_UA = 'node';

interface ActivityEntry {
  event: string;
  timestamp: string;
  ip_address: string | null;
  user_agent: string | null;
  actor: { type: string; id: string };
  changes?: string[];
  details: Record<string, unknown> | null;
}

describe.each(availableBackends())(
  'GET /v2/users/{id}/activity with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      admin = await adminClient(server);
      spa = await registerClient(server.t, 'spa', { firstParty: true });
      spaConfig = await discover(server.url, spa);
    });
    afterAll(() => server.close());

    /** A user created through the API, with a password. */
    async function createApiUser() {
      const email = `activity-${randomBytes(5).toString('hex')}@example.com`;
      const res = await admin.post('/v2/users', {
        email,
        first_name: 'Ada',
        last_name: 'Lovelace',
        password: PASSWORD,
      });
      expect(res.status).toBe(201);
      return { id: res.body.id as string, email, created_at: res.body.created_at as string };
    }

    async function failSignIn(email: string) {
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
      const browser = new FormBrowser(server.url);
      const page = await browser.go(request.url.toString());
      expect(isLoginPage(page)).toBe(true);
      const wrong = await submit(browser, page, { email, password: 'this is not my password' });
      expect(wrong.status).toBe(401);
    }

    async function activityOf(id: string, query = '') {
      const res = await admin.get(`/v2/users/${id}/activity${query}`);
      expect(res.status).toBe(200);
      return res.body as {
        user_id: string;
        activity_summary: {
          total_logins: number;
          last_login: string | null;
          failed_logins_last_30_days: number;
          created_at: string;
        };
        recent_activities: ActivityEntry[];
        pagination: { limit: number; has_more: boolean; next_cursor: string | null };
      };
    }

    const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

    it('GET /v2/users/{id}/activity lists sign-ins, failed sign-ins and admin changes newest first, with a matching summary', async () => {
      const user = await createApiUser();
      await pause();
      await failSignIn(user.email);
      await pause();
      await codeFlow(spaConfig, spa, { email: user.email, password: PASSWORD });
      await pause();
      const renamed = await admin.put(`/v2/users/${user.id}`, { first_name: 'Augusta' });
      expect(renamed.status).toBe(200);

      const activity = await activityOf(user.id);
      const fetched = (await admin.get(`/v2/users/${user.id}`)).body as { last_login: string };
      expect(activity.user_id).toBe(user.id);
      expect(activity.activity_summary).toMatchObject({
        total_logins: 1,
        last_login: fetched.last_login,
        failed_logins_last_30_days: 1,
        created_at: user.created_at,
      });
      // The rest comes from the analytics rollups (null until sign-in events reach them).
      expect(Object.keys(activity.activity_summary).sort()).toEqual([
        'average_session_duration',
        'created_at',
        'failed_logins_last_30_days',
        'last_login',
        'most_active_day',
        'preferred_login_time',
        'total_logins',
      ]);
      expect(fetched.last_login).toMatch(TIMESTAMP);

      const events = activity.recent_activities;
      expect(events.map((e) => e.event)).toEqual([
        'user.updated',
        'user.login',
        'user.login_failed',
        'user.created',
      ]);
      const [updated, login, failed, created] = events as [
        ActivityEntry,
        ActivityEntry,
        ActivityEntry,
        ActivityEntry,
      ];
      expect(login).toEqual({
        event: 'user.login',
        timestamp: expect.stringMatching(TIMESTAMP),
        ip_address: expect.stringMatching(LOOPBACK),
        user_agent: NODE_FETCH_UA,
        actor: { type: 'user', id: user.id },
        details: { client_id: spa.clientId },
      });
      expect(failed).toEqual({
        event: 'user.login_failed',
        timestamp: expect.stringMatching(TIMESTAMP),
        ip_address: expect.stringMatching(LOOPBACK),
        user_agent: NODE_FETCH_UA,
        actor: { type: 'user', id: user.id },
        details: { client_id: spa.clientId },
      });
      expect(updated).toMatchObject({
        event: 'user.updated',
        changes: ['first_name'],
        ip_address: expect.stringMatching(LOOPBACK),
        actor: { type: 'client', id: admin.clientId },
      });
      expect(created).toMatchObject({ event: 'user.created', actor: { type: 'client', id: admin.clientId } });
      // The last sign-in recorded on the user is the sign-in event's time (same request).
      expect(Math.abs(Date.parse(login.timestamp) - Date.parse(fetched.last_login))).toBeLessThan(2000);

      const times = events.map((e) => Date.parse(e.timestamp));
      expect(times).toEqual([...times].sort((a, b) => b - a));
      // Nothing secret is in the trail.
      expect(JSON.stringify(activity)).not.toContain(PASSWORD);
    });

    it('GET /v2/users/{id}/activity counts every sign-in and failed sign-in, and limits the list', async () => {
      const user = await createApiUser();
      for (let i = 0; i < 2; i += 1) await failSignIn(user.email);
      const browser = new FormBrowser(server.url);
      await codeFlow(spaConfig, spa, { email: user.email, password: PASSWORD }, { browser });
      // A second sign-in from another browser (the first one would be signed in silently).
      await codeFlow(spaConfig, spa, { email: user.email, password: PASSWORD });

      const activity = await activityOf(user.id);
      expect(activity.activity_summary.total_logins).toBe(2);
      expect(activity.activity_summary.failed_logins_last_30_days).toBe(2);
      expect(activity.recent_activities.map((e) => e.event)).toEqual([
        'user.login',
        'user.login',
        'user.login_failed',
        'user.login_failed',
        'user.created',
      ]);
      // A silent sign-in from a browser already signed in is not a new sign-in.
      const silent = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', { prompt: 'none' });
      expect((await browser.go(silent.url.toString())).status).toBe(0);
      expect((await activityOf(user.id)).activity_summary.total_logins).toBe(2);

      const limited = await activityOf(user.id, '?limit=2');
      expect(limited.recent_activities.map((e) => e.event)).toEqual(['user.login', 'user.login']);
      expect(limited.activity_summary.total_logins).toBe(2);
      expect(limited.pagination).toMatchObject({ limit: 2, has_more: true, next_cursor: expect.any(String) });
      const next = await activityOf(user.id, `?limit=2&cursor=${limited.pagination.next_cursor}`);
      expect(next.recent_activities.map((e) => e.event)).toEqual(['user.login_failed', 'user.login_failed']);
      const last = await activityOf(user.id, `?limit=2&cursor=${next.pagination.next_cursor}`);
      expect(last.recent_activities.map((e) => e.event)).toEqual(['user.created']);
      expect(last.pagination).toEqual({ limit: 2, has_more: false, next_cursor: null });
      const forged = await admin.get(`/v2/users/${user.id}/activity?cursor=bm90LWEtY3Vyc29y`);
      expect(forged.status).toBe(422);
      expect(errorOf(forged.body)).toMatchObject({ code: 'INVALID_CURSOR' });

      const bad = await admin.get(`/v2/users/${user.id}/activity?limit=0`);
      expect(bad.status).toBe(400);
      expect(errorOf(bad.body)).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [expect.objectContaining({ field: 'limit' })],
      });
    });

    it('GET /v2/users/{id}/activity shows a forced reset, the password change at sign-in, and a suspension with what it revoked', async () => {
      const user = await createApiUser();
      const browser = new FormBrowser(server.url);
      await codeFlow(spaConfig, spa, { email: user.email, password: PASSWORD }, { browser });
      await pause();
      expect((await admin.post(`/v2/users/${user.id}/password-reset`)).status).toBe(200);
      await pause();

      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
      const login = await browser.go(request.url.toString());
      const change = await submit(browser, login, { email: user.email, password: PASSWORD });
      const done = await submit(browser, change, { password: NEW_PASSWORD, confirm: NEW_PASSWORD });
      expect(done.status).toBe(0);
      await pause();
      expect((await admin.put(`/v2/users/${user.id}`, { status: 'suspended' })).status).toBe(200);
      await pause();
      const refusedRequest = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
      const again = await browser.go(refusedRequest.url.toString());
      expect((await submit(browser, again, { email: user.email, password: NEW_PASSWORD })).status).toBe(403);

      const activity = await activityOf(user.id);
      const events = activity.recent_activities;
      expect(events.map((e) => e.event)).toEqual([
        'user.login_refused',
        'user.updated',
        'user.login',
        'user.password_changed',
        'user.password_reset_required',
        'user.login',
        'user.created',
      ]);
      expect(events[0]).toMatchObject({
        actor: { type: 'user', id: user.id },
        details: { reason: 'suspended', client_id: spa.clientId },
      });
      expect(events[1]).toMatchObject({
        actor: { type: 'client', id: admin.clientId },
        details: { revoked_artifacts: expect.any(Number) },
      });
      expect((events[1]!.details as { revoked_artifacts: number }).revoked_artifacts).toBeGreaterThan(0);
      expect(events[3]).toMatchObject({
        actor: { type: 'user', id: user.id },
        ip_address: expect.stringMatching(LOOPBACK),
        user_agent: NODE_FETCH_UA,
      });
      expect(events[4]).toMatchObject({
        actor: { type: 'client', id: admin.clientId },
        details: { revoked_artifacts: expect.any(Number) },
      });
      // Refused and forced-change sign-ins are not failures; the completed one is a sign-in.
      expect(activity.activity_summary).toMatchObject({ total_logins: 2, failed_logins_last_30_days: 0 });
      expect(JSON.stringify(activity)).not.toContain(NEW_PASSWORD);
    });

    it('GET /v2/users/{id}/activity answers 404 USER_NOT_FOUND for an unknown user and needs user:read', async () => {
      const res = await admin.get('/v2/users/usr_nope/activity');
      expect(res.status).toBe(404);
      expect(errorOf(res.body)).toEqual({ code: 'USER_NOT_FOUND', message: 'User not found' });

      const user = await createApiUser();
      const writer = await adminClient(server, 'user:write');
      const forbidden = await writer.get(`/v2/users/${user.id}/activity`);
      expect(forbidden.status).toBe(403);
      expect(errorOf(forbidden.body)).toMatchObject({
        code: 'AUTH_INSUFFICIENT_SCOPE',
        message: 'This operation needs the scope "user:read"',
      });
    });
  },
);
