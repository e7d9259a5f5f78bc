/**
 * Names the current request's trace span after its route template (`GET /v2/users/:id`), as the
 * OpenTelemetry HTTP conventions ask; the HTTP instrumentation alone sees only the method. Mounted
 * only when tracing is on.
 */
import { trace } from '@opentelemetry/api';
import type { Context, Next } from 'koa';

import { routeLabel, UNMATCHED_ROUTE } from './http-metrics.js';

export function spanRoute() {
  return async function nameSpan(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
    } finally {
      const span = trace.getActiveSpan();
      const route = routeLabel(ctx);
      if (span && route !== UNMATCHED_ROUTE) {
        span.setAttribute('http.route', route);
        span.updateName(`${ctx.method} ${route}`);
      }
    }
  };
}
