/**
 * GET /metrics: the Prometheus text exposition. Outside /v2, so neither bearer tokens of the
 * management API nor its rate limits apply; when METRICS_TOKEN is set, scrapers must send it as
 * `Authorization: Bearer <token>`, compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import Router from '@koa/router';

import { AppError } from '../errors/app-error.js';
import type { Metrics } from './metrics.js';

export const METRICS_PATH = '/metrics';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** Equal tokens, in time independent of where they differ (and of their lengths, through the hash). */
function sameToken(presented: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(presented), expected);
}

export function metricsRouter(metrics: Metrics, options: { token?: string | undefined }): Router {
  const expected = options.token === undefined ? undefined : digest(options.token);
  const router = new Router();
  router.get(METRICS_PATH, async (ctx) => {
    if (expected) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('Authorization'));
      if (!match || !sameToken(match[1]!, expected)) {
        ctx.set('WWW-Authenticate', 'Bearer realm="metrics"');
        throw new AppError(match ? 'AUTH_TOKEN_INVALID' : 'AUTH_TOKEN_MISSING');
      }
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.type = metrics.contentType;
    ctx.body = await metrics.render();
  });
  return router;
}
