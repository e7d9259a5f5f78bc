/**
 * Analytics rollups and GET /v2/analytics/users: a seeded event history over several days, users,
 * roles and departments goes through the rollup consumer; the analytics service and the route then
 * answer exact figures from the counter store (embedded, and Redis when REDIS_URL is set: the sets
 * are small, so HyperLogLog counts them exactly). Also: validation, the scope, the activity summary.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { eventUser, newEvent, type DomainEvent } from '../../src/events/catalog.js';
import { AnalyticsRollups } from '../../src/events/rollups.js';
import { AnalyticsService } from '../../src/services/analytics.js';
import type { NewUser, User } from '../../src/store/ports.js';
import { adminApi, uniqueEmail, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const SESSION_TTL_S = 7200;
const NOW = new Date('2025-03-12T12:00:00.000Z');
const at = (iso: string) => new Date(`${iso}Z`);
const system = { type: 'system', id: 'test' } as const;
const request = { ip_address: '198.51.100.7', user_agent: 'test-agent' };

describe.each(availableBackends())(
  'analytics rollups and GET /v2/analytics/users with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    let analytics: AnalyticsService;
    const u: Record<'alice' | 'bob' | 'cy' | 'dee', User> = {} as never;

    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
      const make = (over: Partial<NewUser>) =>
        t.stores.durable.users.create({ email: uniqueEmail(), first_name: 'A', last_name: 'B', ...over });
      u.alice = await make({
        metadata: { department: 'eng', location: 'paris' },
        created_at: at('2025-02-01T08:00:00'),
      });
      u.bob = await make({
        role: 'admin',
        metadata: { department: 'sales', location: 'paris' },
        created_at: at('2025-02-10T08:00:00'),
      });
      u.cy = await make({ metadata: { department: 'eng' }, created_at: at('2025-03-04T10:00:00') });
      u.dee = await make({
        metadata: { department: 'sales', location: 'berlin' },
        created_at: at('2025-03-05T09:10:00'),
      });

      const login = (user: User, when: string) =>
        newEvent(
          'user.login',
          system,
          { user: eventUser(user), method: 'password', client_id: null, ...request },
          at(when),
        );
      const history: DomainEvent[] = [
        newEvent('user.created', system, { user: eventUser(u.alice) }, u.alice.created_at),
        newEvent('user.created', system, { user: eventUser(u.bob) }, u.bob.created_at),
        login(u.alice, '2025-03-03T09:15:00'),
        newEvent(
          'user.logout',
          system,
          {
            user: eventUser(u.alice),
            session_id: 'sess_1',
            signed_in_at: '2025-03-03T09:15:00.000Z',
            ...request,
          },
          at('2025-03-03T10:15:00'),
        ),
        login(u.bob, '2025-03-03T09:40:00'),
        login(u.alice, '2025-03-03T14:00:00'),
        newEvent('user.created', system, { user: eventUser(u.cy) }, u.cy.created_at),
        login(u.cy, '2025-03-04T10:05:00'),
        newEvent(
          'user.login_failed',
          system,
          { user: eventUser(u.alice), reason: 'invalid_password', ...request },
          at('2025-03-04T11:00:00'),
        ),
        newEvent(
          'user.login_failed',
          system,
          { user: null, reason: 'unknown_user', ...request },
          at('2025-03-04T11:30:00'),
        ),
        newEvent('user.created', system, { user: eventUser(u.dee) }, u.dee.created_at),
        login(u.dee, '2025-03-05T09:20:00'),
        login(u.alice, '2025-03-05T16:00:00'),
        newEvent(
          'user.deleted',
          system,
          { user: eventUser(u.dee), permanent: true, was_soft_deleted: false },
          at('2025-03-06T08:00:00'),
        ),
        login(u.alice, '2025-03-10T09:30:00'),
        login(u.cy, '2025-03-10T09:45:00'),
      ];
      expect(await t.stores.durable.users.remove(u.dee.id)).toBe(true);
      const rollups = new AnalyticsRollups(t.stores.counters, { sessionTtlSeconds: SESSION_TTL_S });
      // In three batches, as the recorder hands them over: the figures do not depend on batching.
      await rollups.consume(history.slice(0, 5));
      await rollups.consume(history.slice(5, 11));
      await rollups.consume(history.slice(11));
      analytics = new AnalyticsService(t.stores.counters, t.stores.durable.users, { now: () => NOW });
    });
    afterAll(() => t.close());

    const day = (date: string, total: number, active: number, fresh: number, returning: number) => ({
      date,
      total_users: total,
      active_users: active,
      new_users: fresh,
      returning_users: returning,
    });

    it('counts registrations, deletions, active and returning users per day, with the summary', async () => {
      expect(await t.stores.durable.users.count({})).toBe(3);
      const report = await analytics.report({
        metric: 'active_users',
        period: 'day',
        start: at('2025-03-03T00:00:00'),
        end: at('2025-03-06T00:00:00'),
      });
      expect(report).toEqual({
        metric: 'active_users',
        period: 'day',
        data: [
          day('2025-03-03', 2, 2, 0, 2),
          day('2025-03-04', 3, 1, 1, 0),
          day('2025-03-05', 4, 2, 1, 1),
          day('2025-03-06', 3, 0, 0, 0),
        ],
        summary: { average_daily_active: 1.25, growth_rate: 50, retention_rate: 0 },
      });
    });

    it('counts whole weeks from Monday, and retention from the first week to the last', async () => {
      const report = await analytics.report({
        metric: 'login_frequency',
        period: 'week',
        start: at('2025-03-03T00:00:00'),
        end: at('2025-03-10T00:00:00'),
      });
      expect(report.data).toEqual([
        { ...day('2025-03-03', 3, 4, 2, 2), logins: 6, logins_per_active_user: 1.5 },
        { ...day('2025-03-10', 3, 2, 0, 2), logins: 2, logins_per_active_user: 1 },
      ]);
      // Daily actives 2, 1, 2, 0, 0, 0, 0, 2 over eight days; alice and cy of week one came back.
      expect(report.summary).toEqual({ average_daily_active: 0.88, growth_rate: 0, retention_rate: 50 });
    });

    it('counts months and quarters as whole calendar periods', async () => {
      const month = await analytics.report({
        metric: 'new_registrations',
        period: 'month',
        start: at('2025-02-01T00:00:00'),
        end: at('2025-03-31T00:00:00'),
      });
      expect(month.data).toEqual([day('2025-02-01', 2, 0, 2, 0), day('2025-03-01', 3, 4, 2, 2)]);
      const quarter = await analytics.report({
        metric: 'active_users',
        period: 'quarter',
        start: at('2025-01-15T00:00:00'),
        end: at('2025-03-15T00:00:00'),
      });
      // alice and bob signed up in the quarter too, so no active user of it is a returning one.
      expect(quarter.data).toEqual([day('2025-01-01', 3, 4, 4, 0)]);
      expect(quarter.summary.retention_rate).toBeNull();
    });

    it('groups by department, counting each group from its own rollups', async () => {
      const report = await analytics.report({
        metric: 'active_users',
        period: 'day',
        start: at('2025-03-03T00:00:00'),
        end: at('2025-03-06T00:00:00'),
        groupBy: 'department',
      });
      expect(report.group_by).toBe('department');
      expect(report.groups).toEqual([
        {
          group: 'eng',
          data: [
            day('2025-03-03', 1, 1, 0, 1),
            day('2025-03-04', 2, 1, 1, 0),
            day('2025-03-05', 2, 1, 0, 1),
            day('2025-03-06', 2, 0, 0, 0),
          ],
          summary: { average_daily_active: 0.75, growth_rate: 100, retention_rate: 0 },
        },
        {
          group: 'sales',
          data: [
            day('2025-03-03', 1, 1, 0, 1),
            day('2025-03-04', 1, 0, 0, 0),
            day('2025-03-05', 2, 1, 1, 0),
            day('2025-03-06', 1, 0, 0, 0),
          ],
          summary: { average_daily_active: 0.5, growth_rate: 0, retention_rate: 0 },
        },
      ]);
      const byLocation = await analytics.report({
        metric: 'active_users',
        period: 'week',
        start: at('2025-03-03T00:00:00'),
        end: at('2025-03-03T00:00:00'),
        groupBy: 'location',
      });
      expect(
        byLocation.groups!.map((g) => [g.group, g.data[0]!.active_users, g.data[0]!.total_users]),
      ).toEqual([
        ['berlin', 1, 0],
        ['paris', 2, 2],
        ['(none)', 1, 1],
      ]);
    });

    it('keeps at most the configured number of values per dimension, counting later ones as (other)', async () => {
      const options = { metadataKeys: ['team'], maxGroupValues: 2 };
      const rollups = new AnalyticsRollups(t.stores.counters, {
        ...options,
        sessionTtlSeconds: SESSION_TTL_S,
      });
      const inTeam = (user: User, team: string | null, when: string) =>
        newEvent(
          'user.login',
          system,
          {
            // Other ids than the seeded users', whose own summaries the tests below check.
            user: { ...eventUser(user), id: `${user.id}_team`, metadata: team ? { team } : {} },
            method: 'password',
            client_id: null,
            ...request,
          },
          at(when),
        );
      await rollups.consume([
        inTeam(u.alice, 'red', '2025-04-01T09:00:00'),
        inTeam(u.bob, 'blue', '2025-04-01T09:05:00'),
        inTeam(u.cy, 'green', '2025-04-01T09:10:00'),
        inTeam(u.dee, 'violet', '2025-04-01T09:15:00'),
        inTeam(u.dee, null, '2025-04-01T09:20:00'),
      ]);
      const report = await new AnalyticsService(t.stores.counters, t.stores.durable.users, {
        ...options,
        now: () => NOW,
      }).report({
        metric: 'active_users',
        period: 'day',
        start: at('2025-04-01T00:00:00'),
        end: at('2025-04-01T00:00:00'),
        groupBy: 'team',
      });
      expect(report.groups!.map((g) => [g.group, g.data[0]!.active_users])).toEqual([
        ['blue', 1],
        ['red', 1],
        ['(none)', 1],
        ['(other)', 2],
      ]);
      expect(report.data[0]!.active_users).toBe(4);
    });

    it('summarises a user’s sign-ins: weekday, hour, session time and failures', async () => {
      expect(await analytics.activitySummary(u.alice.id)).toEqual({
        // Four sessions of 7200 s assumed, one of them ended after 3600 s.
        average_session_duration: 6300,
        most_active_day: 'monday',
        preferred_login_time: '09:00-10:00',
        failed_logins_last_30_days: 1,
      });
      expect(await analytics.activitySummary('usr_nobody')).toEqual({
        average_session_duration: null,
        most_active_day: null,
        preferred_login_time: null,
        failed_logins_last_30_days: 0,
      });
    });

    it('GET /v2/analytics/users answers the documented shape from the rollups', async () => {
      const res = await api.get('/v2/analytics/users', {
        metric: 'active_users',
        period: 'day',
        start_date: '2025-03-03',
        end_date: '2025-03-06',
      });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        metric: 'active_users',
        period: 'day',
        data: [
          day('2025-03-03', 2, 2, 0, 2),
          day('2025-03-04', 3, 1, 1, 0),
          day('2025-03-05', 4, 2, 1, 1),
          day('2025-03-06', 3, 0, 0, 0),
        ],
        summary: { average_daily_active: 1.25, growth_rate: 50, retention_rate: 0 },
      });
      const grouped = await api.get('/v2/analytics/users', {
        start_date: '2025-03-03',
        end_date: '2025-03-03',
        group_by: 'role',
      });
      expect(grouped.status).toBe(200);
      expect(grouped.body).toMatchObject({ metric: 'active_users', period: 'day', group_by: 'role' });
      expect(
        (grouped.body.groups as { group: string; data: { active_users: number }[] }[]).map((g) => [
          g.group,
          g.data[0]!.active_users,
        ]),
      ).toEqual([
        ['admin', 1],
        ['user', 1],
      ]);
    });

    it('GET /v2/analytics/users refuses bad parameters with 400 VALIDATION_ERROR naming the field', async () => {
      const cases: [Record<string, string>, string][] = [
        [{ start_date: '2025-3-1', end_date: '2025-03-02' }, 'start_date'],
        [{ start_date: '2025-02-30', end_date: '2025-03-02' }, 'start_date'],
        [{ start_date: '2025-03-02', end_date: '2025-03-01' }, 'end_date'],
        [{ start_date: '2024-01-01', end_date: '2025-03-01' }, 'end_date'],
        // Outside the horizon (the totals would read every day from there to today).
        [{ start_date: '0000-08-01', end_date: '0000-08-01' }, 'start_date'],
        [{ start_date: '9999-01-01', end_date: '9999-01-02' }, 'end_date'],
        [{ start_date: '2025-03-01', end_date: '2025-03-02', period: 'hour' }, 'period'],
        [{ start_date: '2025-03-01', end_date: '2025-03-02', metric: 'revenue' }, 'metric'],
        [{ start_date: '2025-03-01', end_date: '2025-03-02', group_by: 'email' }, 'group_by'],
        [{ start_date: '2025-03-01', end_date: '2025-03-02', colour: 'red' }, 'colour'],
      ];
      for (const [query, field] of cases) {
        const res = await api.get('/v2/analytics/users', query);
        expect({ query, status: res.status, code: res.body.error?.code }).toEqual({
          query,
          status: 400,
          code: 'VALIDATION_ERROR',
        });
        expect(res.body.error.details).toEqual([expect.objectContaining({ field })]);
      }
      // A quarter range may be three years long.
      const long = await api.get('/v2/analytics/users', {
        period: 'quarter',
        start_date: '2023-01-01',
        end_date: '2025-12-31',
      });
      expect(long.status).toBe(200);
      expect(long.body.data).toHaveLength(12);
      const missing = await api.get('/v2/analytics/users', { end_date: '2025-03-01' });
      expect(missing.status).toBe(400);
      expect(missing.body.error.details).toEqual([expect.objectContaining({ field: 'start_date' })]);
    });

    it('GET /v2/analytics/users needs analytics:read (403 AUTH_INSUFFICIENT_SCOPE)', async () => {
      const reader = await adminApi(t, { scope: 'user:read audit:read' });
      const res = await reader.get('/v2/analytics/users', {
        start_date: '2025-03-03',
        end_date: '2025-03-06',
      });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({
        code: 'AUTH_INSUFFICIENT_SCOPE',
        message: 'This operation needs the scope "analytics:read"',
      });
      const analyst = await adminApi(t, { scope: 'analytics:read' });
      const ok = await analyst.get('/v2/analytics/users', {
        start_date: '2025-03-03',
        end_date: '2025-03-06',
      });
      expect(ok.status).toBe(200);
    });

    it('GET /v2/users/{id}/activity carries the rollup summary', async () => {
      const res = await api.get(`/v2/users/${u.alice.id}/activity`);
      expect(res.status).toBe(200);
      expect(res.body.activity_summary).toMatchObject({
        most_active_day: 'monday',
        preferred_login_time: '09:00-10:00',
        average_session_duration: 6300,
      });
      expect(res.body.pagination).toEqual({ limit: 20, has_more: false, next_cursor: null });
    });
  },
);
