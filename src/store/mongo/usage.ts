/**
 * Usage entries in the mongo store. An idempotency key makes the entry's _id (usage-ids.ts), so a
 * retried report is refused by the _id index itself: no unique secondary index, no transaction.
 */
import type { Model } from 'mongoose';

import type { ApiKeyOwnerType, NewUsageEntry, UsageEntry, UsageRepository, UsageSummary } from '../ports.js';
import { usageDay, usageEntryId } from '../usage-ids.js';
import { duplicateKey } from './duplicate-key.js';
import type { UsageDocument } from './models.js';

function toEntry(doc: UsageDocument): UsageEntry {
  return {
    id: doc._id,
    owner_type: doc.owner_type,
    owner_id: doc.owner_id,
    key_id: doc.key_id ?? null,
    model: doc.model,
    message_count: doc.message_count,
    characters: doc.characters,
    research_model: doc.research_model === true,
    messages: doc.messages === null || doc.messages === undefined ? null : JSON.parse(doc.messages),
    idempotency_key: doc.idempotency_key ?? null,
    day: doc.day,
    created_at: doc.created_at,
  };
}

export class MongoUsageRepository implements UsageRepository {
  constructor(private readonly usage: Model<UsageDocument>) {}

  async record(input: NewUsageEntry): Promise<{ entry: UsageEntry; duplicate: boolean }> {
    const id = usageEntryId(input);
    try {
      const created = await this.usage.create({
        _id: id,
        owner_type: input.owner_type,
        owner_id: input.owner_id,
        key_id: input.key_id,
        model: input.model,
        message_count: input.message_count,
        characters: input.characters,
        research_model: input.research_model,
        messages: input.messages === null ? null : JSON.stringify(input.messages),
        idempotency_key: input.idempotency_key,
        day: usageDay(input.created_at),
        created_at: input.created_at,
      });
      return { entry: toEntry(created.toObject()), duplicate: false };
    } catch (err) {
      if (!duplicateKey(err)) throw err;
      const first = await this.usage.findOne({ _id: { $eq: id } }).lean<UsageDocument>();
      if (!first) throw err;
      return { entry: toEntry(first), duplicate: true };
    }
  }

  async summarize(ownerType: ApiKeyOwnerType, ownerId: string, from: Date, to: Date): Promise<UsageSummary> {
    const match = {
      owner_type: { $eq: ownerType },
      owner_id: { $eq: ownerId },
      created_at: { $gte: from, $lt: to },
    };
    const [byDay, byModel] = await Promise.all([
      this.usage.aggregate<{ _id: string; n: number }>([
        { $match: match },
        { $group: { _id: '$day', n: { $sum: 1 } } },
        { $sort: { _id: 1 } },
      ]),
      this.usage.aggregate<{ _id: string; n: number }>([
        { $match: match },
        { $group: { _id: '$model', n: { $sum: 1 } } },
      ]),
    ]);
    byModel.sort((a, b) => b.n - a.n || (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
    return {
      total: byDay.reduce((sum, r) => sum + r.n, 0),
      by_day: byDay.map((r) => ({ date: r._id, count: r.n })),
      by_model: byModel.map((r) => ({ model: r._id, count: r.n })),
    };
  }

  async removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number> {
    const { deletedCount } = await this.usage.deleteMany({
      owner_type: { $eq: ownerType },
      owner_id: { $eq: ownerId },
    });
    return deletedCount;
  }
}
