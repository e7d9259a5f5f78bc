/** Initial and registration access tokens (dynamic client registration) in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewRegistrationToken,
  RegistrationTokenKind,
  RegistrationTokenRecord,
  RegistrationTokenRepository,
} from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toToken(row: Row): RegistrationTokenRecord {
  return {
    id: row.id as string,
    kind: row.kind as RegistrationTokenKind,
    token_hash: row.token_hash as string,
    client_id: (row.client_id as string | null) ?? null,
    description: (row.description as string | null) ?? null,
    created_by: (row.created_by as string | null) ?? null,
    created_at: fromIso(row.created_at)!,
    expires_at: fromIso(row.expires_at),
    last_used_at: fromIso(row.last_used_at),
    use_count: Number(row.use_count),
  };
}

export class EmbeddedRegistrationTokenRepository implements RegistrationTokenRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewRegistrationToken): Promise<RegistrationTokenRecord> {
    try {
      const row = this.db.get(
        `INSERT INTO registration_tokens (id, kind, token_hash, client_id, description, created_by,
           created_at, expires_at, use_count)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) RETURNING *`,
        input.id ?? newId(input.kind === 'initial_access' ? 'iat' : 'rat'),
        input.kind,
        input.token_hash,
        input.client_id ?? null,
        input.description ?? null,
        input.created_by ?? null,
        toIso(new Date()),
        input.expires_at ? toIso(input.expires_at) : null,
      )!;
      return toToken(row);
    } catch (err) {
      const column = uniqueViolation(err);
      if (column) throw new StoreConflictError(column === 'token_hash' ? 'token_hash' : 'id');
      throw err;
    }
  }

  async findById(id: string): Promise<RegistrationTokenRecord | null> {
    const row = this.db.get('SELECT * FROM registration_tokens WHERE id = ?', id);
    return row ? toToken(row) : null;
  }

  async findByHash(tokenHash: string): Promise<RegistrationTokenRecord | null> {
    const row = this.db.get('SELECT * FROM registration_tokens WHERE token_hash = ?', tokenHash);
    return row ? toToken(row) : null;
  }

  async list(
    kind: RegistrationTokenKind,
    page: { limit: number; offset?: number },
  ): Promise<RegistrationTokenRecord[]> {
    return this.db
      .all(
        `SELECT * FROM registration_tokens WHERE kind = ?
         ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
        kind,
        page.limit,
        page.offset ?? 0,
      )
      .map(toToken);
  }

  async count(kind: RegistrationTokenKind): Promise<number> {
    return Number(
      this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM registration_tokens WHERE kind = ?', kind)!.n,
    );
  }

  async recordUse(id: string, at: Date): Promise<void> {
    this.db.run(
      'UPDATE registration_tokens SET use_count = use_count + 1, last_used_at = ? WHERE id = ?',
      toIso(at),
      id,
    );
  }

  async remove(id: string): Promise<boolean> {
    return this.db.run('DELETE FROM registration_tokens WHERE id = ?', id).changes > 0;
  }

  async removeForClient(clientId: string): Promise<number> {
    return Number(this.db.run('DELETE FROM registration_tokens WHERE client_id = ?', clientId).changes);
  }
}
