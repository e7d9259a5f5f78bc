/** The one error type routes and services throw; the error middleware turns it into the envelope. */
import { ERROR_CATALOG, type ErrorCode } from './catalog.js';

export interface ErrorDetail {
  field: string;
  issue: string;
  provided?: unknown;
}

export interface AppErrorOptions {
  message?: string;
  details?: ErrorDetail[];
  /** Seconds; sent as Retry-After and as `retry_after` in the body. */
  retryAfter?: number;
  /** Extra fields placed in the error object (for example `resets_at`). */
  extra?: Record<string, unknown>;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  readonly retryAfter: number | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    super(options.message ?? ERROR_CATALOG[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CATALOG[code].status;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
    this.extra = options.extra;
  }
}
