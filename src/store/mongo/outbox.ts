/**
 * The event outbox in the mongo store: collections outbox_events, outbox_deliveries and
 * outbox_claims. No transactions. Claiming cannot rest on a conditional findOneAndUpdate alone:
 * FerretDB 1.x applies an update as read-then-write-back, so two racing conditional updates of one
 * document can both succeed. So a claim first inserts a fence document `<delivery id>#<attempt>`
 * into outbox_claims (an _id insert is atomic on every backend: exactly one claimer of that attempt
 * wins), then advances the delivery with findOneAndUpdate conditioned on the attempt number it read.
 * Every claim counts an attempt, so the attempt number is the claim's generation: after a lease
 * expires the next claimer fences the next attempt. Complete and fail are findOneAndUpdate
 * conditioned on the lease owner (on FerretDB 1.x, a lease owner reporting late while another
 * instance re-claims the expired lease may race; delivery stays at least once).
 */
import type { Model, QueryFilter } from 'mongoose';

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
import { duplicateKey } from './duplicate-key.js';
import { escapeRegex } from './mongo-query.js';
import type { OutboxClaimDocument, OutboxDeliveryDocument, OutboxEventDocument } from './models.js';

const byId = (id: string) => ({ _id: { $eq: id } });
/** Batch size of purge's deletes. */
const PURGE_BATCH = 500;

function toEvent(doc: OutboxEventDocument): OutboxEvent {
  return {
    id: doc._id,
    type: doc.type,
    timestamp: doc.timestamp,
    actor: { type: doc.actor_type, id: doc.actor_id },
    data: JSON.parse(doc.data),
  };
}

function toDelivery(doc: OutboxDeliveryDocument): OutboxDelivery {
  return {
    id: doc._id,
    event_id: doc.event_id,
    endpoint_id: doc.endpoint_id,
    status: doc.status,
    attempts: doc.attempts,
    next_attempt_at: doc.next_attempt_at ?? null,
    lease_owner: doc.lease_owner ?? null,
    lease_expires_at: doc.lease_expires_at ?? null,
    last_status: doc.last_status ?? null,
    last_error: doc.last_error ?? null,
    latency_ms: doc.latency_ms ?? null,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
    finished_at: doc.finished_at ?? null,
  };
}

/** Index of the first document an ordered insertMany refused, when the error says. */
function firstRefused(err: unknown): number | undefined {
  const e = err as { writeErrors?: { index?: unknown }[]; index?: unknown };
  const index = e.writeErrors?.[0]?.index ?? e.index;
  return typeof index === 'number' ? index : undefined;
}

export class MongoOutboxRepository implements OutboxRepository {
  constructor(
    private readonly events: Model<OutboxEventDocument>,
    private readonly deliveries: Model<OutboxDeliveryDocument>,
    private readonly claims: Model<OutboxClaimDocument>,
  ) {}

  /**
   * All or none without a transaction: ids already stored are refused before anything is written;
   * an ordered insert that still hits one (an id stored meanwhile, which only caller-chosen ids can
   * do) stops there, and the events of the batch stored before it are deleted again.
   */
  async append(events: OutboxEvent[]): Promise<void> {
    if (events.length === 0) return;
    const docs: OutboxEventDocument[] = events.map((e) => ({
      _id: e.id,
      type: e.type,
      timestamp: e.timestamp,
      actor_type: e.actor.type,
      actor_id: e.actor.id,
      data: JSON.stringify(e.data),
    }));
    const ids = docs.map((d) => d._id);
    if (new Set(ids).size < ids.length) throw new StoreConflictError('id');
    if ((await this.events.countDocuments({ _id: { $in: ids } })) > 0) throw new StoreConflictError('id');
    try {
      await this.events.insertMany(docs, { ordered: true, lean: true });
    } catch (err) {
      // Which were stored: those before the refused one; without that in the reply, and with no
      // conflict to explain the failure, none of the ids was taken before, so all of them are ours.
      const refused = firstRefused(err);
      const conflict = duplicateKey(err) !== undefined;
      const ours = refused !== undefined ? ids.slice(0, refused) : conflict ? [] : ids;
      if (ours.length > 0) await this.events.deleteMany({ _id: { $in: ours } });
      if (conflict) throw new StoreConflictError('id');
      throw err;
    }
  }

  async getEvent(id: string): Promise<OutboxEvent | null> {
    const doc = await this.events.findOne(byId(id)).lean<OutboxEventDocument>();
    return doc ? toEvent(doc) : null;
  }

