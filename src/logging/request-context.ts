/**
 * First middleware of the app: gives each request an id (a sane incoming X-Request-Id is kept),
 * echoes it in the response, binds a child logger carrying it, and logs one line per request.
 */
import { randomBytes } from 'node:crypto';

import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

import { scrubUrl } from './create-logger.js';

const ACCEPTABLE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function newRequestId(): string {
  return `req_${randomBytes(12).toString('base64url')}`;
}

export function requestContext(logger: Logger, options: { quietPaths?: RegExp } = {}) {
  const quiet = options.quietPaths ?? /^\/health(\/|$)|^\/metrics$/;
  return async function bindRequestContext(ctx: Context, next: Next): Promise<void> {
    const incoming = ctx.get('X-Request-Id');
    const requestId = ACCEPTABLE_ID.test(incoming) ? incoming : newRequestId();
    ctx.state.requestId = requestId;
    ctx.state.log = logger.child({ request_id: requestId });
    ctx.set('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const entry = {
        method: ctx.method,
        url: scrubUrl(ctx.originalUrl),
        status: ctx.status,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
        ip: ctx.ip,
        user_agent: ctx.get('User-Agent') || undefined,
      };
      if (quiet.test(ctx.path) && ctx.status < 400) ctx.state.log.debug(entry, 'request completed');
      else ctx.state.log.info(entry, 'request completed');
    }
  };
}
