/**
 * The event outbox in the embedded store: an append-only event table and a delivery table. Claims
 * are one UPDATE … RETURNING, so two processes on the file (each its own connection, SQLite's write
 * lock between them) never claim the same delivery; complete and fail are single conditional
 * UPDATEs on the lease owner.
 */
import { StoreConflictError } from '../errors.js';
import {
  checkPositive,
  CLAIMABLE_STATUSES,
  deliveryId,
  FINAL_STATUSES,
  pageCursor,
  readPageCursor,
  RETRYABLE_STATUSES,
  statusList,
} from '../outbox-shared.js';
import type {
  AttemptFailure,
  AttemptReport,
  ClaimFilter,
  DeliveryLease,
  DeliveryListQuery,
  EventListQuery,
  NewDelivery,
  OutboxDelivery,
  OutboxEvent,
  OutboxPage,
  OutboxRepository,
} from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');
const sqlList = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

function toEvent(row: Row): OutboxEvent {
  return {
    id: row.id as string,
    type: row.type as string,
    timestamp: fromIso(row.timestamp)!,
    actor: { type: row.actor_type as OutboxEvent['actor']['type'], id: row.actor_id as string },
    data: JSON.parse(row.data as string),
  };
}

function toDelivery(row: Row): OutboxDelivery {
  return {
    id: row.id as string,
    event_id: row.event_id as string,
    endpoint_id: row.endpoint_id as string,
    status: row.status as OutboxDelivery['status'],
    attempts: Number(row.attempts),
    next_attempt_at: fromIso(row.next_attempt_at),
    lease_owner: (row.lease_owner as string | null) ?? null,
    lease_expires_at: fromIso(row.lease_expires_at),
    last_status: num(row.last_status),
    last_error: (row.last_error as string | null) ?? null,
    latency_ms: num(row.latency_ms),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
    finished_at: fromIso(row.finished_at),
  };
}