  async listEvents(query: EventListQuery): Promise<OutboxPage<OutboxEvent>> {
    checkPositive('limit', query.limit);
    const parts: QueryFilter<OutboxEventDocument>[] = [];
    if (query.from) parts.push({ timestamp: { $gte: query.from } });
    if (query.to) parts.push({ timestamp: { $lt: query.to } });
    if (query.types) parts.push({ type: { $in: query.types } });
    if (query.cursor) {
      const after = readPageCursor(query.cursor);
      parts.push({
        $or: [{ timestamp: { $gt: after.at } }, { timestamp: { $eq: after.at }, _id: { $gt: after.id } }],
      });
    }
    const docs = await this.events
      .find(parts.length ? { $and: parts } : {})
      .sort({ timestamp: 1, _id: 1 })
      .limit(query.limit + 1)
      .lean<OutboxEventDocument[]>();
    const items = docs.slice(0, query.limit).map(toEvent);
    const last = items.at(-1);
    return {
      items,
      next_cursor: docs.length > query.limit && last ? pageCursor(last.timestamp, last.id) : null,
    };
  }

  async enqueue(deliveries: NewDelivery[]): Promise<OutboxDelivery[]> {
    if (deliveries.length === 0) return [];
    const { docs } = await this.insertPending(deliveries);
    const stored = await this.deliveries
      .find({ _id: { $in: [...docs.keys()] } })
      .lean<OutboxDeliveryDocument[]>();
    const byKey = new Map(stored.map((d) => [d._id, toDelivery(d)]));
    return deliveries.map((input) => {
      const found = byKey.get(deliveryId(input.event_id, input.endpoint_id));
      if (!found) throw new Error('enqueued delivery not found after insert');
      return found;
    });
  }

  async enqueueQuietly(deliveries: NewDelivery[]): Promise<void> {
    if (deliveries.length > 0) await this.insertPending(deliveries);
  }

  /**
   * The first attempt of each is fenced (`<id>#1` in outbox_claims) before the delivery is stored
   * leased with that attempt counted, exactly as a claim would leave it; a later claim (the lease
   * expired) fences attempt 2. A pair whose fence or delivery existed already is left as it was.
   */
  async enqueueLeased(deliveries: NewDelivery[], lease: DeliveryLease): Promise<string[]> {
    if (deliveries.length === 0) return [];
    const ids = [...new Set(deliveries.map((d) => deliveryId(d.event_id, d.endpoint_id)))];
    const now = new Date();
    let fenced = new Set(ids);
    try {
      await this.claims.insertMany(
        ids.map((id) => ({ _id: `${id}#1`, delivery_id: id, owner: lease.owner, created_at: now })),
        { ordered: false, lean: true },
      );
    } catch (err) {
      if (!duplicateKey(err)) throw err;
      const ours = await this.claims
        .find({ _id: { $in: ids.map((id) => `${id}#1`) }, owner: { $eq: lease.owner } })
        .lean<OutboxClaimDocument[]>();
      fenced = new Set(ours.map((c) => c.delivery_id));
    }
    const { refused } = await this.insertPending(
      deliveries.filter((d) => fenced.has(deliveryId(d.event_id, d.endpoint_id))),
      lease,
    );
    if (!refused) return [...fenced];
    // Some pairs had a delivery already: those are not ours, and neither is their first attempt.
    const stored = await this.deliveries
      .find({ _id: { $in: [...fenced] }, lease_owner: { $eq: lease.owner }, attempts: { $eq: 1 } })
      .lean<OutboxDeliveryDocument[]>();
    const leased = new Set(stored.map((d) => d._id));
    const others = [...fenced].filter((id) => !leased.has(id));
    if (others.length > 0) await this.claims.deleteMany({ _id: { $in: others.map((id) => `${id}#1`) } });
    return [...leased];
  }

