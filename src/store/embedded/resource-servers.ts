/** Resource servers (APIs) in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewResourceServer,
  ResourceServerPatch,
  ResourceServerRecord,
  ResourceServerRepository,
} from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toResourceServer(row: Row): ResourceServerRecord {
  return {
    id: row.id as string,
    identifier: row.identifier as string,
    name: row.name as string,
    scopes: JSON.parse(row.scopes as string),
    access_token_format: row.access_token_format as ResourceServerRecord['access_token_format'],
    access_token_ttl: Number(row.access_token_ttl),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

function conflictOrThrow(err: unknown): never {
  const column = uniqueViolation(err);
  if (column) throw new StoreConflictError(column);
  throw err;
}

export const DEFAULT_RESOURCE_TOKEN_TTL_S = 3600;

export class EmbeddedResourceServerRepository implements ResourceServerRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewResourceServer): Promise<ResourceServerRecord> {
    const now = toIso(new Date());
    try {
      const row = this.db.get(
        `INSERT INTO resource_servers (id, identifier, name, scopes, access_token_format, access_token_ttl,
           created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.id ?? newId('api'),
        input.identifier,
        input.name,
        JSON.stringify(input.scopes ?? []),
        input.access_token_format ?? 'jwt',
        input.access_token_ttl ?? DEFAULT_RESOURCE_TOKEN_TTL_S,
        now,
        now,
      )!;
      return toResourceServer(row);
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  async findById(id: string): Promise<ResourceServerRecord | null> {
    const row = this.db.get('SELECT * FROM resource_servers WHERE id = ?', id);
    return row ? toResourceServer(row) : null;
  }

  async findByIdentifier(identifier: string): Promise<ResourceServerRecord | null> {
    const row = this.db.get('SELECT * FROM resource_servers WHERE identifier = ?', identifier);
    return row ? toResourceServer(row) : null;
  }

  async list(): Promise<ResourceServerRecord[]> {
    return this.db.all('SELECT * FROM resource_servers ORDER BY identifier').map(toResourceServer);
  }

  async update(id: string, patch: ResourceServerPatch): Promise<ResourceServerRecord | null> {
    const current = await this.findById(id);
    if (!current) return null;
    try {
      const row = this.db.get(
        `UPDATE resource_servers SET identifier = ?, name = ?, scopes = ?, access_token_format = ?,
           access_token_ttl = ?, updated_at = ?
         WHERE id = ? RETURNING *`,
        patch.identifier ?? current.identifier,
        patch.name ?? current.name,
        JSON.stringify(patch.scopes ?? current.scopes),
        patch.access_token_format ?? current.access_token_format,
        patch.access_token_ttl ?? current.access_token_ttl,
        toIso(new Date()),
        id,
      );
      return row ? toResourceServer(row) : null;
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  async remove(id: string): Promise<boolean> {
    return this.db.run('DELETE FROM resource_servers WHERE id = ?', id).changes > 0;
  }
}
