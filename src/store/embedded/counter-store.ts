/** Windowed counters in the embedded SQLite file: each increment is one atomic upsert statement. */
import type {
  AdmitRequest,
  AdmitResult,
  AttemptGuard,
  AttemptVerdict,
  CounterChange,
  CounterStore,
  CounterValue,
  QuotaRequest,
  QuotaState,
} from '../ports.js';
import type { EmbeddedDatabase } from './database.js';

interface CounterRow {
  value: number;
  expires_at: number;
}

interface QuotaRow {
  remaining: number;
  used: number;
  credits: number;
  period_end: number;
}

const toQuota = (row: QuotaRow): QuotaState => ({
  remaining: Number(row.remaining),
  used: Number(row.used),
  credits: Number(row.credits),
  periodEnd: new Date(Number(row.period_end)),
});

/** How long the `level`-th lockout within the memory window lasts, in seconds. */
function lockSeconds(request: AttemptGuard, level: number): number {
  return Math.min(request.lockoutBaseSeconds * 2 ** (level - 1), request.lockoutMaxSeconds);
}

export function checkGuard(request: AttemptGuard): void {
  for (const name of [
    'windowSeconds',
    'lockoutBaseSeconds',
    'lockoutMaxSeconds',
    'lockoutMemorySeconds',
  ] as const) {
    if (!(request[name] > 0) || !Number.isFinite(request[name]))
      throw new RangeError(`${name} must be positive`);
  }
  for (const subject of request.subjects) {
    if (!Number.isSafeInteger(subject.limit) || subject.limit < 0)
      throw new RangeError('limit must be a non-negative integer');
  }
}

