/** OAuth clients in the embedded store. */
import { StoreConflictError } from '../errors.js';
import type { ClientPatch, ClientRecord, ClientRepository, NewClient } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toClient(row: Row): ClientRecord {
  return {
    client_id: row.client_id as string,
    client_secret_hash: (row.client_secret_hash as string | null) ?? null,
    metadata: JSON.parse(row.metadata as string),
    first_party: row.first_party === 1,
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

export class EmbeddedClientRepository implements ClientRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewClient): Promise<ClientRecord> {
    const now = toIso(new Date());
    try {
      const row = this.db.get(
        `INSERT INTO clients (client_id, client_secret_hash, metadata, first_party, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
        input.client_id,
        input.client_secret_hash ?? null,
        JSON.stringify(input.metadata),
        input.first_party ? 1 : 0,
        now,
        now,
      )!;
      return toClient(row);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('client_id');
      throw err;
    }
  }

  async find(clientId: string): Promise<ClientRecord | null> {
    const row = this.db.get('SELECT * FROM clients WHERE client_id = ?', clientId);
    return row ? toClient(row) : null;
  }

  async list(page: { limit: number; offset?: number }): Promise<ClientRecord[]> {
    return this.db
      .all(
        'SELECT * FROM clients ORDER BY created_at, client_id LIMIT ? OFFSET ?',
        page.limit,
        page.offset ?? 0,
      )
      .map(toClient);
  }

  async count(): Promise<number> {
    return Number(this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM clients')!.n);
  }

  async update(clientId: string, patch: ClientPatch): Promise<ClientRecord | null> {
    const current = await this.find(clientId);
    if (!current) return null;
    const row = this.db.get(
      `UPDATE clients SET client_secret_hash = ?, metadata = ?, first_party = ?, updated_at = ?
       WHERE client_id = ? RETURNING *`,
      patch.client_secret_hash !== undefined ? patch.client_secret_hash : current.client_secret_hash,
      JSON.stringify(patch.metadata ?? current.metadata),
      (patch.first_party ?? current.first_party) ? 1 : 0,
      toIso(new Date()),
      clientId,
    );
    return row ? toClient(row) : null;
  }

  async remove(clientId: string): Promise<boolean> {
    return this.db.run('DELETE FROM clients WHERE client_id = ?', clientId).changes > 0;
  }
}
