/**
 * First middleware of the app: gives each request an id (a sane incoming X-Request-Id is kept),
 * echoes it in the response, binds a child logger carrying it, and logs one line per request.
 *
 * The child logger is created only when the request logs something at an enabled level: pino
 * serializes a child's bindings through the redaction rules when the child is made (tens of
 * microseconds with our redact paths), which most requests would pay for nothing when the level
 * filters their lines (`LOG_LEVEL=warn`, or `info` for the quiet health and metrics paths).
 */
import { randomFillSync } from 'node:crypto';

import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

import { isHousekeepingPath } from '../http/housekeeping.js';
import { scrubUrl } from './create-logger.js';

const ACCEPTABLE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

// Ids are cut from a pool of random bytes filled 256 ids at a time: one call into the random
// generator per 256 requests instead of one per request. Request ids correlate log lines; they are
// not secrets.
const ID_BYTES = 12;
const idPool = Buffer.allocUnsafe(ID_BYTES * 256);
let idOffset = idPool.length;

export function newRequestId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const id = idPool.toString('base64url', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return `req_${id}`;
}

const LEVEL_METHODS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const discard = (): void => {};

/**
 * A logger that behaves as `parent.child(bindings)` but makes that child on first use: a call of a
 * level method the parent's level filters out is dropped without making it; reading the level
 * does not make it either; anything else (an enabled line, `child`, `bindings`, setting the level)
 * makes the child once and is answered by it, so every line carries the bindings as before.
 */
export function lazyChildLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  type Method = (...args: unknown[]) => unknown;
  const bound = new Map<PropertyKey, { original: Method; fn: Method }>();
  const made = (): Logger => (child ??= parent.child(bindings));
  return new Proxy(parent, {
    get(_target, prop) {
      if (child === undefined) {
        if (typeof prop === 'string' && LEVEL_METHODS.has(prop) && !parent.isLevelEnabled(prop)) {
          return discard;
        }
        // The child would inherit these from the parent until its own level is set.
        if (prop === 'level' || prop === 'levelVal') return parent[prop];
        if (prop === 'isLevelEnabled') return (level: string) => parent.isLevelEnabled(level);
      }
      const target = made();
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      // Pino's methods read their state from `this`: answer with the child's own, bound to it. Pino
      // swaps a level's method when the level changes, hence the check against the current one.
      const cached = bound.get(prop);
      if (cached?.original === value) return cached.fn;
      const original = value as Method;
      const fn = original.bind(target) as Method;
      bound.set(prop, { original, fn });
      return fn;
    },
    set(_target, prop, value) {
      return Reflect.set(made(), prop, value);
    },
    has(_target, prop) {
      return Reflect.has(made(), prop);
    },
  });
}

export function requestContext(logger: Logger) {
  return async function bindRequestContext(ctx: Context, next: Next): Promise<void> {
    const incoming = ctx.get('X-Request-Id');
    const requestId = ACCEPTABLE_ID.test(incoming) ? incoming : newRequestId();
    ctx.state.requestId = requestId;
    ctx.state.log = lazyChildLogger(logger, { request_id: requestId });
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
      if (isHousekeepingPath(ctx.path) && ctx.status < 400) ctx.state.log.debug(entry, 'request completed');
      else ctx.state.log.info(entry, 'request completed');
    }
  };
}
