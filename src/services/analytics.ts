/**
 * The read side of the analytics rollups (src/events/rollups.ts): user analytics over a date range
 * and a user's activity summary. Every answer comes from counters and distinct-count sets, in a
 * fixed number of reads whatever the range (one counter read, one distinct-count read, and user
 * counts from the durable store); no event is scanned.
 */
import type { CounterStore, UserRepository } from '../store/ports.js';
import type { Expr } from '../store/query.js';
import {
  ALL,
  DAY_MS,
  DEFAULT_RETENTION_DAYS,
  MAX_GROUP_VALUES,
  NO_GROUP,
  OTHER_GROUP,
  bucketStart,
  dayOf,
  dimensionsOf,
  labelLimit,
  nextBucket,
  rollupKeys,
  scopeOf,
  type Period,
} from '../events/rollups.js';

export const ANALYTICS_METRICS = ['active_users', 'new_registrations', 'login_frequency'] as const;
export type AnalyticsMetric = (typeof ANALYTICS_METRICS)[number];

export interface AnalyticsQuery {
  metric: AnalyticsMetric;
  period: Period;
  /** First and last day of the range (midnight UTC), both included. */
  start: Date;
  end: Date;
  groupBy?: string;
}

export interface AnalyticsPoint {
  date: string;
  total_users: number;
  active_users: number;
  new_users: number;
  returning_users: number;
  /** login_frequency only: sign-ins in the bucket, and per active user. */
  logins?: number;
  logins_per_active_user?: number;
}

export interface AnalyticsSummary {
  average_daily_active: number;
  growth_rate: number | null;
  retention_rate: number | null;
}

export interface AnalyticsSeries {
  data: AnalyticsPoint[];
  summary: AnalyticsSummary;
}

export interface AnalyticsReport extends AnalyticsSeries {
  metric: AnalyticsMetric;
  period: Period;
  group_by?: string;
  groups?: (AnalyticsSeries & { group: string })[];
}

export interface ActivitySummary {
  average_session_duration: number | null;
  most_active_day: string | null;
  preferred_login_time: string | null;
  failed_logins_last_30_days: number;
}

const WEEKDAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const round2 = (n: number) => Math.round(n * 100) / 100;
const pad = (n: number) => String(n).padStart(2, '0');

/** Index of the largest value, the first one on a tie; undefined when every value is 0. */
function argmax(values: readonly number[], order: readonly number[]): number | undefined {
  let best: number | undefined;
  for (const i of order) if (values[i]! > 0 && (best === undefined || values[i]! > values[best]!)) best = i;
  return best;
}

interface Bucket {
  start: Date;
  /** First day after the bucket. */
  next: Date;
}

/** Reads queued while a report is planned, then answered by one getMany and one countDistinctMany. */
class ReadPlan {
  readonly counterKeys: string[] = [];
  readonly unions: string[][] = [];
  private counterValues: number[] = [];
  private unionValues: number[] = [];

  counter(key: string): () => number {
    const i = this.counterKeys.push(key) - 1;
    return () => this.counterValues[i]!;
  }

  distinct(keys: string[]): () => number {
    const i = this.unions.push(keys) - 1;
    return () => this.unionValues[i]!;
  }

  async run(counters: CounterStore): Promise<void> {
    [this.counterValues, this.unionValues] = await Promise.all([
      counters.getMany(this.counterKeys),
      counters.countDistinctMany(this.unions),
    ]);
  }
}

export class AnalyticsService {
  readonly dimensions: readonly string[];

  constructor(
    private readonly counters: CounterStore,
    private readonly users: Pick<UserRepository, 'count'>,
    private readonly options: {
      metadataKeys?: readonly string[];
      retentionDays?: number;
      maxGroupValues?: number;
      now?: () => Date;
    } = {},
  ) {
    this.dimensions = dimensionsOf(options);
  }

  private now(): Date {
    return this.options.now ? this.options.now() : new Date();
  }

