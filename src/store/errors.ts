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
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
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
