/** Shared by the outbox adapters: delivery ids, list cursors and argument checks. */
import { createHash } from 'node:crypto';

import type { DeliveryStatus } from './ports.js';
import { decodeCursor, encodeCursor, QueryError } from './query.js';

/**
 * The id of the delivery of one event to one endpoint, derived from the pair: a second enqueue of
 * the pair maps to the same id and the primary key refuses it, on every backend, without relying on
 * a secondary unique index being built yet.
 */
export function deliveryId(eventId: string, endpointId: string): string {
  const digest = createHash('sha256')
    .update(`${eventId}\u0000${endpointId}`)
    .digest('base64url')
    .slice(0, 32);
  return `dlv_${digest}`;
}

/** Statuses a claim considers: not final. */
export const CLAIMABLE_STATUSES: readonly DeliveryStatus[] = ['pending', 'failed'];
/** Statuses retry puts back to pending. */
export const RETRYABLE_STATUSES: readonly DeliveryStatus[] = ['failed', 'dead'];
/** Statuses purge may delete. */
export const FINAL_STATUSES: readonly DeliveryStatus[] = ['succeeded', 'dead'];

/** A page cursor: the (date, id) of the last item. */
export function pageCursor(at: Date, id: string): string {
  return encodeCursor([at, id]);
}

export function readPageCursor(cursor: string): { at: Date; id: string } {
  const values = decodeCursor(cursor, 2);
  const [at, id] = values ?? [];
  if (!(at instanceof Date) || typeof id !== 'string') throw new QueryError('invalid cursor');
  return { at, id };
}

export function statusList(
  status: DeliveryStatus | DeliveryStatus[] | undefined,
): DeliveryStatus[] | undefined {
  if (status === undefined) return undefined;
  return Array.isArray(status) ? status : [status];
}

/** Limits must be positive integers; a claim's lease must be positive too. */
export function checkPositive(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}