export function checkUnits(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative integer`);
}

const toValue = (row: CounterRow): CounterValue => ({
  value: Number(row.value),
  resetAt: new Date(row.expires_at),
});

export class EmbeddedCounterStore implements CounterStore {
  readonly kind = 'embedded' as const;
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly db: EmbeddedDatabase,
    private readonly options: { sweepIntervalMs?: number; now?: () => number } = {},
  ) {
    db.retain();
    if (options.sweepIntervalMs) {
      this.timer = setInterval(() => this.sweep(), options.sweepIntervalMs);
      this.timer.unref();
    }
  }

  private now(): number {
    return this.options.now ? this.options.now() : Date.now();
  }

  async increment(key: string, windowSeconds: number, by = 1): Promise<CounterValue> {
    return this.incrementNow(key, windowSeconds, by);
  }

  /** One upsert statement: atomic on its own, and usable inside a transaction. */
  private incrementNow(key: string, windowSeconds: number, by = 1): CounterValue {
    if (!(windowSeconds > 0)) throw new RangeError('windowSeconds must be positive');
    const now = this.now();
    const row = this.db.get<CounterRow>(
      `INSERT INTO counters (key, value, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET
         value = CASE WHEN counters.expires_at <= ? THEN excluded.value ELSE counters.value + excluded.value END,
         expires_at = CASE WHEN counters.expires_at <= ? THEN excluded.expires_at ELSE counters.expires_at END
       RETURNING value, expires_at`,
      key,
      by,
      now + Math.ceil(windowSeconds * 1000),
      now,
      now,
    )!;
    return toValue(row);
  }

  async get(key: string): Promise<CounterValue | null> {
    return this.getNow(key);
  }

  private getNow(key: string): CounterValue | null {
    const row = this.db.get<CounterRow>(
      'SELECT value, expires_at FROM counters WHERE key = ? AND expires_at > ?',
      key,
      this.now(),
    );
    return row ? toValue(row) : null;
  }

  async reset(key: string): Promise<void> {
    this.resetNow(key);
  }

  private resetNow(key: string): void {
    this.db.run('DELETE FROM counters WHERE key = ?', key);
  }

  async update(changes: CounterChange[]): Promise<void> {
    // A bad change throws inside the transaction, which then rolls back the ones before it.
    this.db.transaction(() => {
      for (const change of changes) {
        if ('reset' in change) this.resetNow(change.reset);
        else this.incrementNow(change.increment, change.windowSeconds, change.by ?? 1);
      }
    });
  }

  async guardAttempt(request: AttemptGuard): Promise<AttemptVerdict> {
    checkGuard(request);
    return this.db.transaction((): AttemptVerdict => {
      for (const [index, subject] of request.subjects.entries()) {
        const lock = this.getNow(subject.lock);
        if (lock) return { allowed: false, subject: index, lockedUntil: lock.resetAt };
        const { value } = this.incrementNow(subject.attempts, request.windowSeconds);
        if (value > subject.limit) {
          const level = this.incrementNow(subject.lockouts, request.lockoutMemorySeconds).value;
          const created = this.incrementNow(subject.lock, lockSeconds(request, level));
          this.resetNow(subject.attempts);
          return { allowed: false, subject: index, lockedUntil: created.resetAt };
        }
      }
      return { allowed: true };
    });
  }

  /**
   * Starts or restarts the subject's period: one upsert statement, so concurrent callers (in this
   * process or another one on the same file) see one period start, never two.
   */
  private startPeriod(key: string, request: QuotaRequest): void {
    const now = request.now.getTime();
    this.db.run(
      `INSERT INTO quotas (key, remaining, used, credits, period_end) VALUES (?, ?, 0, ?, ?)
       ON CONFLICT (key) DO UPDATE SET
         remaining = CASE WHEN quotas.period_end <= ? THEN excluded.remaining ELSE quotas.remaining END,
         used = CASE WHEN quotas.period_end <= ? THEN 0 ELSE quotas.used END,
         period_end = CASE WHEN quotas.period_end <= ? THEN excluded.period_end ELSE quotas.period_end END`,
      key,
      request.quota,
      request.credits,
      request.periodEnd.getTime(),
      now,
      now,
      now,
    );
  }

  private readQuota(key: string): QuotaState {
    const row = this.db.get<QuotaRow>(
      'SELECT remaining, used, credits, period_end FROM quotas WHERE key = ?',
      key,
    )!;
    return toQuota(row);
  }

  async consumeQuota(
    key: string,
    request: QuotaRequest & { amount: number },
  ): Promise<QuotaState & { granted: boolean }> {
    checkUnits(request.amount, 'amount');
    this.startPeriod(key, request);
    // One conditional statement takes the units: SET expressions all read the row as it was, so
    // the quota pays first and credits pay what the quota lacks.
    const taken = this.db.get<QuotaRow>(
      `UPDATE quotas SET
         remaining = MAX(0, remaining - ?),
         credits = credits - MAX(0, ? - remaining),
         used = used + ?
       WHERE key = ? AND remaining + credits >= MAX(?, 1)
       RETURNING remaining, used, credits, period_end`,
      request.amount,
      request.amount,
      request.amount,
      key,
      request.amount,
    );
    if (taken) return { ...toQuota(taken), granted: true };
    return { ...this.readQuota(key), granted: false };
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    // Each statement is atomic and runs without interleaving in this process; the quota is taken
    // only after every window counted the request within its limit.
    const windows: CounterValue[] = [];
    for (const w of request.windows) windows.push(await this.increment(w.key, w.windowSeconds));
    const limited = windows.some((v, i) => v.value > request.windows[i]!.limit);
    if (limited || !request.quota) return { windows, limited };
    const { key, ...quota } = request.quota;
    return { windows, limited, quota: await this.consumeQuota(key, quota) };
  }

  async setQuota(
    key: string,
    request: QuotaRequest,
    values: { remaining?: number; credits?: number },
  ): Promise<QuotaState> {
    if (values.remaining !== undefined) checkUnits(values.remaining, 'remaining');
    if (values.credits !== undefined) checkUnits(values.credits, 'credits');
    this.startPeriod(key, request);
    const row = this.db.get<QuotaRow>(
      `UPDATE quotas SET remaining = COALESCE(?, remaining), credits = COALESCE(?, credits)
       WHERE key = ? RETURNING remaining, used, credits, period_end`,
      values.remaining ?? null,
      values.credits ?? null,
      key,
    )!;
    return toQuota(row);
  }

  sweep(): number {
    if (this.closed) return 0;
    return this.db.run('DELETE FROM counters WHERE expires_at <= ?', this.now()).changes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.db.release();
  }
}
