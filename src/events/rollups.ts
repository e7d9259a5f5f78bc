/**
 * Analytics rollups: an event consumer that keeps, as events arrive, the counters and distinct-count
 * sets that GET /v2/analytics/users and a user's activity summary read (src/services/analytics.ts).
 * Nothing here scans events: every figure is a counter or a distinct set in the counter store,
 * named by the key layout below, each with a TTL (the retention).
 *
 * Key layout (all under `an:`):
 *   an:c:<day>:<metric>:<scope>   daily counter; metric reg (registrations), del (deletions),
 *                                 res (restorations), login, fail (failed sign-ins)
 *   an:a:<bucket>:<scope>         distinct set: users who signed in during the bucket
 *   an:n:<bucket>:<scope>         distinct set: those of them whose account was created in the bucket
 *                                 (returning users = the first minus this one)
 *   an:l:<dimension>              label set: the group values seen for a dimension
 *   an:u:<user>:wd:<0-6>          sign-ins by UTC weekday (0 = Sunday)
 *   an:u:<user>:h:<0-23>          sign-ins by UTC hour
 *   an:u:<user>:f:<day>           failed sign-ins that day (kept 31 days)
 *   an:u:<user>:ss, an:u:<user>:sn  session seconds and sessions, for the average session duration
 *
 * A bucket is `<period>:<first day>` (`week:2026-01-05`, weeks start on Monday); a scope is `*`
 * (everyone) or `<dimension>=<value>` (`role=admin`, `department=sales`).
 */
import type { CounterChange, CounterStore, DistinctAddition, JsonValue } from '../store/ports.js';
import type { DomainEvent, EventUser } from './catalog.js';
import type { EventConsumer } from './recorder.js';

export const PERIODS = ['day', 'week', 'month', 'quarter'] as const;
export type Period = (typeof PERIODS)[number];

export const DAY_MS = 86_400_000;
const DAY_S = 86_400;

/** Group values beyond this many per dimension are counted as OTHER_GROUP. */
export const MAX_GROUP_VALUES = 50;
export const OTHER_GROUP = '(other)';
/** A label set holds up to the cap of values, plus `(none)` and `(other)`. */
export const labelLimit = (maxGroupValues: number) => maxGroupValues + 2;
/** The group of users who have no value for a metadata dimension. */
export const NO_GROUP = '(none)';
/** Longer group values are cut to this length. */
const MAX_GROUP_LENGTH = 64;

export interface RollupOptions {
  /** Metadata keys that analytics may group by, besides role and status. */
  metadataKeys?: readonly string[];
  /** How long daily rollups are kept. */
  retentionDays?: number;
  /** A session's full lifetime (SESSION_TTL_S): what a sign-in adds to session time until its sign-out corrects it. */
  sessionTtlSeconds: number;
  maxGroupValues?: number;
}

export const DEFAULT_METADATA_KEYS = ['department', 'location'] as const;
export const DEFAULT_RETENTION_DAYS = 400;
/** Failed sign-ins per user per day are only needed for the last 30 days. */
const FAILED_RETENTION_S = 31 * DAY_S;

/** `2026-01-05` of a date, in UTC. */
export const dayOf = (at: Date): string => at.toISOString().slice(0, 10);

/** Midnight UTC of a `YYYY-MM-DD` day. */
export const parseDay = (day: string): Date => new Date(`${day}T00:00:00.000Z`);

/** The first day of the bucket of `period` that holds `day`. */
/**
 * Midnight UTC of a day given by year, month (0-based) and day, which may overflow as in Date.UTC.
 * Date.UTC reads years 0 to 99 as 1900 to 1999, so the day is computed 400 years later (the
 * Gregorian calendar repeats exactly every 400 years: same leap days, same weekdays) and moved back.
 */
function utcDay(year: number, month: number, date: number): Date {
  const at = new Date(Date.UTC(year + 400, month, date));
  at.setUTCFullYear(at.getUTCFullYear() - 400);
  return at;
}

export function bucketStart(period: Period, day: Date): Date {
  const y = day.getUTCFullYear();
  const m = day.getUTCMonth();
  switch (period) {
    case 'day':
      return utcDay(y, m, day.getUTCDate());
    case 'week': {
      const sinceMonday = (day.getUTCDay() + 6) % 7;
      return utcDay(y, m, day.getUTCDate() - sinceMonday);
    }
    case 'month':
      return utcDay(y, m, 1);
    case 'quarter':
      return utcDay(y, m - (m % 3), 1);
  }
}

