/**
 * Turns anything thrown below it into the error envelope of shared/API.md. Known AppErrors keep their
 * code and status; client errors raised by Koa or the body parser get a catalog code; everything else
 * becomes a 500 whose body reveals nothing beyond the request id, and is logged in full.
 */
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

import { AppError } from './app-error.js';
import type { ErrorCode } from './catalog.js';
import { findStoreOutage, isStoreOutage } from '../store/errors.js';

export interface ErrorEnvelope {
  error: {
    code: ErrorCode;
    message: string;
    details?: AppError['details'];
    retry_after?: number;
    request_id: string;
    timestamp: string;
    resets_at?: string;
  };
}

function fromHttpError(err: {
  status?: number;
  statusCode?: number;
  type?: string;
  name?: string;
}): AppError | undefined {
  const status = err.status ?? err.statusCode;
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
  switch (status) {
    case 400:
      // The JSON body parser reports unparsable input as a SyntaxError carrying status 400.
      return new AppError(err.name === 'SyntaxError' ? 'MALFORMED_JSON' : 'VALIDATION_ERROR');
    case 404:
      return new AppError('NOT_FOUND');
    case 405:
      return new AppError('METHOD_NOT_ALLOWED');
    case 413:
      return new AppError('PAYLOAD_TOO_LARGE');
    case 415:
      return new AppError('UNSUPPORTED_MEDIA_TYPE');
    default:
      return new AppError('VALIDATION_ERROR');
  }
}

export function toEnvelope(error: AppError, requestId: string): ErrorEnvelope {
  return {
    error: {
      ...error.extra,
      code: error.code,
      message: error.message,
      ...(error.details ? { details: error.details } : {}),
      ...(error.retryAfter !== undefined ? { retry_after: error.retryAfter } : {}),
      request_id: requestId,
      timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
  };
}

export function sendError(ctx: Context, error: AppError): void {
  ctx.status = error.status;
  if (error.retryAfter !== undefined) ctx.set('Retry-After', String(error.retryAfter));
  ctx.set('Cache-Control', 'no-store');
  ctx.body = toEnvelope(error, String(ctx.state.requestId ?? ''));
}

/** What one line about a request that met a store outage says: which backend, and why, briefly. */
export function outageFacts(err: unknown): { backend?: string; reason: string } {
  const outage = findStoreOutage(err);
  const source = outage ?? err;
  return {
    backend: outage?.backend,
    reason: source instanceof Error ? source.message.slice(0, 300) : 'unavailable',
  };
}

export function errorMiddleware(fallbackLog: Logger) {
  return async function handleErrors(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        sendError(ctx, new AppError('NOT_FOUND'));
      }
    } catch (err) {
      let appError: AppError;
      if (err instanceof AppError) {
        appError = err;
      } else if (isStoreOutage(err)) {
        // A store that does not answer: the client may retry (by name: errors may cross realms).
        appError = new AppError('STORE_UNAVAILABLE', { retryAfter: 1 });
        ctx.state.unavailableCause = 'store';
      } else {
        appError = fromHttpError(err as never) ?? new AppError('INTERNAL_ERROR');
      }
      const log: Logger = ctx.state.log ?? fallbackLog;
      if (appError.code === 'STORE_UNAVAILABLE') {
        // Expected during an outage, once per request: one short line. The breaker's opening is
        // logged once as an error with the driver's whole error.
        log.warn(outageFacts(err), 'a store did not answer');
      } else if (appError.status >= 500) {
        log.error({ err }, 'request failed');
      } else {
        log.debug({ code: appError.code }, 'request rejected');
      }
      sendError(ctx, appError);
    }
  };
}
