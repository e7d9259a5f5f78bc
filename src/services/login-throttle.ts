/**
 * Brute-force protection for sign-in. Each attempt is counted per account and per client address
 * *before* the password is checked, in one atomic step of the counter store (one Lua script on
 * Redis, one transaction in the embedded file: CounterStore.guardAttempt), so however many requests
 * race, on however many instances, no more than the limit reach the check. Past the limit the subject is locked;
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

/** accountLockedNow: this attempt is the first to find the account locked (once per lock). */
export type ThrottleDecision =
  { allowed: true } | { allowed: false; retryAfterS: number; accountLockedNow: boolean };

const LOCKOUT_MEMORY_S = 86_400;

/** The counters that guard one subject (`ip:…` or `account:…`). */
function subject(name: string, limit: number) {
  return {
    attempts: `login:attempts:${name}`,
    lock: `login:lock:${name}`,
    lockouts: `login:lockouts:${name}`,
    limit,
  };
}

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

  /** Call before checking a password; only proceed when allowed. */
  async begin(account: string, ip: string): Promise<ThrottleDecision> {
    // The address first: a locked address does not count against the account it tried.
    const verdict = await this.counters.guardAttempt({
      subjects: [
        subject(`ip:${ip}`, this.options.ipMaxFailures),
        subject(`account:${account}`, this.options.maxFailures),
      ],
      windowSeconds: this.options.windowS,
      lockoutBaseSeconds: this.options.lockoutBaseS,
      lockoutMaxSeconds: this.options.lockoutMaxS,
      lockoutMemorySeconds: LOCKOUT_MEMORY_S,
    });
    if (verdict.allowed) return { allowed: true };
    const retryAfterS = this.secondsUntil(verdict.lockedUntil);
    let accountLockedNow = false;
    if (verdict.subject === 1) {
      // A marker living as long as the lock: the first refusal to count it is the one to report.
      const noticed = await this.counters.increment(`login:lock-noticed:account:${account}`, retryAfterS);
      accountLockedNow = noticed.value === 1;
    }
    return { allowed: false, retryAfterS, accountLockedNow };
  }

  /** Call after a correct password. */
  async succeeded(account: string, ip: string): Promise<void> {
    await this.counters.update([
      { reset: `login:attempts:account:${account}` },
      { reset: `login:lockouts:account:${account}` },
      { increment: `login:attempts:ip:${ip}`, windowSeconds: this.options.windowS, by: -1 },
    ]);
  }
}