/** The first day of the next bucket. */
export function nextBucket(period: Period, start: Date): Date {
  const y = start.getUTCFullYear();
  const m = start.getUTCMonth();
  const d = start.getUTCDate();
  switch (period) {
    case 'day':
      return utcDay(y, m, d + 1);
    case 'week':
      return utcDay(y, m, d + 7);
    case 'month':
      return utcDay(y, m + 1, 1);
    case 'quarter':
      return utcDay(y, m + 3, 1);
  }
}

export const ALL = '*';
export const scopeOf = (dimension: string, value: string): string => `${dimension}=${value}`;

export const rollupKeys = {
  daily: (day: string, metric: 'reg' | 'del' | 'res' | 'login' | 'fail', scope: string) =>
    `an:c:${day}:${metric}:${scope}`,
  active: (period: Period, start: Date, scope: string) => `an:a:${period}:${dayOf(start)}:${scope}`,
  newActive: (period: Period, start: Date, scope: string) => `an:n:${period}:${dayOf(start)}:${scope}`,
  labels: (dimension: string) => `an:l:${dimension}`,
  weekday: (user: string, weekday: number) => `an:u:${user}:wd:${weekday}`,
  hour: (user: string, hour: number) => `an:u:${user}:h:${hour}`,
  failed: (user: string, day: string) => `an:u:${user}:f:${day}`,
  sessionSeconds: (user: string) => `an:u:${user}:ss`,
  sessions: (user: string) => `an:u:${user}:sn`,
};

/** The dimensions a rollup groups by: role, status and the configured metadata keys. */
export function dimensionsOf(options: Pick<RollupOptions, 'metadataKeys'>): string[] {
  return ['role', 'status', ...(options.metadataKeys ?? DEFAULT_METADATA_KEYS)];
}

function rawGroupValue(user: EventUser, dimension: string): string {
  if (dimension === 'role') return user.role;
  if (dimension === 'status') return user.status;
  const value: JsonValue | undefined = user.metadata[dimension];
  if (typeof value === 'string' && value.trim() !== '') return value.trim().slice(0, MAX_GROUP_LENGTH);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return NO_GROUP;
}

/** What one batch of events changes: counter increments (merged by key) and set additions. */
class Batch {
  readonly increments = new Map<string, { by: number; windowSeconds: number }>();
  readonly sets = new Map<string, { members: Set<string>; ttlSeconds: number }>();

  count(key: string, windowSeconds: number, by = 1): void {
    const found = this.increments.get(key);
    if (found) found.by += by;
    else this.increments.set(key, { by, windowSeconds });
  }

  add(key: string, member: string, ttlSeconds: number): void {
    const found = this.sets.get(key);
    if (found) found.members.add(member);
    else this.sets.set(key, { members: new Set([member]), ttlSeconds });
  }

  changes(): CounterChange[] {
    return [...this.increments]
      .filter(([, v]) => v.by !== 0)
      .map(([key, v]) => ({ increment: key, windowSeconds: v.windowSeconds, by: v.by }));
  }

  additions(): DistinctAddition[] {
    return [...this.sets].map(([key, v]) => ({ key, members: [...v.members], ttlSeconds: v.ttlSeconds }));
  }
}

export class AnalyticsRollups implements EventConsumer {
  readonly name = 'analytics-rollups';
  readonly dimensions: readonly string[];
  private readonly retentionS: number;
  private readonly maxGroupValues: number;
  /** The group values this instance has seen, per dimension (loaded from the label sets once). */
  private readonly labels = new Map<string, Promise<Set<string>>>();

  constructor(
    private readonly counters: CounterStore,
    private readonly options: RollupOptions,
  ) {
    this.dimensions = dimensionsOf(options);
    this.retentionS = (options.retentionDays ?? DEFAULT_RETENTION_DAYS) * DAY_S;
    this.maxGroupValues = options.maxGroupValues ?? MAX_GROUP_VALUES;
  }

  async consume(events: readonly DomainEvent[]): Promise<void> {
    const batch = new Batch();
    const newLabels = new Map<string, Set<string>>();
    for (const event of events) await this.apply(event, batch, newLabels);
    const changes = batch.changes();
    const additions = batch.additions();
    await Promise.all([
      changes.length > 0 ? this.counters.update(changes) : undefined,
      additions.length > 0 ? this.counters.addDistinct(additions) : undefined,
      ...[...newLabels].map(([dimension, values]) =>
        this.counters.addLabels(rollupKeys.labels(dimension), [...values], this.retentionS),
      ),
    ]);
  }