  async report(query: AnalyticsQuery): Promise<AnalyticsReport> {
    const today = new Date(Date.parse(dayOf(this.now())));
    const buckets: Bucket[] = [];
    for (let s = bucketStart(query.period, query.start); s <= query.end; s = nextBucket(query.period, s)) {
      buckets.push({ start: s, next: nextBucket(query.period, s) });
    }
    const groups = query.groupBy
      ? await this.counters.listLabels(
          rollupKeys.labels(query.groupBy),
          labelLimit(this.options.maxGroupValues ?? MAX_GROUP_VALUES),
        )
      : [];
    // Named values first, the catch-all groups last.
    groups.sort((a, b) => Number(a.startsWith('(')) - Number(b.startsWith('(')) || a.localeCompare(b));
    const scopes = [ALL, ...groups.map((g) => scopeOf(query.groupBy!, g))];

    const plan = new ReadPlan();
    const series = scopes.map((scope) => this.planSeries(plan, query, buckets, today, scope));
    const [current] = await Promise.all([this.currentCounts(query.groupBy, groups), plan.run(this.counters)]);
    const [all, ...perGroup] = series.map((finish, i) => finish(current[i]!));

    const report: AnalyticsReport = { metric: query.metric, period: query.period, ...all! };
    if (query.groupBy) {
      report.group_by = query.groupBy;
      report.groups = perGroup.map((s, i) => ({ group: groups[i]!, ...s }));
    }
    return report;
  }

  /**
   * Queues the reads of one scope's series and returns what builds it from them, given the scope's
   * user count now.
   */
  private planSeries(
    plan: ReadPlan,
    query: AnalyticsQuery,
    buckets: Bucket[],
    today: Date,
    scope: string,
  ): (currentUsers: number) => AnalyticsSeries {
    const first = buckets[0]!.start;
    const lastDay = new Date(Math.max(buckets.at(-1)!.next.getTime() - DAY_MS, today.getTime()));
    // Net change in users per day, from the first bucket to today (or the range's end, if later).
    const days: { day: Date; reg: () => number; net: () => number; login: () => number }[] = [];
    for (let d = first; d <= lastDay; d = new Date(d.getTime() + DAY_MS)) {
      const name = dayOf(d);
      const reg = plan.counter(rollupKeys.daily(name, 'reg', scope));
      const del = plan.counter(rollupKeys.daily(name, 'del', scope));
      const res = plan.counter(rollupKeys.daily(name, 'res', scope));
      const login = plan.counter(rollupKeys.daily(name, 'login', scope));
      days.push({ day: d, reg, net: () => reg() - del() + res(), login });
    }
    const active = buckets.map((b) => plan.distinct([rollupKeys.active(query.period, b.start, scope)]));
    const fresh = buckets.map((b) => plan.distinct([rollupKeys.newActive(query.period, b.start, scope)]));
    const dailyActive: (() => number)[] = [];
    for (let d = query.start; d <= query.end; d = new Date(d.getTime() + DAY_MS)) {
      dailyActive.push(plan.distinct([rollupKeys.active('day', d, scope)]));
    }
    const firstLast = plan.distinct([
      rollupKeys.active(query.period, buckets[0]!.start, scope),
      rollupKeys.active(query.period, buckets.at(-1)!.start, scope),
    ]);

    return (currentUsers) => {
      // Users at the end of each day: today's count, less what happened after that day.
      const totalAfter = new Map<number, number>();
      let total = currentUsers;
      for (let i = days.length - 1; i >= 0; i--) {
        totalAfter.set(days[i]!.day.getTime(), total);
        if (days[i]!.day <= today) total -= days[i]!.net();
      }
      const data = buckets.map((b, i): AnalyticsPoint => {
        const inBucket = days.filter((d) => d.day >= b.start && d.day < b.next);
        const activeUsers = active[i]!();
        const lastOfBucket = new Date(b.next.getTime() - DAY_MS);
        const point: AnalyticsPoint = {
          date: dayOf(b.start),
          total_users: Math.max(0, totalAfter.get(lastOfBucket.getTime()) ?? currentUsers),
          active_users: activeUsers,
          new_users: inBucket.reduce((sum, d) => sum + d.reg(), 0),
          returning_users: Math.max(0, activeUsers - fresh[i]!()),
        };
        if (query.metric === 'login_frequency') {
          const logins = inBucket.reduce((sum, d) => sum + d.login(), 0);
          point.logins = logins;
          point.logins_per_active_user = activeUsers > 0 ? round2(logins / activeUsers) : 0;
        }
        return point;
      });
      const dailyCounts = dailyActive.map((read) => read());
      const averageDailyActive =
        dailyCounts.length > 0 ? round2(dailyCounts.reduce((a, b) => a + b, 0) / dailyCounts.length) : 0;
      const startTotal = data[0]!.total_users;
      const endTotal = data.at(-1)!.total_users;
      const growthRate =
        startTotal > 0 ? round2(((endTotal - startTotal) / startTotal) * 100) : endTotal === 0 ? 0 : null;
      let retentionRate: number | null = null;
      const a = data[0]!.active_users;
      if (data.length > 1 && a > 0) {
        const b = data.at(-1)!.active_users;
        // |A ∩ B| = |A| + |B| − |A ∪ B|; HyperLogLog estimates can put it slightly out of bounds.
        const both = Math.min(Math.max(a + b - firstLast(), 0), a, b);
        retentionRate = round2((both / a) * 100);
      }
      return {
        data,
        summary: {
          average_daily_active: averageDailyActive,
          growth_rate: growthRate,
          retention_rate: retentionRate,
        },
      };
    };
  }

