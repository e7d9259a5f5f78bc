/** Driver-independent store failures; services map them to catalog errors. */

/** A unique constraint was violated; `field` names it (`email`, `name`, `client_id`, `kid`, ...). */
export class StoreConflictError extends Error {
  constructor(readonly field: string) {
    super(`duplicate ${field}`);
    this.name = 'StoreConflictError';
  }
}

/** The backend could not be reached or did not answer in time. */
export class StoreUnavailableError extends Error {
  /** Which backend (`embedded`, `mongo`, `redis`), when known: for logs and metrics. */
  readonly backend: string | undefined;
  constructor(message: string, options?: { cause?: unknown; backend?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StoreUnavailableError';
    this.backend = options?.backend;
  }
}

/**
 * The request this operation belonged to was given up (its client went away, or its deadline
 * passed): the operation is not started. Not a failure of the backend.
 */
export class RequestAbandonedError extends StoreUnavailableError {
  constructor() {
    super('the request was abandoned; the store operation was not started');
  }
}

/** An artifact write without a positive, finite lifetime: refused so nothing lives forever. */
export class MissingExpiryError extends Error {
  constructor(model: string, expiresIn: unknown) {
    super(`refusing to store ${model} without a positive expiry (got ${String(expiresIn)})`);
    this.name = 'MissingExpiryError';
  }
}

export function checkExpiresIn(model: string, expiresIn: unknown): number {
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
    throw new MissingExpiryError(model, expiresIn);
  }
  return Math.ceil(expiresIn);
}

/**
 * The store outage `err` is, or was caused by (the provider's temporarily_unavailable wraps it, for
 * example, when our own routes use the provider's models). By name, not instanceof: errors may cross
 * module realms.
 */
export function findStoreOutage(err: unknown): StoreUnavailableError | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth += 1) {
    if ((current as { name?: unknown }).name === 'StoreUnavailableError')
      return current as StoreUnavailableError;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isStoreOutage(err: unknown): boolean {
  return findStoreOutage(err) !== undefined;
}