  /** `*` and one scope per dimension for this user. */
  private async scopesOf(user: EventUser, newLabels: Map<string, Set<string>>): Promise<string[]> {
    const scopes = [ALL];
    for (const dimension of this.dimensions) {
      scopes.push(scopeOf(dimension, await this.groupValue(user, dimension, newLabels)));
    }
    return scopes;
  }

  /**
   * The user's group for a dimension. A dimension keeps at most maxGroupValues values (per
   * instance that first sees them); later new values count as OTHER_GROUP, so free-text metadata
   * cannot multiply the keys without bound.
   */
  private async groupValue(
    user: EventUser,
    dimension: string,
    newLabels: Map<string, Set<string>>,
  ): Promise<string> {
    const value = rawGroupValue(user, dimension);
    let known = this.labels.get(dimension);
    if (!known) {
      known = this.counters
        .listLabels(rollupKeys.labels(dimension), labelLimit(this.maxGroupValues))
        .then((found) => new Set(found));
      this.labels.set(dimension, known);
      // A failed read is tried again with the next event rather than remembered.
      known.catch(() => this.labels.delete(dimension));
    }
    const set = await known;
    if (set.has(value)) return value;
    const named = set.size - Number(set.has(NO_GROUP)) - Number(set.has(OTHER_GROUP));
    const counted = value === NO_GROUP || named < this.maxGroupValues ? value : OTHER_GROUP;
    if (set.has(counted)) return counted;
    set.add(counted);
    let pending = newLabels.get(dimension);
    if (!pending) newLabels.set(dimension, (pending = new Set()));
    pending.add(counted);
    return counted;
  }

  private async apply(event: DomainEvent, batch: Batch, newLabels: Map<string, Set<string>>): Promise<void> {
    const at = new Date(event.timestamp);
    const day = dayOf(at);
    const keep = this.retentionS;
    const daily = async (user: EventUser | null, metric: 'reg' | 'del' | 'res' | 'login' | 'fail') => {
      const scopes = user ? await this.scopesOf(user, newLabels) : [ALL];
      for (const scope of scopes) batch.count(rollupKeys.daily(day, metric, scope), keep);
    };
    switch (event.type) {
      case 'user.created':
        return daily(event.data.user, 'reg');
      case 'user.deleted':
        // A permanent deletion of a user already soft-deleted was counted when it was soft-deleted.
        if (event.data.permanent && event.data.was_soft_deleted) return;
        return daily(event.data.user, 'del');
      case 'user.restored':
        return daily(event.data.user, 'res');
      case 'user.login_failed':
        await daily(event.data.user, 'fail');
        if (event.data.user) batch.count(rollupKeys.failed(event.data.user.id, day), FAILED_RETENTION_S);
        return;
      case 'user.login': {
        const user = event.data.user;
        const scopes = await this.scopesOf(user, newLabels);
        const created = new Date(user.created_at);
        for (const scope of scopes) {
          batch.count(rollupKeys.daily(day, 'login', scope), keep);
          for (const period of PERIODS) {
            const start = bucketStart(period, at);
            batch.add(rollupKeys.active(period, start, scope), user.id, keep);
            if (created >= start) batch.add(rollupKeys.newActive(period, start, scope), user.id, keep);
          }
        }
        batch.count(rollupKeys.weekday(user.id, at.getUTCDay()), keep);
        batch.count(rollupKeys.hour(user.id, at.getUTCHours()), keep);
        // Until its sign-out says otherwise, a session is taken to last its full lifetime.
        batch.count(rollupKeys.sessionSeconds(user.id), keep, this.options.sessionTtlSeconds);
        batch.count(rollupKeys.sessions(user.id), keep);
        return;
      }
      case 'user.logout': {
        const signedIn = event.data.signed_in_at ? new Date(event.data.signed_in_at) : null;
        if (!signedIn || Number.isNaN(signedIn.getTime())) return;
        const lifetime = this.options.sessionTtlSeconds;
        const lasted = Math.max(0, Math.round((at.getTime() - signedIn.getTime()) / 1000));
        // A sign-out after the lifetime ended finds its session counted in full already.
        if (lasted < lifetime)
          batch.count(rollupKeys.sessionSeconds(event.data.user.id), keep, lasted - lifetime);
        return;
      }
      default:
        return;
    }
  }
}

/** The analytics consumer to add to the event recorder (`recorder.addConsumer(...)`). */
export function analyticsConsumer(counters: CounterStore, options: RollupOptions): AnalyticsRollups {
  return new AnalyticsRollups(counters, options);
}
