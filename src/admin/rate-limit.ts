/**
 * Rate limits for the management API, per calling client (per address when unauthenticated), by the
 * client's plan: an hourly allowance and a per-second burst allowance, both counted with the shared
 * atomic counters (Redis when configured), so the limits hold across all instances. Every response
 * carries X-RateLimit-Limit/-Remaining/-Reset/-Window for the hourly allowance; a refusal is a 429
 * RATE_LIMIT_EXCEEDED with Retry-After.
 */
import type { Context, Next } from 'koa';

import { AppError } from '../errors/app-error.js';
import type { RatePlan } from '../services/plans.js';
import type { CounterStore, CounterValue } from '../store/ports.js';
import type { Principal } from './principal.js';

const HOUR_S = 3600;
const BURST_WINDOW_S = 1;

export interface RateLimitDeps {
  counters: CounterStore;
  /** The plan of a client (by client_id), or of anonymous callers (undefined). */
  planFor(clientId: string | undefined): Promise<RatePlan>;
  now?: () => number;
}

/**
 * Counts one request of `subject` against `plan`, sets the X-RateLimit-* headers, and throws
 * RATE_LIMIT_EXCEEDED (with Retry-After) when the hourly or the per-second allowance is used up.
 */
/** The two windows of a plan's rate, for CounterStore.admit. */
export function rateWindows(subject: string, plan: RatePlan) {
  return [
    { key: `ratelimit:hour:${subject}`, windowSeconds: HOUR_S, limit: plan.requests_per_hour },
    { key: `ratelimit:burst:${subject}`, windowSeconds: BURST_WINDOW_S, limit: plan.burst },
  ];
}

/**
 * Sets the X-RateLimit-* headers from the counted hour and burst windows, and throws
 * RATE_LIMIT_EXCEEDED (with Retry-After) when either allowance is used up.
 */
export function enforceRate(
  ctx: Context,
  plan: RatePlan,
  [hour, burst]: CounterValue[],
  now: () => number = Date.now,
): void {
  const resetS = Math.ceil(hour!.resetAt.getTime() / 1000);
  ctx.set('X-RateLimit-Limit', String(plan.requests_per_hour));
  ctx.set('X-RateLimit-Remaining', String(Math.max(0, plan.requests_per_hour - hour!.value)));
  ctx.set('X-RateLimit-Reset', String(resetS));
  ctx.set('X-RateLimit-Window', String(HOUR_S));
  ctx.set('X-RateLimit-Plan', plan.name);
  if (hour!.value > plan.requests_per_hour) {
    throw new AppError('RATE_LIMIT_EXCEEDED', {
      message: `The hourly limit of ${plan.requests_per_hour} requests of the ${plan.name} plan is used up`,
      retryAfter: Math.max(1, Math.ceil((hour!.resetAt.getTime() - now()) / 1000)),
    });
  }
  if (burst!.value > plan.burst) {
    throw new AppError('RATE_LIMIT_EXCEEDED', {
      message: `More than ${plan.burst} requests within one second (the ${plan.name} plan's burst allowance)`,
      retryAfter: Math.max(1, Math.ceil((burst!.resetAt.getTime() - now()) / 1000)),
    });
  }
}

/** Counts one request of `subject` against `plan` (see enforceRate). */
export async function countRequest(
  ctx: Context,
  counters: CounterStore,
  subject: string,
  plan: RatePlan,
  now: () => number = Date.now,
): Promise<void> {
  const { windows } = await counters.admit({ windows: rateWindows(subject, plan) });
  enforceRate(ctx, plan, windows, now);
}

export function rateLimit(deps: RateLimitDeps) {
  const now = deps.now ?? Date.now;
  return async (ctx: Context, next: Next) => {
    const principal = ctx.state.principal as Principal | undefined;
    const plan = await deps.planFor(principal?.clientId);
    const subject = principal ? `client:${principal.clientId}` : `ip:${ctx.ip}`;
    await countRequest(ctx, deps.counters, subject, plan, now);
    await next();
  };
}
