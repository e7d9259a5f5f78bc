/** Second factors and recovery codes in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { MfaFactor, MfaRepository, NewMfaFactor } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toFactor(row: Row): MfaFactor {
  return {
    id: row.id as string,
    user_id: row.user_id as string,
    type: row.type as MfaFactor['type'],
    name: row.name as string,
    created_at: fromIso(row.created_at)!,
    last_used_at: fromIso(row.last_used_at),
    secret: (row.secret as string | null) ?? null,
    credential_id: (row.credential_id as string | null) ?? null,
    public_key: (row.public_key as string | null) ?? null,
    counter: Number(row.counter),
    transports: JSON.parse(row.transports as string),
    device_type: (row.device_type as MfaFactor['device_type']) ?? null,
    backed_up: row.backed_up === 1,
  };
}

export class EmbeddedMfaRepository implements MfaRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async createFactor(input: NewMfaFactor): Promise<MfaFactor> {
    try {
      const row = this.db.get(
        `INSERT INTO mfa_factors (id, user_id, type, name, secret, credential_id, public_key, counter,
           transports, device_type, backed_up, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.id ?? newId('mfa'),
        input.user_id,
        input.type,
        input.name,
        input.secret ?? null,
        input.credential_id ?? null,
        input.public_key ?? null,
        input.counter ?? 0,
        JSON.stringify(input.transports ?? []),
        input.device_type ?? null,
        input.backed_up ? 1 : 0,
        toIso(new Date()),
      )!;
      return toFactor(row);
    } catch (err) {
      const column = uniqueViolation(err);
      if (column) throw new StoreConflictError(column === 'credential_id' ? 'credential_id' : column);
      throw err;
    }
  }

  async listFactors(userId: string): Promise<MfaFactor[]> {
    return this.db
      .all('SELECT * FROM mfa_factors WHERE user_id = ? ORDER BY created_at, id', userId)
      .map(toFactor);
  }

  async findFactor(id: string): Promise<MfaFactor | null> {
    const row = this.db.get('SELECT * FROM mfa_factors WHERE id = ?', id);
    return row ? toFactor(row) : null;
  }

  async findByCredentialId(credentialId: string): Promise<MfaFactor | null> {
    const row = this.db.get('SELECT * FROM mfa_factors WHERE credential_id = ?', credentialId);
    return row ? toFactor(row) : null;
  }

  async recordUse(id: string, at: Date, counter?: number): Promise<boolean> {
    if (counter === undefined) {
      return this.db.run('UPDATE mfa_factors SET last_used_at = ? WHERE id = ?', toIso(at), id).changes > 0;
    }
    return (
      this.db.run(
        `UPDATE mfa_factors SET last_used_at = ?, counter = ?
         WHERE id = ? AND (counter < ? OR (counter = 0 AND ? = 0))`,
        toIso(at),
        counter,
        id,
        counter,
        counter,
      ).changes > 0
    );
  }

  async renameFactor(id: string, name: string): Promise<MfaFactor | null> {
    const row = this.db.get('UPDATE mfa_factors SET name = ? WHERE id = ? RETURNING *', name, id);
    return row ? toFactor(row) : null;
  }

  async removeFactor(id: string): Promise<boolean> {
    return this.db.run('DELETE FROM mfa_factors WHERE id = ?', id).changes > 0;
  }

  async removeAllForUser(userId: string): Promise<number> {
    return this.db.transaction(() => {
      this.db.run('DELETE FROM mfa_recovery_codes WHERE user_id = ?', userId);
      return Number(this.db.run('DELETE FROM mfa_factors WHERE user_id = ?', userId).changes);
    });
  }

  async replaceRecoveryCodes(userId: string, hashes: readonly string[], at: Date): Promise<void> {
    this.db.transaction(() => {
      this.db.run('DELETE FROM mfa_recovery_codes WHERE user_id = ?', userId);
      for (const hash of hashes) {
        this.db.run(
          'INSERT INTO mfa_recovery_codes (user_id, hash, created_at) VALUES (?, ?, ?)',
          userId,
          hash,
          toIso(at),
        );
      }
    });
  }

  async useRecoveryCode(userId: string, hash: string, at: Date): Promise<boolean> {
    return (
      this.db.run(
        'UPDATE mfa_recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at IS NULL',
        toIso(at),
        userId,
        hash,
      ).changes > 0
    );
  }

  async countRecoveryCodes(userId: string): Promise<number> {
    const row = this.db.get(
      'SELECT COUNT(*) AS unused FROM mfa_recovery_codes WHERE user_id = ? AND used_at IS NULL',
      userId,
    )!;
    return Number(row.unused);
  }
}