  /** Users now (not deleted): everyone first, then each group of `groups`. */
  private async currentCounts(groupBy: string | undefined, groups: readonly string[]): Promise<number[]> {
    const count = (where?: Expr) => this.users.count(where ? { where } : {});
    const field = groupBy === 'role' || groupBy === 'status' ? groupBy : `metadata.${groupBy}`;
    const named = groups.filter((g) => g !== NO_GROUP && g !== OTHER_GROUP);
    const [total, none, ...counts] = await Promise.all([
      count(),
      groupBy && groups.includes(NO_GROUP) ? count({ field, op: 'eq', value: null }) : Promise.resolve(0),
      ...named.map((value) => count({ field, op: 'eq', value })),
    ]);
    const byGroup = new Map(named.map((g, i) => [g, counts[i]!]));
    byGroup.set(NO_GROUP, none!);
    byGroup.set(OTHER_GROUP, Math.max(0, total! - none! - counts.reduce((a, b) => a + b, 0)));
    return [total!, ...groups.map((g) => byGroup.get(g) ?? 0)];
  }

  /** The rollup part of a user's activity summary. */
  async activitySummary(userId: string): Promise<ActivitySummary> {
    const today = new Date(Date.parse(dayOf(this.now())));
    const keys = [
      ...Array.from({ length: 7 }, (_, d) => rollupKeys.weekday(userId, d)),
      ...Array.from({ length: 24 }, (_, h) => rollupKeys.hour(userId, h)),
      ...Array.from({ length: 30 }, (_, i) =>
        rollupKeys.failed(userId, dayOf(new Date(today.getTime() - i * DAY_MS))),
      ),
      rollupKeys.sessionSeconds(userId),
      rollupKeys.sessions(userId),
    ];
    const values = await this.counters.getMany(keys);
    const weekdays = values.slice(0, 7);
    const hours = values.slice(7, 31);
    const failed = values.slice(31, 61).reduce((a, b) => a + b, 0);
    const [seconds, sessions] = values.slice(61) as [number, number];
    // Monday first on a tie, as the week starts.
    const day = argmax(weekdays, [1, 2, 3, 4, 5, 6, 0]);
    const hour = argmax(
      hours,
      Array.from({ length: 24 }, (_, h) => h),
    );
    return {
      average_session_duration: sessions > 0 ? Math.max(0, Math.round(seconds / sessions)) : null,
      most_active_day: day === undefined ? null : WEEKDAYS[day]!,
      preferred_login_time: hour === undefined ? null : `${pad(hour)}:00-${pad((hour + 1) % 24)}:00`,
      failed_logins_last_30_days: failed,
    };
  }

  /** How long daily rollups are kept, in days. */
  get retentionDays(): number {
    return this.options.retentionDays ?? DEFAULT_RETENTION_DAYS;
  }
}
