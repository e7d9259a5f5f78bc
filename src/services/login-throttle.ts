/**
 * Brute-force protection for sign-in. Each attempt is counted per account and per client address
 * with atomic counters (Redis or the embedded store) *before* the password is checked, so however
 * many requests race, no more than the limit reach the check. Past the limit the subject is locked;
 * each further lockout within a day doubles the lock time, up to a maximum. A successful sign-in
 * clears the account's count and does not count against the address.
 */
import type { CounterStore } from '../store/ports.js';

export interface LoginThrottleOptions {
  maxFailures: number;
  ipMaxFailures: number;
  windowS: number;
  lockoutBaseS: number;
  lockoutMaxS: number;
  now?: () => number;
}

export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfterS: number };

const LOCKOUT_MEMORY_S = 86_400;

export class LoginThrottle {
  private readonly now: () => number;

  constructor(
    private readonly counters: CounterStore,
    private readonly options: LoginThrottleOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  private secondsUntil(at: Date): number {
    return Math.max(1, Math.ceil((at.getTime() - this.now()) / 1000));
  }

  /** Counts one attempt for a subject; a number is the seconds the subject stays locked. */
  private async attempt(subject: string, max: number): Promise<number | undefined> {
    const lock = await this.counters.get(`login:lock:${subject}`);
    if (lock) return this.secondsUntil(lock.resetAt);
    const { value } = await this.counters.increment(`login:attempts:${subject}`, this.options.windowS);
    if (value <= max) {
      // A parallel attempt may have crossed the limit, locked and restarted the count after this one
      // read "not locked" above, so a low count alone proves nothing. The lock is set before the
      // count restarts, so reading it again now cannot miss it.
      const late = await this.counters.get(`login:lock:${subject}`);
      return late ? this.secondsUntil(late.resetAt) : undefined;
    }
    if (value === max + 1) {
      // Exactly one request sees the first count past the limit: it sets the lock.
      const level = (await this.counters.increment(`login:lockouts:${subject}`, LOCKOUT_MEMORY_S)).value;
      const duration = Math.min(this.options.lockoutBaseS * 2 ** (level - 1), this.options.lockoutMaxS);
      const created = await this.counters.increment(`login:lock:${subject}`, duration);
      await this.counters.reset(`login:attempts:${subject}`);
      return this.secondsUntil(created.resetAt);
    }
    const pending = await this.counters.get(`login:lock:${subject}`);
    return pending ? this.secondsUntil(pending.resetAt) : this.options.lockoutBaseS;
  }

  /** Call before checking a password; only proceed when allowed. */
  async begin(account: string, ip: string): Promise<ThrottleDecision> {
    const byIp = await this.attempt(`ip:${ip}`, this.options.ipMaxFailures);
    if (byIp !== undefined) return { allowed: false, retryAfterS: byIp };
    const byAccount = await this.attempt(`account:${account}`, this.options.maxFailures);
    if (byAccount !== undefined) return { allowed: false, retryAfterS: byAccount };
    return { allowed: true };
  }

  /** Call after a correct password. */
  async succeeded(account: string, ip: string): Promise<void> {
    await this.counters.reset(`login:attempts:account:${account}`);
    await this.counters.reset(`login:lockouts:account:${account}`);
    await this.counters.increment(`login:attempts:ip:${ip}`, this.options.windowS, -1);
  }
}
