/** /v2/analytics/users: user analytics over a date range, from the rollups only. */
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import { DAY_MS, PERIODS, parseDay, type Period } from '../events/rollups.js';
import { ANALYTICS_METRICS, type AnalyticsService } from '../services/analytics.js';
import type { ApiRouter } from './api-router.js';
import { named } from './schemas.js';

const DAY_PATTERN = '^\\d{4}-\\d{2}-\\d{2}$';

/** A calendar day, `YYYY-MM-DD` (UTC); `2026-02-30` is refused. */
const day = z
  .string({ error: 'Must be given once, as YYYY-MM-DD' })
  .regex(new RegExp(DAY_PATTERN), { error: 'Must be a date, YYYY-MM-DD', abort: true })
  .refine((s) => !Number.isNaN(parseDay(s).getTime()) && parseDay(s).toISOString().startsWith(s), {
    error: 'Not a calendar date',
  })
  .describe('A UTC calendar day, YYYY-MM-DD');

/** How far from today a range may lie, in days (five years back, one forward). */
export const HORIZON_PAST_DAYS = 5 * 366;
export const HORIZON_FUTURE_DAYS = 366;

/** The longest range each period takes, in days. */
export const MAX_RANGE_DAYS: Record<Period, number> = {
  day: 366,
  week: 2 * 366,
  month: 3 * 366,
  quarter: 3 * 366,
};

const Point = z.object({
  date: z.string().describe('First day of the bucket (YYYY-MM-DD)'),
  total_users: z.number().int(),
  active_users: z.number().int(),
  new_users: z.number().int(),
  returning_users: z.number().int(),
  logins: z.number().int().optional().describe('login_frequency only'),
  logins_per_active_user: z.number().optional().describe('login_frequency only'),
});

const Summary = z.object({
  average_daily_active: z.number(),
  growth_rate: z.number().nullable().describe('Percent; null when the range starts with no users'),
  retention_rate: z.number().nullable().describe('Percent; null with one bucket or none active in the first'),
});

const UserAnalytics = named(
  'UserAnalytics',
  z.object({
    metric: z.enum(ANALYTICS_METRICS),
    period: z.enum(PERIODS),
    data: z.array(Point),
    summary: Summary,
    group_by: z.string().optional(),
    groups: z.array(z.object({ group: z.string(), data: z.array(Point), summary: Summary })).optional(),
  }),
);

export function registerAnalyticsRoutes(api: ApiRouter, analytics: AnalyticsService): void {
  const dimensions = [...analytics.dimensions] as [string, ...string[]];
  api.add({
    method: 'get',
    path: '/analytics/users',
    operationId: 'getUserAnalytics',
    summary: 'User analytics over a date range',
    description: `Registrations, active and returning users per day, week (from Monday), month or quarter (UTC), read from rollups kept ${analytics.retentionDays} days. Buckets are whole periods: the first and last may reach past the range. Ranges: at most ${MAX_RANGE_DAYS.day} days by day, ${MAX_RANGE_DAYS.week} by week, ${MAX_RANGE_DAYS.month} by month or quarter. Distinct counts on a Redis deployment are HyperLogLog estimates (standard error 0.81%). With group_by, groups holds the same series for each group value (at most 50 per dimension; later values are counted as "(other)", users without a metadata value as "(none)").`,
    tag: 'Analytics',
    scope: 'analytics:read',
    query: z.object({
      metric: z
        .enum(ANALYTICS_METRICS, { error: `One of ${ANALYTICS_METRICS.join(', ')}` })
        .default('active_users'),
      period: z.enum(PERIODS, { error: `One of ${PERIODS.join(', ')}` }).default('day'),
      start_date: day,
      end_date: day,
      group_by: z.enum(dimensions, { error: `One of ${dimensions.join(', ')}` }).optional(),
    }),
    responses: { 200: { description: 'The series and its summary', schema: UserAnalytics } },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const start = parseDay(query.start_date);
      const end = parseDay(query.end_date);
      if (end < start) {
        throw new AppError('VALIDATION_ERROR', {
          details: [{ field: 'end_date', issue: 'Must not be before start_date', provided: query.end_date }],
        });
      }
      const days = (end.getTime() - start.getTime()) / DAY_MS + 1;
      if (days > MAX_RANGE_DAYS[query.period]) {
        throw new AppError('VALIDATION_ERROR', {
          details: [
            {
              field: 'end_date',
              issue: `The range may span at most ${MAX_RANGE_DAYS[query.period]} days with period=${query.period}`,
              provided: query.end_date,
            },
          ],
        });
      }
      // Totals are derived from the daily rollups between the range and today, so a range far from
      // today would read that many days of counters: it must lie within the horizon.
      const today = Date.parse(new Date().toISOString().slice(0, 10));
      const earliest = today - HORIZON_PAST_DAYS * DAY_MS;
      const latest = today + HORIZON_FUTURE_DAYS * DAY_MS;
      if (start.getTime() < earliest || end.getTime() > latest) {
        const field = start.getTime() < earliest ? 'start_date' : 'end_date';
        throw new AppError('VALIDATION_ERROR', {
          details: [
            {
              field,
              issue: `Must lie between ${HORIZON_PAST_DAYS} days before today and ${HORIZON_FUTURE_DAYS} days after it`,
              provided: field === 'start_date' ? query.start_date : query.end_date,
            },
          ],
        });
      }
      const body = await analytics.report({
        metric: query.metric,
        period: query.period,
        start,
        end,
        ...(query.group_by ? { groupBy: query.group_by } : {}),
      });
      return { status: 200, body };
    },
  });
}
