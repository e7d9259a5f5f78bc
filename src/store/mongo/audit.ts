/** The audit trail in the mongo store: an append-only collection, queried through the shared filter tree. */
import type { Model, QueryFilter } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { AuditEntry, AuditQuery, AuditRepository, NewAuditEntry } from '../ports.js';
import { AUDIT_QUERY_FIELDS, totalOrder } from '../query.js';
import { duplicateKey } from './duplicate-key.js';
import type { AuditDocument } from './models.js';
import { compileFilter, compileSort, type MongoFieldMap } from './mongo-query.js';

/** Queryable fields keep their names (the id is `_id`); changes and details are not queryable. */
export const AUDIT_FIELD_MAP: MongoFieldMap = {
  fields: Object.fromEntries(
    Object.entries(AUDIT_QUERY_FIELDS).map(([field, type]) => [
      field,
      { path: field === 'id' ? '_id' : field, type },
    ]),
  ),
};

/** Newest first unless asked otherwise; totalOrder ends every order with `id` for keyset cursors. */
const DEFAULT_ORDER = { field: 'timestamp', dir: 'desc' } as const;

const json = (value: string | null | undefined) => (typeof value === 'string' ? JSON.parse(value) : null);

function toEntry(doc: AuditDocument): AuditEntry {
  return {
    id: doc._id,
    timestamp: doc.timestamp,
    actor_type: doc.actor_type,
    actor_id: doc.actor_id,
    actor_client_id: doc.actor_client_id ?? null,
    action: doc.action,
    target_type: doc.target_type,
    target_id: doc.target_id ?? null,
    request_id: doc.request_id ?? null,
    ip_address: doc.ip_address ?? null,
    user_agent: doc.user_agent ?? null,
    changes: json(doc.changes),
    details: json(doc.details),
  };
}

export class MongoAuditRepository implements AuditRepository {
  constructor(private readonly entries: Model<AuditDocument>) {}

  private static document(entry: NewAuditEntry): AuditDocument {
    const timestamp = entry.timestamp ?? new Date();
    return {
      _id: entry.id ?? newId('aud', timestamp.getTime()),
      timestamp,
      actor_type: entry.actor_type,
      actor_id: entry.actor_id,
      actor_client_id: entry.actor_client_id ?? null,
      action: entry.action,
      target_type: entry.target_type,
      target_id: entry.target_id ?? null,
      request_id: entry.request_id ?? null,
      ip_address: entry.ip_address ?? null,
      user_agent: entry.user_agent ?? null,
      changes: entry.changes == null ? null : JSON.stringify(entry.changes),
      details: entry.details == null ? null : JSON.stringify(entry.details),
    };
  }

  async append(entry: NewAuditEntry): Promise<AuditEntry> {
    const doc = MongoAuditRepository.document(entry);
    try {
      return toEntry((await this.entries.create(doc)).toObject());
    } catch (err) {
      // _id is the only unique key, and only a caller-chosen one can collide.
      if (duplicateKey(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  async appendMany(entries: NewAuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    try {
      // Ordered, so a failure stops at the first bad entry; ids are fresh, so none is expected.
      await this.entries.insertMany(entries.map(MongoAuditRepository.document), { ordered: true });
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  private filter(query: Pick<AuditQuery, 'where'>): QueryFilter<AuditDocument> {
    return (query.where ? compileFilter(AUDIT_FIELD_MAP, query.where) : {}) as QueryFilter<AuditDocument>;
  }

  async list(query: AuditQuery): Promise<AuditEntry[]> {
    const filter = this.filter(query);
    const sort = compileSort(AUDIT_FIELD_MAP, totalOrder(query.sort, DEFAULT_ORDER));
    // MongoDB reads a limit of 0 as "no limit"; the port means an empty page.
    if (!(query.limit > 0)) return [];
    const docs = await this.entries
      .find(filter)
      .sort(sort)
      .skip(query.offset ?? 0)
      .limit(query.limit)
      .lean<AuditDocument[]>();
    return docs.map(toEntry);
  }

  async count(query: Pick<AuditQuery, 'where'>): Promise<number> {
    return this.entries.countDocuments(this.filter(query));
  }
}
