/**
 * Quotas: how many units (for example conversations) a subscriber may still use in the current
 * period of their plan, and their credits. The numbers live in the shared counter store (Redis when
 * configured), where consumeQuota takes a unit in one atomic step, so concurrent gateways on any
 * number of instances never grant more than the quota. Periods are calendar days or months in UTC.
 */
import type {
  AdmitRequest,
  ApiKeyOwnerType,
  CounterStore,
  CounterValue,
  QuotaPeriod,
  QuotaState,
} from '../store/ports.js';
import type { Plan } from './plans.js';

export interface QuotaOwner {
  type: ApiKeyOwnerType;
  id: string;
}

export interface QuotaStatus extends QuotaState {
  periodStart: Date;
}

/** The UTC day or month that contains `now`: [start, end). */
export function periodOf(period: QuotaPeriod, now: Date): { start: Date; end: Date } {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  if (period === 'day') {
    const start = new Date(Date.UTC(y, m, now.getUTCDate()));
    return { start, end: new Date(start.getTime() + 86_400_000) };
  }
  return { start: new Date(Date.UTC(y, m, 1)), end: new Date(Date.UTC(y, m + 1, 1)) };
}

export class QuotaService {
  constructor(
    private readonly counters: CounterStore,
    /** The clock periods are computed with; tests move it instead of waiting. */
    public now: () => Date = () => new Date(),
  ) {}

  private key(owner: QuotaOwner): string {
    return `quota:${owner.type}:${owner.id}`;
  }

  private request(plan: Plan) {
    const now = this.now();
    const { start, end } = periodOf(plan.quota_period, now);
    return { start, base: { quota: plan.quota, credits: plan.credits, periodEnd: end, now } };
  }

  /** The period a stored state belongs to starts one period before its end. */
  private status(plan: Plan, state: QuotaState, fallbackStart: Date): QuotaStatus {
    const current = periodOf(plan.quota_period, new Date(state.periodEnd.getTime() - 1));
    return {
      ...state,
      periodStart: current.end.getTime() === state.periodEnd.getTime() ? current.start : fallbackStart,
    };
  }

  /** Takes `amount` units (0: only checks that one is left). */
  async consume(owner: QuotaOwner, plan: Plan, amount: number): Promise<QuotaStatus & { granted: boolean }> {
    const { start, base } = this.request(plan);
    const state = await this.counters.consumeQuota(this.key(owner), { ...base, amount });
    return { ...this.status(plan, state, start), granted: state.granted };
  }

  /**
   * Counts a request in its rate windows and, unless one is over its limit, takes `amount` units:
   * one step in the counter store (one Redis round trip), for the path in front of every request.
   */
  async admit(
    owner: QuotaOwner,
    plan: Plan,
    amount: number,
    windows: AdmitRequest['windows'],
  ): Promise<{ windows: CounterValue[]; quota?: QuotaStatus & { granted: boolean } }> {
    const { start, base } = this.request(plan);
    const result = await this.counters.admit({ windows, quota: { key: this.key(owner), ...base, amount } });
    if (!result.quota) return { windows: result.windows };
    return {
      windows: result.windows,
      quota: { ...this.status(plan, result.quota, start), granted: result.quota.granted },
    };
  }

  async read(owner: QuotaOwner, plan: Plan): Promise<QuotaStatus> {
    const { granted: _granted, ...status } = await this.consume(owner, plan, 0);
    return status;
  }

  /** An administrator's adjustment of what is left in the current period, or of the credits. */
  async set(
    owner: QuotaOwner,
    plan: Plan,
    values: { remaining?: number; credits?: number },
  ): Promise<QuotaStatus> {
    const { start, base } = this.request(plan);
    const state = await this.counters.setQuota(this.key(owner), base, values);
    return this.status(plan, state, start);
  }
}
