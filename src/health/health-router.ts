/**
 * /health/live (the process answers), /health/ready (this instance can serve: started, listening,
 * signing keys loaded, not shutting down) and /health (every store checked, with latency and the
 * state of its circuit breaker, for people, dashboards and alerts).
 *
 * Readiness deliberately leaves the shared stores out. They are shared: when Redis or MongoDB stalls,
 * every replica would turn unready at the same moment, and a Kubernetes Service would have no
 * endpoint left, so clients would get connection errors instead of the fast 503s with Retry-After
 * each instance gives while the store is away (see docs/deploying.md). A store outage shows on
 * /health, in the metrics and in every answer that needs the store.
 */
import Router from '@koa/router';
import type { Logger } from 'pino';

export interface HealthCheck {
  /** Which backend serves this dependency (embedded, mongo, redis). */
  backend: string;
  check(): Promise<void>;
}

export interface HealthDeps {
  checks: Record<string, HealthCheck>;
  isShuttingDown(): boolean;
  /** Problems keeping this instance from serving (not started, not listening, no keys); empty: ready. */
  notReadyBecause?(): string[];
  /** Circuit breaker state per backend in use. */
  breakers?(): Record<string, 'open' | 'closed'>;
  log: Logger;
  timeoutMs?: number;
}

export interface CheckResult {
  healthy: boolean;
  backend: string;
  latency_ms: number;
}

async function runCheck(
  name: string,
  check: HealthCheck,
  timeoutMs: number,
  log: Logger,
): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check.check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return {
      healthy: true,
      backend: check.backend,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
    };
  } catch (err) {
    log.warn({ check: name, backend: check.backend, err }, 'health check failed');
    return { healthy: false, backend: check.backend, latency_ms: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
  }
}

export function healthRouter(deps: HealthDeps): Router {
  const timeoutMs = deps.timeoutMs ?? 2000;
  const router = new Router();

  const runAll = async () => {
    const entries = await Promise.all(
      Object.entries(deps.checks).map(
        async ([name, check]) => [name, await runCheck(name, check, timeoutMs, deps.log)] as const,
      ),
    );
    return Object.fromEntries(entries) as Record<string, CheckResult>;
  };

  router.get('/health/live', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });

  router.get('/health/ready', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (deps.isShuttingDown()) {
      ctx.status = 503;
      ctx.body = { status: 'shutting_down' };
      return;
    }
    const reasons = deps.notReadyBecause?.() ?? [];
    ctx.status = reasons.length === 0 ? 200 : 503;
    ctx.body = reasons.length === 0 ? { status: 'ready' } : { status: 'not_ready', reasons };
  });

  router.get('/health', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const checks = await runAll();
    const breakers = deps.breakers?.() ?? {};
    const withBreakers = Object.fromEntries(
      Object.entries(checks).map(([name, check]) => [
        name,
        { ...check, circuit: breakers[check.backend] ?? 'closed' },
      ]),
    );
    const healthy = Object.values(checks).every((c) => c.healthy) && !deps.isShuttingDown();
    ctx.status = healthy ? 200 : 503;
    ctx.body = {
      status: deps.isShuttingDown() ? 'shutting_down' : healthy ? 'healthy' : 'unhealthy',
      ready: !deps.isShuttingDown() && (deps.notReadyBecause?.() ?? []).length === 0,
      timestamp: new Date().toISOString(),
      checks: withBreakers,
    };
  });

  return router;
}
