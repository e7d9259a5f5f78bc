/**
 * The composition root: from the validated config, the logger and the opened stores it builds the
 * services and the one Koa application serving every surface. Nothing here reads the environment.
 */
import Koa from 'koa';
import type { Logger } from 'pino';

import type { Config } from './config/load-config.js';
import { errorMiddleware } from './errors/error-middleware.js';
import { healthRouter } from './health/health-router.js';
import './http/koa-state.js';
import { securityHeaders } from './http/security-headers.js';
import { requestContext } from './logging/request-context.js';
import type { Stores } from './store/ports.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  stores: Stores;
}

/** Shared by the server and readiness: once shutting down, readiness fails so traffic drains away. */
export interface Lifecycle {
  shuttingDown: boolean;
}

export interface BuiltApp {
  app: Koa;
  lifecycle: Lifecycle;
}

export async function buildApp(deps: AppDeps): Promise<BuiltApp> {
  const { config, logger, stores } = deps;
  const lifecycle: Lifecycle = { shuttingDown: false };

  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: config.proxyHops });
  app.silent = true; // errors are logged by our middleware, with the request id
  app.on('error', (err) => logger.error({ err }, 'unhandled application error'));

  app.use(requestContext(logger));
  app.use(securityHeaders({ hsts: config.nodeEnv === 'production' }));
  app.use(errorMiddleware(logger));

  const health = healthRouter({
    log: logger,
    isShuttingDown: () => lifecycle.shuttingDown,
    checks: {
      store: { backend: stores.durable.kind, check: () => stores.durable.ping() },
      artifacts: { backend: stores.artifacts.kind, check: () => stores.artifacts.ping() },
    },
  });
  app.use(health.routes());
  app.use(health.allowedMethods());

  return { app, lifecycle };
}
