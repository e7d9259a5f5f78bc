/** Signing keys in the embedded store (private parts arrive already encrypted). */
import { StoreConflictError } from '../errors.js';
import type { NewSigningKey, SigningKeyPatch, SigningKeyRecord, SigningKeyRepository } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toKey(row: Row): SigningKeyRecord {
  return {
    kid: row.kid as string,
    alg: row.alg as string,
    use: 'sig',
    status: row.status as SigningKeyRecord['status'],
    public_jwk: JSON.parse(row.public_jwk as string),
    private_jwk_encrypted: row.private_jwk_encrypted as string,
    created_at: fromIso(row.created_at)!,
    activates_at: fromIso(row.activates_at)!,
    retired_at: fromIso(row.retired_at),
    expires_at: fromIso(row.expires_at),
  };
}

const isoOrNull = (d: Date | null | undefined) => (d ? toIso(d) : null);

export class EmbeddedSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewSigningKey): Promise<SigningKeyRecord> {
    try {
      const row = this.db.get(
        `INSERT INTO signing_keys (kid, alg, use, status, public_jwk, private_jwk_encrypted, created_at,
           activates_at, retired_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.kid,
        input.alg,
        input.use,
        input.status,
        JSON.stringify(input.public_jwk),
        input.private_jwk_encrypted,
        toIso(input.created_at ?? new Date()),
        toIso(input.activates_at),
        isoOrNull(input.retired_at),
        isoOrNull(input.expires_at),
      )!;
      return toKey(row);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('kid');
      throw err;
    }
  }

  async list(): Promise<SigningKeyRecord[]> {
    return this.db.all('SELECT * FROM signing_keys ORDER BY created_at, kid').map(toKey);
  }

  async update(kid: string, patch: SigningKeyPatch): Promise<SigningKeyRecord | null> {
    const row = this.db.get(
      `UPDATE signing_keys SET
         status = COALESCE(?, status),
         activates_at = COALESCE(?, activates_at),
         retired_at = CASE WHEN ? THEN ? ELSE retired_at END,
         expires_at = CASE WHEN ? THEN ? ELSE expires_at END
       WHERE kid = ? RETURNING *`,
      patch.status ?? null,
      isoOrNull(patch.activates_at),
      patch.retired_at !== undefined ? 1 : 0,
      isoOrNull(patch.retired_at),
      patch.expires_at !== undefined ? 1 : 0,
      isoOrNull(patch.expires_at),
      kid,
    );
    return row ? toKey(row) : null;
  }

  async remove(kid: string): Promise<boolean> {
    return this.db.run('DELETE FROM signing_keys WHERE kid = ?', kid).changes > 0;
  }
}
