/**
 * A circuit breaker for one backend. Closed: operations run, and unavailability failures are
 * counted. When `failureThreshold` of them fall within `windowMs` it opens: operations fail at once
 * (microseconds, not a timeout each) while a probe (the backend's ping, under its own deadline) is
 * sent every `probeIntervalMs`; the first probe that succeeds closes it again. Only "the backend did not
 * answer" counts as a failure; an answer that is an error (a conflict, a script error) is the
 * backend working.
 *
 * Successes do not reset the count: operations answered from a cache in front of the backend (users,
 * clients) succeed while every real round trip hangs, and resetting on them kept the breaker closed
 * for seconds during a hang. A few stray failures open it for one probe interval at most, since the
 * probe closes it as soon as the backend answers a ping.
 */
import { StoreUnavailableError } from './errors.js';

export type BreakerState = 'closed' | 'open';

const MAX_OUTSTANDING_PROBES = 4;

export interface CircuitBreakerOptions {
  /** Backend name for messages and metrics: embedded, mongo, redis. */
  backend: string;
  failureThreshold: number;
  /** The failures counted are those of the last windowMs (default 10 s). */
  windowMs?: number;
  probeIntervalMs: number;
  /** Resolves when the backend answers. */
  probe(): Promise<void>;
  onStateChange?(state: BreakerState, backend: string, cause?: unknown): void;
}

export class CircuitBreaker {
  /** When recent failures happened (oldest first), at most failureThreshold of them. */
  private failures: number[] = [];
  private openedAt = 0;
  private probing: NodeJS.Timeout | undefined;
  private lastCause: unknown;
  state: BreakerState = 'closed';

  constructor(private readonly options: CircuitBreakerOptions) {}

  get backend(): string {
    return this.options.backend;
  }

  /** Throws at once while open. */
  admit(): void {
    if (this.state === 'open') {
      throw new StoreUnavailableError(
        `${this.options.backend} is unavailable (failing fast since ${new Date(this.openedAt).toISOString()})`,
        { cause: this.lastCause, backend: this.options.backend },
      );
    }
  }

  failed(cause: unknown): void {
    this.lastCause = cause;
    if (this.state !== 'closed') return;
    const now = Date.now();
    const windowMs = this.options.windowMs ?? 10_000;
    this.failures.push(now);
    if (this.failures.length > this.options.failureThreshold) this.failures.shift();
    if (this.failures.length >= this.options.failureThreshold && now - this.failures[0]! <= windowMs) {
      this.open(cause);
    }
  }

  private open(cause: unknown): void {
    this.state = 'open';
    this.openedAt = Date.now();
    this.options.onStateChange?.('open', this.options.backend, cause);
    // A probe every interval, without waiting for the one before: a ping sent while the backend hung
    // may only fail at its deadline, and waiting for it kept the breaker open for that long after the
    // backend was back. A few may be outstanding at once; the first that succeeds closes the breaker.
    let outstanding = 0;
    this.probing = setInterval(() => {
      if (outstanding >= MAX_OUTSTANDING_PROBES) return;
      outstanding += 1;
      this.options.probe().then(
        () => {
          outstanding -= 1;
          this.close();
        },
        (err: unknown) => {
          outstanding -= 1;
          this.lastCause = err;
        },
      );
    }, this.options.probeIntervalMs);
    this.probing.unref();
  }

  private close(): void {
    if (this.state === 'closed') return;
    this.stop();
    this.state = 'closed';
    this.failures = [];
    this.options.onStateChange?.('closed', this.options.backend);
  }

  stop(): void {
    if (this.probing) clearInterval(this.probing);
    this.probing = undefined;
  }
}
