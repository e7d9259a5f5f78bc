/** Windowed counters in the embedded SQLite file: each increment is one atomic upsert statement. */
import type { CounterStore, CounterValue } from '../ports.js';
import type { EmbeddedDatabase } from './database.js';

interface CounterRow {
  value: number;
  expires_at: number;
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
    const row = this.db.get<CounterRow>(
      'SELECT value, expires_at FROM counters WHERE key = ? AND expires_at > ?',
      key,
      this.now(),
    );
    return row ? toValue(row) : null;
  }

  async reset(key: string): Promise<void> {
    this.db.run('DELETE FROM counters WHERE key = ?', key);
  }

  sweep(): number {
    if (this.closed) return 0;
    return this.db.run('DELETE FROM counters WHERE expires_at <= ?', this.now()).changes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.db.release();
  }
}
