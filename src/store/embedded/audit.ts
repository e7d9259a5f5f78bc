/** The audit trail in the embedded store: an append-only table, queried through the shared filter tree. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { AuditEntry, AuditQuery, AuditRepository, NewAuditEntry } from '../ports.js';
import { AUDIT_QUERY_FIELDS, totalOrder } from '../query.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';
import { compileOrder, compileWhere, type SqlFieldMap, type SqlFragment } from './sql-query.js';

/** Every queryable field is a column of the same name; changes and details are not queryable. */
export const AUDIT_FIELD_MAP: SqlFieldMap = {
  fields: Object.fromEntries(
    Object.entries(AUDIT_QUERY_FIELDS).map(([field, type]) => [field, { column: field, type }]),
  ),
};

/** Newest first unless asked otherwise; totalOrder ends every order with `id` for keyset cursors. */
const DEFAULT_ORDER = { field: 'timestamp', dir: 'desc' } as const;

const json = (value: unknown) => (typeof value === 'string' ? JSON.parse(value) : null);

function toEntry(row: Row): AuditEntry {
  return {
    id: row.id as string,
    timestamp: fromIso(row.timestamp)!,
    actor_type: row.actor_type as AuditEntry['actor_type'],
    actor_id: row.actor_id as string,
    actor_client_id: (row.actor_client_id as string | null) ?? null,
    action: row.action as string,
    target_type: row.target_type as string,
    target_id: (row.target_id as string | null) ?? null,
    request_id: (row.request_id as string | null) ?? null,
    ip_address: (row.ip_address as string | null) ?? null,
    user_agent: (row.user_agent as string | null) ?? null,
    changes: json(row.changes),
    details: json(row.details),
  };
}

export class EmbeddedAuditRepository implements AuditRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async append(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.insert(entry);
  }

  /** Synchronous, so several can run inside one transaction. */
  private insert(entry: NewAuditEntry): AuditEntry {
    const timestamp = entry.timestamp ?? new Date();
    try {
      const row = this.db.get(
        `INSERT INTO audit_log (id, timestamp, actor_type, actor_id, actor_client_id, action, target_type,
           target_id, request_id, ip_address, user_agent, changes, details)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        entry.id ?? newId('aud', timestamp.getTime()),
        toIso(timestamp),
        entry.actor_type,
        entry.actor_id,
        entry.actor_client_id ?? null,
        entry.action,
        entry.target_type,
        entry.target_id ?? null,
        entry.request_id ?? null,
        entry.ip_address ?? null,
        entry.user_agent ?? null,
        entry.changes == null ? null : JSON.stringify(entry.changes),
        entry.details == null ? null : JSON.stringify(entry.details),
      )!;
      return toEntry(row);
    } catch (err) {
      // The id is the only unique key, and only a caller-chosen one can collide.
      if (uniqueViolation(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  async appendMany(entries: NewAuditEntry[]): Promise<void> {
    // One transaction: a single commit instead of one per entry.
    this.db.transaction(() => {
      for (const entry of entries) this.insert(entry);
    });
  }

  private filter(query: Pick<AuditQuery, 'where'>): SqlFragment {
    return query.where ? compileWhere(AUDIT_FIELD_MAP, query.where) : { sql: '1', params: [] };
  }

  async list(query: AuditQuery): Promise<AuditEntry[]> {
    const where = this.filter(query);
    const order = compileOrder(AUDIT_FIELD_MAP, totalOrder(query.sort, DEFAULT_ORDER));
    return this.db
      .all(
        `SELECT * FROM audit_log WHERE ${where.sql} ORDER BY ${order} LIMIT ? OFFSET ?`,
        ...where.params,
        query.limit,
        query.offset ?? 0,
      )
      .map(toEntry);
  }

  async count(query: Pick<AuditQuery, 'where'>): Promise<number> {
    const where = this.filter(query);
    return Number(
      this.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_log WHERE ${where.sql}`, ...where.params)!
        .n,
    );
  }
}
