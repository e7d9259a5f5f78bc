/** Plans in the mongo store (the name is the document id). */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import type { NewPlan, PlanPatch, PlanRecord, PlanRepository } from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { PlanDocument } from './models.js';

function toPlan(doc: PlanDocument): PlanRecord {
  return {
    name: doc._id,
    requests_per_hour: doc.requests_per_hour,
    burst: doc.burst,
    quota: doc.quota,
    quota_period: doc.quota_period,
    credits: doc.credits,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byName = (name: string) => ({ _id: { $eq: name } });

export class MongoPlanRepository implements PlanRepository {
  constructor(private readonly plans: Model<PlanDocument>) {}

  async create(input: NewPlan): Promise<PlanRecord> {
    const now = new Date();
    try {
      const created = await this.plans.create({
        _id: input.name,
        requests_per_hour: input.requests_per_hour,
        burst: input.burst,
        quota: input.quota,
        quota_period: input.quota_period,
        credits: input.credits,
        created_at: now,
        updated_at: now,
      });
      return toPlan(created.toObject());
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('name');
      throw err;
    }
  }

  async find(name: string): Promise<PlanRecord | null> {
    const doc = await this.plans.findOne(byName(name)).lean<PlanDocument>();
    return doc ? toPlan(doc) : null;
  }

  async list(): Promise<PlanRecord[]> {
    const docs = await this.plans.find({}).sort({ _id: 1 }).lean<PlanDocument[]>();
    return docs.map(toPlan);
  }

  async update(name: string, patch: PlanPatch): Promise<PlanRecord | null> {
    const set: Partial<PlanDocument> = { updated_at: new Date() };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (set as Record<string, unknown>)[key] = value;
    }
    const doc = await this.plans
      .findOneAndUpdate(byName(name), { $set: set }, { returnDocument: 'after' })
      .lean<PlanDocument>();
    return doc ? toPlan(doc) : null;
  }

  async remove(name: string): Promise<boolean> {
    const { deletedCount } = await this.plans.deleteOne(byName(name));
    return deletedCount > 0;
  }
}
