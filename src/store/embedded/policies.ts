/** Cedar policies (one row per version), the policy schema and registered entities in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { nextMoment } from '../version-time.js';
import type {
  JsonObject,
  NewPolicyVersion,
  PolicyEntityRecord,
  PolicyRecord,
  PolicyRepository,
  PolicySchemaRecord,
  PolicyVersion,
} from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toVersion(row: Row): PolicyVersion {
  return {
    policy_id: row.policy_id as string,
    version: Number(row.version),
    description: (row.description as string | null) ?? null,
    policy: row.policy as string,
    enabled: row.enabled === 1,
    deleted: row.deleted === 1,
    created_at: fromIso(row.created_at)!,
  };
}

function toRecord(row: Row): PolicyRecord {
  const v = toVersion(row);
  return {
    id: v.policy_id,
    description: v.description,
    policy: v.policy,
    enabled: v.enabled,
    version: v.version,
    created_at: fromIso(row.first_created_at)!,
    updated_at: v.created_at,
  };
}

function toEntity(row: Row): PolicyEntityRecord {
  return {
    type: row.type as string,
    id: row.id as string,
    attrs: JSON.parse(row.attrs as string) as JsonObject,
    parents: JSON.parse(row.parents as string) as { type: string; id: string }[],
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

/** The latest version of each policy written at or before ?1, with the policy's first date. */
const HEADS = `
  SELECT v.*, (SELECT MIN(f.created_at) FROM policy_versions f WHERE f.policy_id = v.policy_id) AS first_created_at
  FROM policy_versions v
  WHERE v.version = (
    SELECT MAX(w.version) FROM policy_versions w WHERE w.policy_id = v.policy_id AND w.created_at <= ?1
  )`;

export class EmbeddedPolicyRepository implements PolicyRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  private latest(id: string): PolicyVersion | null {
    const row = this.db.get(
      'SELECT * FROM policy_versions WHERE policy_id = ? ORDER BY version DESC LIMIT 1',
      id,
    );
    return row ? toVersion(row) : null;
  }

  async append(input: NewPolicyVersion, expected: number | 'absent'): Promise<PolicyVersion> {
    return this.db.transaction(() => {
      const latest = this.latest(input.policy_id);
      const ok =
        expected === 'absent'
          ? !latest || latest.deleted
          : latest !== null && !latest.deleted && latest.version === expected;
      if (!ok) throw new StoreConflictError('version');
      try {
        const row = this.db.get(
          `INSERT INTO policy_versions (policy_id, version, description, policy, enabled, deleted, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          input.policy_id,
          (latest?.version ?? 0) + 1,
          input.description,
          input.policy,
          input.enabled ? 1 : 0,
          input.deleted ? 1 : 0,
          toIso(nextMoment(latest?.created_at)),
        )!;
        return toVersion(row);
      } catch (err) {
        if (uniqueViolation(err)) throw new StoreConflictError('version');
        throw err;
      }
    });
  }

  async findById(id: string): Promise<PolicyRecord | null> {
    const row = this.db.get(`${HEADS} AND v.policy_id = ?2`, '9999-12-31T23:59:59.999Z', id);
    return row && row.deleted !== 1 ? toRecord(row) : null;
  }

  async list(asOf?: Date): Promise<PolicyRecord[]> {
    const at = asOf ? toIso(asOf) : '9999-12-31T23:59:59.999Z';
    return this.db.all(`${HEADS} AND v.deleted = 0 ORDER BY v.policy_id`, at).map(toRecord);
  }

  async versions(id: string): Promise<PolicyVersion[]> {
    return this.db
      .all('SELECT * FROM policy_versions WHERE policy_id = ? ORDER BY version', id)
      .map(toVersion);
  }

  async revision(): Promise<string> {
    const row = this.db.get<{ n: number; at: string | null; s: number | null }>(
      `SELECT (SELECT COUNT(*) FROM policy_versions) AS n, (SELECT MAX(created_at) FROM policy_versions) AS at,
              (SELECT MAX(version) FROM policy_schemas) AS s`,
    )!;
    return `${row.n}:${row.at ?? ''}:${row.s ?? 0}`;
  }

  async getSchema(): Promise<PolicySchemaRecord | null> {
    const row = this.db.get('SELECT * FROM policy_schemas ORDER BY version DESC LIMIT 1');
    return row
      ? {
          schema: (row.schema as string | null) ?? null,
          version: Number(row.version),
          updated_at: fromIso(row.created_at)!,
        }
      : null;
  }

  async putSchema(schema: string | null, expected: number): Promise<PolicySchemaRecord> {
    return this.db.transaction(() => {
      const current = this.db.get<{ v: number | null }>('SELECT MAX(version) AS v FROM policy_schemas')!;
      if ((current.v ?? 0) !== expected) throw new StoreConflictError('version');
      const now = new Date();
      this.db.run(
        'INSERT INTO policy_schemas (version, schema, created_at) VALUES (?, ?, ?)',
        expected + 1,
        schema,
        toIso(now),
      );
      return { schema, version: expected + 1, updated_at: now };
    });
  }

  async putEntity(
    entity: Pick<PolicyEntityRecord, 'type' | 'id' | 'attrs' | 'parents'>,
  ): Promise<PolicyEntityRecord> {
    const now = toIso(new Date());
    const row = this.db.get(
      `INSERT INTO policy_entities (type, id, attrs, parents, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (type, id) DO UPDATE SET attrs = excluded.attrs, parents = excluded.parents,
         updated_at = excluded.updated_at
       RETURNING *`,
      entity.type,
      entity.id,
      JSON.stringify(entity.attrs),
      JSON.stringify(entity.parents),
      now,
      now,
    )!;
    return toEntity(row);
  }

  async findEntities(uids: { type: string; id: string }[]): Promise<PolicyEntityRecord[]> {
    const found: PolicyEntityRecord[] = [];
    for (const uid of uids) {
      const row = this.db.get('SELECT * FROM policy_entities WHERE type = ? AND id = ?', uid.type, uid.id);
      if (row) found.push(toEntity(row));
    }
    return found;
  }

  async listEntities(page: { limit: number; offset?: number; type?: string }): Promise<PolicyEntityRecord[]> {
    const rows =
      page.type === undefined
        ? this.db.all(
            'SELECT * FROM policy_entities ORDER BY type, id LIMIT ? OFFSET ?',
            page.limit,
            page.offset ?? 0,
          )
        : this.db.all(
            'SELECT * FROM policy_entities WHERE type = ? ORDER BY id LIMIT ? OFFSET ?',
            page.type,
            page.limit,
            page.offset ?? 0,
          );
    return rows.map(toEntity);
  }

  async countEntities(type?: string): Promise<number> {
    const row =
      type === undefined
        ? this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM policy_entities')
        : this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM policy_entities WHERE type = ?', type);
    return Number(row!.n);
  }

  async removeEntity(type: string, id: string): Promise<boolean> {
    return this.db.run('DELETE FROM policy_entities WHERE type = ? AND id = ?', type, id).changes > 0;
  }
}