export class EmbeddedOutboxRepository implements OutboxRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async append(events: OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      this.db.transaction(() => {
        for (const event of events) {
          this.db.run(
            `INSERT INTO outbox_events (id, type, timestamp, actor_type, actor_id, data) VALUES (?, ?, ?, ?, ?, ?)`,
            event.id,
            event.type,
            toIso(event.timestamp),
            event.actor.type,
            event.actor.id,
            JSON.stringify(event.data),
          );
        }
      });
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  async getEvent(id: string): Promise<OutboxEvent | null> {
    const row = this.db.get(`SELECT * FROM outbox_events WHERE id = ?`, id);
    return row ? toEvent(row) : null;
  }

  async listEvents(query: EventListQuery): Promise<OutboxPage<OutboxEvent>> {
    checkPositive('limit', query.limit);
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (query.from) {
      where.push('timestamp >= ?');
      params.push(toIso(query.from));
    }
    if (query.to) {
      where.push('timestamp < ?');
      params.push(toIso(query.to));
    }
    if (query.types) {
      if (query.types.length === 0) return { items: [], next_cursor: null };
      where.push(`type IN (${placeholders(query.types.length)})`);
      params.push(...query.types);
    }
    if (query.cursor) {
      const after = readPageCursor(query.cursor);
      where.push('(timestamp > ? OR (timestamp = ? AND id > ?))');
      params.push(toIso(after.at), toIso(after.at), after.id);
    }
    const rows = this.db.all(
      `SELECT * FROM outbox_events WHERE ${where.length ? where.join(' AND ') : '1'}
       ORDER BY timestamp, id LIMIT ?`,
      ...params,
      query.limit + 1,
    );
    const items = rows.slice(0, query.limit).map(toEvent);
    const last = items.at(-1);
    return {
      items,
      next_cursor: rows.length > query.limit && last ? pageCursor(last.timestamp, last.id) : null,
    };
  }

  async enqueue(deliveries: NewDelivery[]): Promise<OutboxDelivery[]> {
    return this.db.transaction(() =>
      deliveries.map((input) => {
        const id = deliveryId(input.event_id, input.endpoint_id);
        const now = toIso(input.now ?? new Date());
        const inserted = this.db.get(
          `INSERT INTO outbox_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at,
             created_at, updated_at)
           VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING *`,
          id,
          input.event_id,
          input.endpoint_id,
          input.next_attempt_at ? toIso(input.next_attempt_at) : now,
          now,
          now,
        );
        // A pair that has a delivery already keeps it: read that one.
        return toDelivery(inserted ?? this.db.get(`SELECT * FROM outbox_deliveries WHERE id = ?`, id)!);
      }),
    );
  }

  async enqueueQuietly(deliveries: NewDelivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    this.db.transaction(() => {
      for (const input of deliveries) {
        const now = toIso(input.now ?? new Date());
        this.db.run(
          `INSERT INTO outbox_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at,
             created_at, updated_at)
           VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING`,
          deliveryId(input.event_id, input.endpoint_id),
          input.event_id,
          input.endpoint_id,
          input.next_attempt_at ? toIso(input.next_attempt_at) : now,
          now,
          now,
        );
      }
    });
  }

  async enqueueLeased(deliveries: NewDelivery[], lease: DeliveryLease): Promise<string[]> {
    if (deliveries.length === 0) return [];
    const until = toIso(lease.until);
    return this.db.transaction(() => {
      const stored: string[] = [];
      for (const input of deliveries) {
        const now = toIso(input.now ?? new Date());
        const row = this.db.get<{ id: string }>(
          `INSERT INTO outbox_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at,
             lease_owner, lease_expires_at, created_at, updated_at)
           VALUES (?, ?, ?, 'pending', 1, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`,
          deliveryId(input.event_id, input.endpoint_id),
          input.event_id,
          input.endpoint_id,
          input.next_attempt_at ? toIso(input.next_attempt_at) : now,
          lease.owner,
          until,
          now,
          now,
        );
        if (row) stored.push(row.id);
      }
      return stored;
    });
  }

  async pendingStats(): Promise<{ pending: number; oldest: Date | null }> {
    const row = this.db.get<{ n: number; oldest: string | null }>(
      `SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox_deliveries
        WHERE status IN (${sqlList(CLAIMABLE_STATUSES)})`,
    )!;
    return { pending: Number(row.n), oldest: fromIso(row.oldest) };
  }

  async claimDue(
    now: Date,
    limit: number,
    leaseMs: number,
    owner: string,
    filter: ClaimFilter = {},
  ): Promise<OutboxDelivery[]> {
    checkPositive('limit', limit);
    checkPositive('leaseMs', leaseMs);
    const at = toIso(now);
    const extra: string[] = [];
    const extraParams: string[] = [];
    if (filter.endpointPrefix) {
      // substr rather than LIKE: a prefix is literal, whatever characters it holds.
      extra.push('AND substr(endpoint_id, 1, ?) = ?');
      extraParams.push(String(filter.endpointPrefix.length), filter.endpointPrefix);
    }
    if (filter.excludeEndpoints?.length) {
      extra.push(`AND endpoint_id NOT IN (${placeholders(filter.excludeEndpoints.length)})`);
      extraParams.push(...filter.excludeEndpoints);
    }
    // One statement: SQLite holds the write lock from choosing the rows to updating them.
    const rows = this.db.all(
      `UPDATE outbox_deliveries
          SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?
        WHERE id IN (
          SELECT id FROM outbox_deliveries
           WHERE status IN (${sqlList(CLAIMABLE_STATUSES)}) AND next_attempt_at <= ?
             AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ${extra.join(' ')}
           ORDER BY next_attempt_at, id LIMIT ?)
        RETURNING *`,
      owner,
      toIso(new Date(now.getTime() + leaseMs)),
      at,
      at,
      at,
      ...extraParams,
      limit,
    );
    return rows
      .map(toDelivery)
      .sort(
        (a, b) =>
          a.next_attempt_at!.getTime() - b.next_attempt_at!.getTime() ||
          (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
      );
  }

  async complete(id: string, owner: string, result: AttemptReport): Promise<OutboxDelivery | null> {
    const at = toIso(result.now ?? new Date());
    // Outcomes share their commit with the other writes of the turn (group commit): a worker
    // records many at once.
    const { changes } = await this.db.runGrouped(
      `UPDATE outbox_deliveries
          SET status = 'succeeded', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
              last_status = ?, last_error = NULL, latency_ms = ?, updated_at = ?, finished_at = ?
        WHERE id = ? AND lease_owner = ? AND status IN (${sqlList(CLAIMABLE_STATUSES)})`,
      result.status ?? null,
      result.latency_ms ?? null,
      at,
      at,
      id,
      owner,
    );
    return changes > 0 ? this.get(id) : null;
  }

  async fail(id: string, owner: string, failure: AttemptFailure): Promise<OutboxDelivery | null> {
    const at = toIso(failure.now ?? new Date());
    const dead = failure.dead === true;
    const row = this.db.get(
      `UPDATE outbox_deliveries
          SET status = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL,
              last_status = ?, last_error = ?, latency_ms = ?, updated_at = ?, finished_at = ?
        WHERE id = ? AND lease_owner = ? AND status IN (${sqlList(CLAIMABLE_STATUSES)})
        RETURNING *`,
      dead ? 'dead' : 'failed',
      dead ? null : toIso(failure.next_attempt_at!),
      failure.status ?? null,
      failure.error,
      failure.latency_ms ?? null,
      at,
      dead ? at : null,
      id,
      owner,
    );
    return row ? toDelivery(row) : null;
  }

  async get(id: string): Promise<OutboxDelivery | null> {
    const row = this.db.get(`SELECT * FROM outbox_deliveries WHERE id = ?`, id);
    return row ? toDelivery(row) : null;
  }

  async list(query: DeliveryListQuery): Promise<OutboxPage<OutboxDelivery>> {
    checkPositive('limit', query.limit);
    const where: string[] = [];
    const params: string[] = [];
    if (query.endpoint_id !== undefined) {
      where.push('endpoint_id = ?');
      params.push(query.endpoint_id);
    }
    if (query.event_id !== undefined) {
      where.push('event_id = ?');
      params.push(query.event_id);
    }
    const statuses = statusList(query.status);
    if (statuses) {
      if (statuses.length === 0) return { items: [], next_cursor: null };
      where.push(`status IN (${placeholders(statuses.length)})`);
      params.push(...statuses);
    }
    if (query.cursor) {
      const after = readPageCursor(query.cursor);
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      params.push(toIso(after.at), toIso(after.at), after.id);
    }
    const rows = this.db.all(
      `SELECT * FROM outbox_deliveries WHERE ${where.length ? where.join(' AND ') : '1'}
       ORDER BY created_at DESC, id DESC LIMIT ?`,
      ...params,
      query.limit + 1,
    );
    const items = rows.slice(0, query.limit).map(toDelivery);
    const last = items.at(-1);
    return {
      items,
      next_cursor: rows.length > query.limit && last ? pageCursor(last.created_at, last.id) : null,
    };
  }

  async retry(id: string, now = new Date()): Promise<OutboxDelivery | null> {
    const at = toIso(now);
    // The lease is left alone: a failed delivery being attempted stays its claimer's to report.
    const row = this.db.get(
      `UPDATE outbox_deliveries
          SET status = 'pending', next_attempt_at = ?, finished_at = NULL, updated_at = ?
        WHERE id = ? AND status IN (${sqlList(RETRYABLE_STATUSES)})
        RETURNING *`,
      at,
      at,
      id,
    );
    return row ? toDelivery(row) : null;
  }

  async purgeOlderThan(date: Date): Promise<{ events: number; deliveries: number }> {
    const at = toIso(date);
    return this.db.transaction(() => {
      const deliveries = this.db.run(
        `DELETE FROM outbox_deliveries WHERE status IN (${sqlList(FINAL_STATUSES)}) AND finished_at < ?`,
        at,
      ).changes;
      const events = this.db.run(
        `DELETE FROM outbox_events WHERE timestamp < ?
           AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.event_id = outbox_events.id)`,
        at,
      ).changes;
      return { events, deliveries };
    });
  }
}
