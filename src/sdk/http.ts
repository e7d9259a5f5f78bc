/**
 * The SDK's HTTP layer: JSON in and out over global fetch, one timeout per attempt, and retries with
 * exponential backoff and full jitter. What may be retried:
 * - 429 and 503 answers, always: the server says it did not do the work and when to come back;
 * - other 5xx answers (but 501), and network errors and timeouts, only for idempotent requests
 *   (GET, PUT, DELETE, or a POST carrying an Idempotency-Key), where a second try cannot do the work twice.
 * A `Retry-After` header (seconds or an HTTP date), or `retry_after` in the error body, replaces the
 * computed delay. No wait is longer than `maxRetryDelayMs`: when the server asks for more, the error
 * is thrown at once (its `retryAfter` says when to come back) instead of retrying too early. A used-up
 * quota (`QUOTA_EXCEEDED`) is never retried: it comes back with the next period, not in seconds.
 */
import { errorFromResponse, LatchkeyError } from './errors.js';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type QueryValue = string | number | boolean | null | undefined;

export interface RetryOptions {
  /** Retries after the first attempt. Default 3. */
  retries?: number;
  /** Ceiling of the first backoff; doubles per retry. Default 200 ms. */
  baseDelayMs?: number;
  /**
   * The longest single wait. Caps the backoff; an answer whose `Retry-After` is longer is not retried
   * but thrown at once. Default 30 s.
   */
  maxRetryDelayMs?: number;
  /** Injectable for tests: how to wait. */
  sleep?: (ms: number) => Promise<void>;
  /** Injectable for tests: a number in [0, 1) for the jitter. */
  random?: () => number;
}

export interface TransportOptions extends RetryOptions {
  baseUrl: string;
  /** Per attempt, covering the answer's body too. Default 10 s. */
  timeoutMs?: number;
  fetch?: FetchLike;
}

export interface HttpRequest {
  method: HttpMethod;
  /** Appended to the base URL. */
  path: string;
  query?: Record<string, QueryValue>;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as application/x-www-form-urlencoded (the OAuth endpoints). */
  form?: URLSearchParams;
  headers?: Record<string, string>;
  /** Sent as `Idempotency-Key`; makes a POST safe to retry. */
  idempotencyKey?: string;
  /** Overrides the method's idempotency for the retry rules. */
  idempotent?: boolean;
  /** Read before every attempt, so a refreshed token is used on a retry. */
  authorization?: () => Promise<string | undefined>;
  signal?: AbortSignal;
}

export interface HttpResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** By name: DOMException may come from another realm (test runners, bundlers), so no instanceof. */
function isAbort(err: unknown, name: string): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === name;
}

export class HttpTransport {
  readonly baseUrl: string;
  private readonly fetch: FetchLike;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly baseDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(options: TransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = Math.max(0, options.retries ?? 3);
    this.baseDelayMs = options.baseDelayMs ?? 200;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
  }

  url(path: string, query?: Record<string, QueryValue>): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** The wait before retry number `attempt` (0-based): full jitter, or the server's `Retry-After`. */
  delayFor(attempt: number, retryAfterS: number | undefined): number {
    if (retryAfterS !== undefined) return retryAfterS * 1000;
    const ceiling = Math.min(this.maxRetryDelayMs, this.baseDelayMs * 2 ** attempt);
    return Math.floor(this.random() * ceiling);
  }

  async request<T>(req: HttpRequest): Promise<HttpResponse<T>> {
    const idempotent =
      req.idempotent ??
      (req.method !== 'POST' && req.method !== 'PATCH' ? true : Boolean(req.idempotencyKey));
    const url = this.url(req.path, req.query);
    for (let attempt = 0; ; attempt += 1) {
      let failure: LatchkeyError;
      let retryable: boolean;
      // Outside the try: a failure to get a token is its own error, not a network error of this call.
      const authorization = await req.authorization?.();
      try {
        const result = await this.attempt<T>(url, req, authorization);
        if (!(result instanceof LatchkeyError)) return result;
        failure = result;
        retryable =
          failure.code !== 'QUOTA_EXCEEDED' &&
          (failure.status === 429 ||
            failure.status === 503 ||
            (idempotent && failure.status >= 500 && failure.status !== 501)) &&
          (failure.retryAfter ?? 0) * 1000 <= this.maxRetryDelayMs;
      } catch (err) {
        if (req.signal?.aborted) throw req.signal.reason ?? err;
        failure = this.noAnswer(req, err);
        retryable = idempotent;
      }
      if (!retryable || attempt >= this.retries) throw failure;
      await this.sleep(this.delayFor(attempt, failure.retryAfter));
    }
  }

  private noAnswer(req: HttpRequest, err: unknown): LatchkeyError {
    if (isAbort(err, 'TimeoutError')) {
      return new LatchkeyError({
        status: 0,
        code: 'TIMEOUT',
        message: `No answer to ${req.method} ${req.path} within ${this.timeoutMs} ms`,
        cause: err,
      });
    }
    const { message, cause } = (err ?? {}) as { message?: unknown; cause?: { message?: unknown } };
    const reason = String(cause?.message ?? message ?? err);
    return new LatchkeyError({
      status: 0,
      code: 'NETWORK_ERROR',
      message: `${req.method} ${req.path} failed: ${reason}`,
      cause: err,
    });
  }

  /** One try: the parsed answer, or a LatchkeyError for an error answer; throws when no answer came. */
  private async attempt<T>(
    url: string,
    req: HttpRequest,
    authorization: string | undefined,
  ): Promise<HttpResponse<T> | LatchkeyError> {
    const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
    let body: string | undefined;
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    } else if (req.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = req.form.toString();
    }
    if (req.idempotencyKey) headers['idempotency-key'] = req.idempotencyKey;
    if (authorization) headers.authorization = authorization;

    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    const response = await this.fetch(url, { method: req.method, headers, body, signal });
    const text = await response.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) return errorFromResponse(response, parsed);
    return { status: response.status, headers: response.headers, body: parsed as T };
  }
}