  /**
   * Inserts a pending delivery per pair that has none (with `lease`: claimed by its owner, the first
   * attempt counted); returns the documents meant, by id, and whether any pair was refused.
   */
  private async insertPending(
    deliveries: NewDelivery[],
    lease?: DeliveryLease,
  ): Promise<{ docs: Map<string, OutboxDeliveryDocument>; refused: boolean }> {
    const docs = new Map<string, OutboxDeliveryDocument>();
    for (const input of deliveries) {
      const id = deliveryId(input.event_id, input.endpoint_id);
      if (docs.has(id)) continue;
      const now = input.now ?? new Date();
      docs.set(id, {
        _id: id,
        event_id: input.event_id,
        endpoint_id: input.endpoint_id,
        status: 'pending',
        attempts: lease ? 1 : 0,
        next_attempt_at: input.next_attempt_at ?? now,
        lease_owner: lease?.owner ?? null,
        lease_expires_at: lease?.until ?? null,
        last_status: null,
        last_error: null,
        latency_ms: null,
        created_at: now,
        updated_at: now,
        finished_at: null,
      });
    }
    if (docs.size === 0) return { docs, refused: false };
    try {
      // Unordered: pairs already enqueued are refused by _id, the rest are stored.
      await this.deliveries.insertMany([...docs.values()], { ordered: false, lean: true });
    } catch (err) {
      if (!duplicateKey(err)) throw err;
      return { docs, refused: true };
    }
    return { docs, refused: false };
  }

