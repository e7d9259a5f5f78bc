/**
 * Plans: what a caller may use. Here, the management API's request rate (requests per hour, and a
 * burst allowance per second). The three built-in plans are always there; enterprise limits come
 * from configuration.
 */
export interface RatePlan {
  name: string;
  requests_per_hour: number;
  /** Requests allowed within one second. */
  burst: number;
}

export const DEFAULT_PLAN = 'basic';

export function builtInPlans(enterprise: {
  requestsPerHour: number;
  burst: number;
}): Record<string, RatePlan> {
  return {
    basic: { name: 'basic', requests_per_hour: 1_000, burst: 50 },
    professional: { name: 'professional', requests_per_hour: 10_000, burst: 200 },
    enterprise: {
      name: 'enterprise',
      requests_per_hour: enterprise.requestsPerHour,
      burst: enterprise.burst,
    },
  };
}
