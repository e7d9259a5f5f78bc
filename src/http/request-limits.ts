/**
 * Bounds on the work one instance takes on, so an outage or a flood costs fast 503s instead of a
 * queue that grows until everything times out:
 *
 *  - load shedding: at most `maxInFlight` requests are served at once; the next ones get 503 with
 *    Retry-After at once (health probes and /metrics are never refused, so an overloaded instance
 *    stays observable and is not killed for it);
 *  - a deadline per request: after `timeoutMs` the client gets 503 and the request is given up;
 *  - a request whose client has gone (connection closed before the answer) is given up too.
 *
 * "Given up" means the request's AbortSignal (runtime/request-scope.ts) is aborted: the stores then
 * refuse to start its further operations, so work nobody waits for stops at the next store call.
 * Answers use the error shape of the surface: OAuth's `temporarily_unavailable` on the provider's
 * endpoints, the error envelope elsewhere.
 */
import type { Context, Next } from 'koa';

import { AppError } from '../errors/app-error.js';
import { sendError } from '../errors/error-middleware.js';
import { runInRequestScope } from '../runtime/request-scope.js';
import { isHousekeepingPath } from './housekeeping.js';

import type { UnavailableCause } from '../observability/metrics.js';

export type { UnavailableCause };

export interface RequestLimitsOptions {
  maxInFlight: number;
  timeoutMs: number;
  /** Paths answered in OAuth's error format (the provider's). */
  isProtocolPath(path: string): boolean;
  onShed?(reason: 'overloaded' | 'timeout'): void;
}

/** Answers 503 in the surface's shape, with Retry-After, and notes why for the metrics. */
export function answerUnavailable(
  ctx: Context,
  cause: UnavailableCause,
  description: string,
  protocol: boolean,
): void {
  ctx.state.unavailableCause = cause;
  if (protocol) {
    ctx.status = 503;
    ctx.set('Retry-After', '1');
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error: 'temporarily_unavailable', error_description: description };
    return;
  }
  sendError(ctx, new AppError('SERVICE_UNAVAILABLE', { message: description, retryAfter: 1 }));
}

export function requestLimits(options: RequestLimitsOptions) {
  let inFlight = 0;
  return async function limitRequest(ctx: Context, next: Next): Promise<void> {
    if (isHousekeepingPath(ctx.path)) return next();
    const protocol = options.isProtocolPath(ctx.path);
    if (inFlight >= options.maxInFlight) {
      options.onShed?.('overloaded');
      ctx.set('Connection', 'close');
      answerUnavailable(ctx, 'overloaded', 'The server is at capacity; retry shortly', protocol);
      return;
    }
    inFlight += 1;
    const controller = new AbortController();
    const gone = () => {
      if (!ctx.res.writableFinished) controller.abort(new Error('client went away'));
    };
    ctx.res.once('close', gone);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.timeoutMs);
    });
    const work = runInRequestScope({ signal: controller.signal }, () => next());
    try {
      const first = await Promise.race([work.then(() => 'done' as const), timedOut]);
      if (first === 'timeout') {
        controller.abort(new Error('request deadline passed'));
        // It may still settle (its store calls now fail fast); nobody waits for it any more.
        work.catch(() => undefined);
        options.onShed?.('timeout');
        if (!ctx.headerSent) {
          answerUnavailable(
            ctx,
            'timeout',
            `The request took longer than ${options.timeoutMs} ms; retry shortly`,
            protocol,
          );
        }
      }
    } finally {
      clearTimeout(timer);
      inFlight -= 1;
    }
  };
}
