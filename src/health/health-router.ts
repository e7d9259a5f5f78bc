/**
 * /health/live (the process answers), /health/ready (every configured store answers, and we are not
 * shutting down) and /health (the same checks with latencies, for people and dashboards).
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

  router.get('/health/ready', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (deps.isShuttingDown()) {
      ctx.status = 503;
      ctx.body = { status: 'shutting_down' };
      return;
    }
    const checks = await runAll();
    const ready = Object.values(checks).every((c) => c.healthy);
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', checks };
  });

  router.get('/health', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const checks = await runAll();
    const healthy = Object.values(checks).every((c) => c.healthy) && !deps.isShuttingDown();
    ctx.status = healthy ? 200 : 503;
    ctx.body = {
      status: deps.isShuttingDown() ? 'shutting_down' : healthy ? 'healthy' : 'unhealthy',
      timestamp: new Date().toISOString(),
      checks,
    };
  });

  return router;
}
