/** API keys in the embedded store: the hash and the short lookup id, never the key. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { ApiKeyOwnerType, ApiKeyPatch, ApiKeyRecord, ApiKeyRepository, NewApiKey } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toApiKey(row: Row): ApiKeyRecord {
  return {
    id: row.id as string,
    owner_type: row.owner_type as ApiKeyOwnerType,
    owner_id: row.owner_id as string,
    name: row.name as string,
    environment: row.environment as ApiKeyRecord['environment'],
    lookup_id: row.lookup_id as string,
    secret_hash: row.secret_hash as string,
    scopes: JSON.parse(row.scopes as string),
    allowed_ips: JSON.parse(row.allowed_ips as string),
    expires_at: fromIso(row.expires_at),
    last_used_at: fromIso(row.last_used_at),
    revoked_at: fromIso(row.revoked_at),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

const PATCH_COLUMNS: Record<keyof ApiKeyPatch, (v: never) => string | null> = {
  name: (v: string) => v,
  lookup_id: (v: string) => v,
  secret_hash: (v: string) => v,
  scopes: (v: string[]) => JSON.stringify(v),
  allowed_ips: (v: string[]) => JSON.stringify(v),
  expires_at: (v: Date | null) => (v ? toIso(v) : null),
  revoked_at: (v: Date | null) => (v ? toIso(v) : null),
};

export class EmbeddedApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewApiKey): Promise<ApiKeyRecord> {
    const now = input.created_at ?? new Date();
    try {
      const row = this.db.get(
        `INSERT INTO api_keys (id, owner_type, owner_id, name, environment, lookup_id, secret_hash, scopes,
           allowed_ips, expires_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.id ?? newId('key', now.getTime()),
        input.owner_type,
        input.owner_id,
        input.name,
        input.environment,
        input.lookup_id,
        input.secret_hash,
        JSON.stringify(input.scopes),
        JSON.stringify(input.allowed_ips),
        input.expires_at ? toIso(input.expires_at) : null,
        toIso(now),
        toIso(now),
      )!;
      return toApiKey(row);
    } catch (err) {
      const column = uniqueViolation(err);
      if (column) throw new StoreConflictError(column);
      throw err;
    }
  }

  async findById(id: string): Promise<ApiKeyRecord | null> {
    const row = this.db.get('SELECT * FROM api_keys WHERE id = ?', id);
    return row ? toApiKey(row) : null;
  }

  async findByLookupId(lookupId: string): Promise<ApiKeyRecord | null> {
    const row = this.db.get('SELECT * FROM api_keys WHERE lookup_id = ?', lookupId);
    return row ? toApiKey(row) : null;
  }

  async listByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<ApiKeyRecord[]> {
    return this.db
      .all(
        'SELECT * FROM api_keys WHERE owner_type = ? AND owner_id = ? ORDER BY created_at, id',
        ownerType,
        ownerId,
      )
      .map(toApiKey);
  }

  async update(id: string, patch: ApiKeyPatch): Promise<ApiKeyRecord | null> {
    const sets: string[] = [];
    const values: (string | null)[] = [];
    for (const [key, value] of Object.entries(patch) as [keyof ApiKeyPatch, never][]) {
      if (value === undefined) continue;
      sets.push(`${key} = ?`);
      values.push(PATCH_COLUMNS[key](value));
    }
    sets.push('updated_at = ?');
    values.push(toIso(new Date()));
    try {
      const row = this.db.get(
        `UPDATE api_keys SET ${sets.join(', ')} WHERE id = ? RETURNING *`,
        ...values,
        id,
      );
      return row ? toApiKey(row) : null;
    } catch (err) {
      const column = uniqueViolation(err);
      if (column) throw new StoreConflictError(column);
      throw err;
    }
  }

  async touch(id: string, at: Date): Promise<void> {
    this.db.run(
      'UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
      toIso(at),
      id,
      toIso(at),
    );
  }

  async removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number> {
    return Number(
      this.db.run('DELETE FROM api_keys WHERE owner_type = ? AND owner_id = ?', ownerType, ownerId).changes,
    );
  }
}
