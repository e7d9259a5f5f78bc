/** Webhook endpoints in the mongo store; the webhook id is the document's _id. */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { NewWebhook, WebhookPatch, WebhookRecord, WebhookRepository } from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { WebhookDocument } from './models.js';

function toWebhook(doc: WebhookDocument): WebhookRecord {
  return {
    id: doc._id,
    url: doc.url,
    events: [...(doc.events ?? [])],
    description: doc.description ?? null,
    active: doc.active === true,
    secret: doc.secret,
    previous_secret: doc.previous_secret ?? null,
    previous_secret_expires_at: doc.previous_secret_expires_at ?? null,
    disabled_reason: doc.disabled_reason ?? null,
    failing_since: doc.failing_since ?? null,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });

export class MongoWebhookRepository implements WebhookRepository {
  constructor(private readonly webhooks: Model<WebhookDocument>) {}

  async create(input: NewWebhook): Promise<WebhookRecord> {
    const now = new Date();
    try {
      const created = await this.webhooks.create({
        _id: input.id ?? newId('wh', now.getTime()),
        url: input.url,
        events: input.events,
        description: input.description,
        active: input.active,
        secret: input.secret,
        previous_secret: null,
        previous_secret_expires_at: null,
        disabled_reason: null,
        failing_since: null,
        created_at: now,
        updated_at: now,
      });
      return toWebhook(created.toObject());
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  async findById(id: string): Promise<WebhookRecord | null> {
    const doc = await this.webhooks.findOne(byId(id)).lean<WebhookDocument>();
    return doc ? toWebhook(doc) : null;
  }

  async list(page: { limit: number; offset?: number }): Promise<WebhookRecord[]> {
    if (!(page.limit > 0)) return [];
    const docs = await this.webhooks
      .find({})
      .sort({ created_at: 1, _id: 1 })
      .skip(page.offset ?? 0)
      .limit(page.limit)
      .lean<WebhookDocument[]>();
    return docs.map(toWebhook);
  }

  async count(): Promise<number> {
    return this.webhooks.countDocuments({});
  }

  async listActive(): Promise<WebhookRecord[]> {
    const docs = await this.webhooks
      .find({ active: { $eq: true } })
      .sort({ created_at: 1, _id: 1 })
      .lean<WebhookDocument[]>();
    return docs.map(toWebhook);
  }

  async update(id: string, patch: WebhookPatch): Promise<WebhookRecord | null> {
    const set: Record<string, unknown> = { updated_at: new Date() };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined && key !== 'id') set[key] = value;
    }
    const doc = await this.webhooks
      .findOneAndUpdate(byId(id), { $set: set }, { returnDocument: 'after' })
      .lean<WebhookDocument>();
    return doc ? toWebhook(doc) : null;
  }

  async remove(id: string): Promise<boolean> {
    const { deletedCount } = await this.webhooks.deleteOne(byId(id));
    return deletedCount > 0;
  }
}
