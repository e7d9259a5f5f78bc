/**
 * Plans: what a subscriber may use. A plan sets a request rate (requests per hour, with a per-second
 * burst allowance), a quota of units per period (for example conversations per month), and the
 * credits a subscriber starts with (spent once a period's quota is used up). Users are on a plan
 * (their own `plan`, else the default); service clients too (their `plan` metadata).
 *
 * The built-in plans basic, professional and enterprise always exist: their definitions come from
 * code (enterprise's rate from configuration) until an administrator saves a changed one, which is
 * then stored like a custom plan. Built-in plans cannot be deleted.
 */
import { AppError } from '../errors/app-error.js';
import type { AuditService } from './audit.js';
import type { Context } from './users.js';
import { StoreConflictError } from '../store/errors.js';
import type {
  EventBus,
  NewPlan,
  PlanPatch,
  PlanRecord,
  PlanRepository,
  UserRepository,
} from '../store/ports.js';

/** The part of a plan the rate limiter needs. */
export interface RatePlan {
  name: string;
  requests_per_hour: number;
  /** Requests allowed within one second. */
  burst: number;
}

export type Plan = Omit<PlanRecord, 'created_at' | 'updated_at'> & {
  built_in: boolean;
  created_at: Date | null;
  updated_at: Date | null;
};

export const DEFAULT_PLAN = 'basic';
export const BUILT_IN_PLAN_NAMES = ['basic', 'professional', 'enterprise'] as const;
const CHANNEL = 'plans';

export function builtInPlans(enterprise: {
  requestsPerHour: number;
  burst: number;
}): Record<string, Omit<PlanRecord, 'created_at' | 'updated_at'>> {
  return {
    basic: {
      name: 'basic',
      requests_per_hour: 1_000,
      burst: 50,
      quota: 1_000,
      quota_period: 'month',
      credits: 0,
    },
    professional: {
      name: 'professional',
      requests_per_hour: 10_000,
      burst: 200,
      quota: 10_000,
      quota_period: 'month',
      credits: 0,
    },
    enterprise: {
      name: 'enterprise',
      requests_per_hour: enterprise.requestsPerHour,
      burst: enterprise.burst,
      quota: 1_000_000,
      quota_period: 'month',
      credits: 0,
    },
  };
}

export class PlanService {
  private cache: { at: number; plans: Map<string, Plan> } | undefined;

  constructor(
    private readonly repo: PlanRepository,
    private readonly users: UserRepository,
    private readonly builtIn: Record<string, Omit<PlanRecord, 'created_at' | 'updated_at'>>,
    private readonly events: EventBus,
    private readonly audit: AuditService,
    private readonly cacheTtlMs = 5000,
  ) {
    events.subscribe(CHANNEL, () => {
      this.cache = undefined;
    });
  }

  private async load(): Promise<Map<string, Plan>> {
    const now = Date.now();
    if (this.cache && now - this.cache.at < this.cacheTtlMs) return this.cache.plans;
    const plans = new Map<string, Plan>();
    for (const plan of Object.values(this.builtIn)) {
      plans.set(plan.name, { ...plan, built_in: true, created_at: null, updated_at: null });
    }
    for (const stored of await this.repo.list()) {
      plans.set(stored.name, { ...stored, built_in: stored.name in this.builtIn });
    }
    this.cache = { at: now, plans };
    return plans;
  }

  private async changed(): Promise<void> {
    this.cache = undefined;
    await this.events.publish(CHANNEL, 'changed');
  }

  async list(): Promise<Plan[]> {
    return [...(await this.load()).values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Every plan by name (for rate limits). */
  async all(): Promise<Record<string, Plan>> {
    return Object.fromEntries(await this.load());
  }

  async find(name: string): Promise<Plan | undefined> {
    return (await this.load()).get(name);
  }

  async get(name: string): Promise<Plan> {
    const plan = await this.find(name);
    if (!plan) throw new AppError('PLAN_NOT_FOUND', { message: `There is no plan named "${name}"` });
    return plan;
  }

  /** The plan a user is on: theirs, or the default one (also when theirs was deleted). */
  async forUser(user: { plan: string | null }): Promise<Plan> {
    const plans = await this.load();
    return (user.plan ? plans.get(user.plan) : undefined) ?? plans.get(DEFAULT_PLAN)!;
  }

  async create(input: NewPlan, context: Context): Promise<Plan> {
    if ((await this.load()).has(input.name)) throw this.conflict(input.name);
    try {
      const created = await this.repo.create(input);
      await this.changed();
      await this.audit.record({
        ...context.actor,
        request: context.request,
        action: 'plan.created',
        target_type: 'plan',
        target_id: created.name,
        before: null,
        after: { ...created },
      });
      return { ...created, built_in: false };
    } catch (err) {
      if (err instanceof StoreConflictError) throw this.conflict(input.name);
      throw err;
    }
  }

  async update(name: string, patch: PlanPatch, context: Context): Promise<Plan> {
    const before = await this.get(name);
    let stored = await this.repo.update(name, patch);
    if (!stored && before.built_in) {
      // The first change of a built-in plan stores it, with the change applied.
      const base = this.builtIn[name]!;
      try {
        stored = await this.repo.create({ ...base, ...definedOnly(patch) });
      } catch (err) {
        if (!(err instanceof StoreConflictError)) throw err;
        stored = await this.repo.update(name, patch); // another instance stored it meanwhile
      }
    }
    if (!stored) throw new AppError('PLAN_NOT_FOUND');
    await this.changed();
    const after: Plan = { ...stored, built_in: before.built_in };
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'plan.updated',
      target_type: 'plan',
      target_id: name,
      before: { ...before },
      after: { ...after },
    });
    return after;
  }

  async remove(name: string, context: Context): Promise<void> {
    const plan = await this.get(name);
    if (plan.built_in) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: `The built-in plan "${name}" cannot be deleted`,
        details: [{ field: 'name', issue: 'Built-in plans cannot be deleted' }],
      });
    }
    const subscribers = await this.users.count({
      where: { op: 'eq', field: 'plan', value: name },
      deleted: 'include',
    });
    if (subscribers > 0) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: `${subscribers} user(s) are on the plan "${name}"; move them to another plan first`,
        details: [{ field: 'name', issue: 'Plan is in use' }],
      });
    }
    await this.repo.remove(name);
    await this.changed();
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'plan.deleted',
      target_type: 'plan',
      target_id: name,
      before: { ...plan },
      after: null,
    });
  }

  private conflict(name: string): AppError {
    return new AppError('CONFLICT', {
      message: `A plan named "${name}" already exists`,
      details: [{ field: 'name', issue: 'Already exists', provided: name }],
    });
  }
}

function definedOnly<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}
