/** What our middleware puts on ctx.state, for every request. */
import type { Logger } from 'pino';
import type { UnavailableCause } from '../observability/metrics.js';

declare module 'koa' {
  interface DefaultState {
    /** Set by requestContext: the id echoed in X-Request-Id and on every log line. */
    requestId: string;
    /** A child logger carrying the request id. */
    log: Logger;
    /** Why a 503 was answered (request-limits.ts), for the metrics. */
    unavailableCause?: UnavailableCause;
  }
}

export {};
