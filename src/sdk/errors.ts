/**
 * The one error type the SDK throws, read from Latchkey's error envelope
 * `{ error: { code, message, details, request_id, timestamp } }` (or an OAuth token-endpoint error
 * `{ error, error_description }`), plus the parsing of `Retry-After`.
 */

export interface LatchkeyErrorDetail {
  field: string;
  issue: string;
  provided?: unknown;
}

export interface LatchkeyErrorInit {
  status: number;
  code: string;
  message: string;
  details?: LatchkeyErrorDetail[];
  requestId?: string;
  retryAfter?: number;
  data?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * An error answer from Latchkey, or a failure to get one. `status` is 0 when no answer arrived: then
 * `code` is `NETWORK_ERROR` or `TIMEOUT`. `retryAfter` is in seconds. `data` is the whole error object
 * of the envelope, with fields some codes add (for example `resets_at` of `QUOTA_EXCEEDED`).
 */
export class LatchkeyError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: LatchkeyErrorDetail[] | undefined;
  readonly requestId: string | undefined;
  readonly retryAfter: number | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(init: LatchkeyErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'LatchkeyError';
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.data = init.data;
  }
}

/** `Retry-After` as seconds from `now`: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** Builds the LatchkeyError for an answer that is not a success; `body` is its parsed JSON, if any. */
export function errorFromResponse(response: Response, body: unknown): LatchkeyError {
  const headerRetry = parseRetryAfter(response.headers.get('retry-after'));
  const headerRequestId = response.headers.get('x-request-id') ?? undefined;
  const envelope = isObject(body) ? body.error : undefined;
  if (isObject(envelope)) {
    const bodyRetry = typeof envelope.retry_after === 'number' ? envelope.retry_after : undefined;
    return new LatchkeyError({
      status: response.status,
      code: typeof envelope.code === 'string' ? envelope.code : `HTTP_${response.status}`,
      message: typeof envelope.message === 'string' ? envelope.message : response.statusText,
      details: Array.isArray(envelope.details) ? (envelope.details as LatchkeyErrorDetail[]) : undefined,
      requestId: typeof envelope.request_id === 'string' ? envelope.request_id : headerRequestId,
      retryAfter: headerRetry ?? bodyRetry,
      data: envelope,
    });
  }
  if (isObject(body) && typeof envelope === 'string') {
    // An OAuth error (RFC 6749 §5.2) from the token or introspection endpoint.
    return new LatchkeyError({
      status: response.status,
      code: envelope,
      message: typeof body.error_description === 'string' ? body.error_description : envelope,
      requestId: headerRequestId,
      retryAfter: headerRetry,
      data: body,
    });
  }
  return new LatchkeyError({
    status: response.status,
    code: `HTTP_${response.status}`,
    message: `Unexpected answer: ${response.status} ${response.statusText}`.trim(),
    requestId: headerRequestId,
    retryAfter: headerRetry,
  });
}
