/** Shared by the usage adapters: entry ids (deterministic under an idempotency key) and UTC days. */
import { createHash } from 'node:crypto';

import { newId } from './ids.js';
import type { NewUsageEntry } from './ports.js';

/**
 * With an idempotency key the id is derived from (owner, key): a retried report maps to the same id
 * and the store's primary key refuses the second insert, on every backend, without a transaction.
 */
export function usageEntryId(
  input: Pick<NewUsageEntry, 'owner_type' | 'owner_id' | 'idempotency_key' | 'created_at'>,
): string {
  if (input.idempotency_key === null) return newId('use', input.created_at.getTime());
  const digest = createHash('sha256')
    .update(`${input.owner_type}\u0000${input.owner_id}\u0000${input.idempotency_key}`)
    .digest('base64url')
    .slice(0, 32);
  return `use_idem_${digest}`;
}

export const usageDay = (at: Date): string => at.toISOString().slice(0, 10);
