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
  /**
   * Members the Error schema declares besides code and message (`resets_at` of QUOTA_EXCEEDED).
   * Anything else a client should know goes in `details`.
   */
  extra?: { resets_at?: string };
  /** The scope a 403 AUTH_INSUFFICIENT_SCOPE names in its RFC 6750 challenge. */
  requiredScope?: string;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  readonly retryAfter: number | undefined;
  readonly extra: { resets_at?: string } | undefined;
  readonly requiredScope: string | undefined;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    super(options.message ?? ERROR_CATALOG[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CATALOG[code].status;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
    this.extra = options.extra;
    this.requiredScope = options.requiredScope;
  }
}
