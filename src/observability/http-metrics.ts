/**
 * Measures every HTTP request (the first middleware of the app, so the time includes our whole
 * pipeline) and labels it with the route template, never the path: ids in paths would make a new
 * time series per user, client or interaction. Also counts introspection answers, which the provider
 * reports through no event.
 */
import type { Context, Next } from 'koa';

import type { Metrics } from './metrics.js';
import { isHousekeepingPath } from '../http/housekeeping.js';

/** The label of requests no route answered (404s, probes of unknown paths). */
export const UNMATCHED_ROUTE = 'unmatched';

/** Methods we label as themselves; anything else (an attacker's verb) shares one label. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

interface RoutedContext {
  /** Set by @koa/router and by oidc-provider's router to the matched route's template. */
  _matchedRoute?: string | RegExp;
  /** oidc-provider's context, on its own routes only: `route` is the route's name. */
  oidc?: { route?: string };
}

/** The template of the route that answered, e.g. `/v2/users/:id` or `/oauth/authorize/:uid`. */
export function routeLabel(ctx: Context): string {
  const matched = (ctx as Context & RoutedContext)._matchedRoute;
  if (typeof matched === 'string' && matched !== '') return matched;
  if (matched instanceof RegExp) return String(matched);
  return UNMATCHED_ROUTE;
}

function introspectionActive(ctx: Context): boolean | undefined {
  const body: unknown = ctx.body;
  if (
    body !== null &&
    typeof body === 'object' &&
    typeof (body as { active?: unknown }).active === 'boolean'
  ) {
    return (body as { active: boolean }).active;
  }
  return undefined; // a signed or encrypted answer (a JWT string)
}

export function httpMetrics(metrics: Metrics) {
  return async function measureRequest(ctx: Context, next: Next): Promise<void> {
    const started = performance.now();
    let failed = false;
    try {
      await next();
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      const status = failed ? 500 : ctx.status;
      const method = KNOWN_METHODS.has(ctx.method) ? ctx.method : 'OTHER';
      metrics.httpRequest(method, routeLabel(ctx), status, (performance.now() - started) / 1000);
      // Readiness answering 503 is not a failed request; everything else answering 503 is.
      if (status === 503 && !isHousekeepingPath(ctx.path))
        metrics.unavailableResponse(ctx.state.unavailableCause ?? 'other');
      // Reading `oidc` is safe everywhere: outside the provider's routes it is simply undefined.
      if (!failed && status === 200 && (ctx as Context & RoutedContext).oidc?.route === 'introspection') {
        metrics.introspection(introspectionActive(ctx));
      }
    }
  };
}