  async pendingStats(): Promise<{ pending: number; oldest: Date | null }> {
    const waiting = { status: { $in: [...CLAIMABLE_STATUSES] } };
    const [pending, oldest] = await Promise.all([
      this.deliveries.countDocuments(waiting),
      this.deliveries.findOne(waiting).sort({ created_at: 1, _id: 1 }).lean<OutboxDeliveryDocument>(),
    ]);
    return { pending, oldest: oldest?.created_at ?? null };
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
    const due: QueryFilter<OutboxDeliveryDocument> = {
      status: { $in: [...CLAIMABLE_STATUSES] },
      next_attempt_at: { $lte: now },
      $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }],
    };
    const endpoint: { $regex?: RegExp; $nin?: string[] } = {};
    if (filter.endpointPrefix) endpoint.$regex = new RegExp(`^${escapeRegex(filter.endpointPrefix)}`);
    if (filter.excludeEndpoints?.length) endpoint.$nin = [...filter.excludeEndpoints];
    if (endpoint.$regex || endpoint.$nin) due.endpoint_id = endpoint;
    // A few more than asked: racing claimers take some of the same candidates.
    const candidates = await this.deliveries
      .find(due)
      .sort({ next_attempt_at: 1, _id: 1 })
      .limit(limit * 2)
      .lean<OutboxDeliveryDocument[]>();
    const claimed: OutboxDelivery[] = [];
    const leaseUntil = new Date(now.getTime() + leaseMs);
    for (const candidate of candidates) {
      if (claimed.length >= limit) break;
      const fence = `${candidate._id}#${candidate.attempts + 1}`;
      try {
        await this.claims.create({ _id: fence, delivery_id: candidate._id, owner, created_at: now });
      } catch (err) {
        if (duplicateKey(err)) continue; // another claimer won this attempt
        throw err;
      }
      const doc = await this.deliveries
        .findOneAndUpdate(
          {
            _id: { $eq: candidate._id },
            attempts: { $eq: candidate.attempts },
            status: { $in: [...CLAIMABLE_STATUSES] },
          },
          {
            $set: { lease_owner: owner, lease_expires_at: leaseUntil, updated_at: now },
            $inc: { attempts: 1 },
          },
          { returnDocument: 'after' },
        )
        .lean<OutboxDeliveryDocument>();
      if (doc) {
        claimed.push(toDelivery(doc));
      } else {
        // It changed since it was read (finished, purged): give the fence back so that attempt
        // number stays claimable should the delivery become due again.
        await this.claims.deleteOne(byId(fence));
      }
    }
    return claimed;
  }

  async complete(id: string, owner: string, result: AttemptReport): Promise<OutboxDelivery | null> {
    const at = result.now ?? new Date();
    return this.finishAttempt(id, owner, {
      status: 'succeeded',
      next_attempt_at: null,
      last_status: result.status ?? null,
      last_error: null,
      latency_ms: result.latency_ms ?? null,
      updated_at: at,
      finished_at: at,
    });
  }

  async fail(id: string, owner: string, failure: AttemptFailure): Promise<OutboxDelivery | null> {
    const at = failure.now ?? new Date();
    const dead = failure.dead === true;
    return this.finishAttempt(id, owner, {
      status: dead ? 'dead' : 'failed',
      next_attempt_at: dead ? null : failure.next_attempt_at!,
      last_status: failure.status ?? null,
      last_error: failure.error,
      latency_ms: failure.latency_ms ?? null,
      updated_at: at,
      finished_at: dead ? at : null,
    });
  }

  private async finishAttempt(
    id: string,
    owner: string,
    set: Partial<OutboxDeliveryDocument>,
  ): Promise<OutboxDelivery | null> {
    const doc = await this.deliveries
      .findOneAndUpdate(
        { _id: { $eq: id }, lease_owner: { $eq: owner }, status: { $in: [...CLAIMABLE_STATUSES] } },
        { $set: { ...set, lease_owner: null, lease_expires_at: null } },
        { returnDocument: 'after' },
      )
      .lean<OutboxDeliveryDocument>();
    return doc ? toDelivery(doc) : null;
  }

  async get(id: string): Promise<OutboxDelivery | null> {
    const doc = await this.deliveries.findOne(byId(id)).lean<OutboxDeliveryDocument>();
    return doc ? toDelivery(doc) : null;
  }

  async list(query: DeliveryListQuery): Promise<OutboxPage<OutboxDelivery>> {
    checkPositive('limit', query.limit);
    const parts: QueryFilter<OutboxDeliveryDocument>[] = [];
    if (query.endpoint_id !== undefined) parts.push({ endpoint_id: { $eq: query.endpoint_id } });
    if (query.event_id !== undefined) parts.push({ event_id: { $eq: query.event_id } });
    const statuses = statusList(query.status);
    if (statuses) parts.push({ status: { $in: statuses } });
    if (query.cursor) {
      const after = readPageCursor(query.cursor);
      parts.push({
        $or: [{ created_at: { $lt: after.at } }, { created_at: { $eq: after.at }, _id: { $lt: after.id } }],
      });
    }
    const docs = await this.deliveries
      .find(parts.length ? { $and: parts } : {})
      .sort({ created_at: -1, _id: -1 })
      .limit(query.limit + 1)
      .lean<OutboxDeliveryDocument[]>();
    const items = docs.slice(0, query.limit).map(toDelivery);
    const last = items.at(-1);
    return {
      items,
      next_cursor: docs.length > query.limit && last ? pageCursor(last.created_at, last.id) : null,
    };
  }

  async retry(id: string, now = new Date()): Promise<OutboxDelivery | null> {
    // The lease is left alone: a failed delivery being attempted stays its claimer's to report.
    const doc = await this.deliveries
      .findOneAndUpdate(
        { _id: { $eq: id }, status: { $in: [...RETRYABLE_STATUSES] } },
        { $set: { status: 'pending', next_attempt_at: now, finished_at: null, updated_at: now } },
        { returnDocument: 'after' },
      )
      .lean<OutboxDeliveryDocument>();
    return doc ? toDelivery(doc) : null;
  }

  async purgeOlderThan(date: Date): Promise<{ events: number; deliveries: number }> {
    let deliveries = 0;
    for (;;) {
      const batch = await this.deliveries
        .find({ status: { $in: [...FINAL_STATUSES] }, finished_at: { $lt: date } }, { _id: 1 })
        .limit(PURGE_BATCH)
        .lean<{ _id: string }[]>();
      if (batch.length === 0) break;
      const ids = batch.map((d) => d._id);
      await this.claims.deleteMany({ delivery_id: { $in: ids } });
      deliveries += (await this.deliveries.deleteMany({ _id: { $in: ids } })).deletedCount;
      if (batch.length < PURGE_BATCH) break;
    }
    let events = 0;
    let after: string | undefined;
    for (;;) {
      const filter: QueryFilter<OutboxEventDocument> = { timestamp: { $lt: date } };
      if (after !== undefined) filter._id = { $gt: after };
      const batch = await this.events
        .find(filter, { _id: 1 })
        .sort({ _id: 1 })
        .limit(PURGE_BATCH)
        .lean<{ _id: string }[]>();
      if (batch.length === 0) break;
      after = batch.at(-1)!._id;
      const ids = batch.map((e) => e._id);
      const referenced = new Set(
        (
          await this.deliveries
            .find({ event_id: { $in: ids } }, { event_id: 1 })
            .lean<{ event_id: string }[]>()
        ).map((d) => d.event_id),
      );
      const orphans = ids.filter((id) => !referenced.has(id));
      if (orphans.length > 0)
        events += (await this.events.deleteMany({ _id: { $in: orphans } })).deletedCount;
      if (batch.length < PURGE_BATCH) break;
    }
    return { events, deliveries };
  }
}
