/**
 * Cedar policies, the policy schema and registered entities in the mongo store. Versions are
 * appended with insertOne on an `_id` naming (policy, version): of two writers racing for the same
 * next version one gets a duplicate key, so no transaction is needed (FerretDB 1.x has none). The
 * current policies are derived from the versions in memory: policy sets are small and read rarely
 * (once per change and per cache period).
 */
import type { Model } from 'mongoose';

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
import { duplicateKey } from './duplicate-key.js';
import type { PolicyEntityDocument, PolicySchemaDocument, PolicyVersionDocument } from './models.js';

function toVersion(doc: PolicyVersionDocument): PolicyVersion {
  return {
    policy_id: doc.policy_id,
    version: doc.version,
    description: doc.description ?? null,
    policy: doc.policy,
    enabled: doc.enabled === true,
    deleted: doc.deleted === true,
    created_at: doc.created_at,
  };
}

function toEntity(doc: PolicyEntityDocument): PolicyEntityRecord {
  return {
    type: doc.type,
    id: doc.id,
    attrs: JSON.parse(doc.attrs) as JsonObject,
    parents: JSON.parse(doc.parents) as { type: string; id: string }[],
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const versionId = (policyId: string, version: number) => JSON.stringify([policyId, version]);
const entityId = (type: string, id: string) => JSON.stringify([type, id]);

/** The head of each policy among `versions` (sorted by policy, then version), tombstones left out. */
function heads(versions: PolicyVersion[]): PolicyRecord[] {
  const byPolicy = new Map<string, { first: Date; last: PolicyVersion }>();
  for (const v of versions) {
    const seen = byPolicy.get(v.policy_id);
    if (!seen) byPolicy.set(v.policy_id, { first: v.created_at, last: v });
    else if (v.version > seen.last.version) seen.last = v;
  }
  return [...byPolicy.values()]
    .filter(({ last }) => !last.deleted)
    .map(({ first, last }) => ({
      id: last.policy_id,
      description: last.description,
      policy: last.policy,
      enabled: last.enabled,
      version: last.version,
      created_at: first,
      updated_at: last.created_at,
    }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export class MongoPolicyRepository implements PolicyRepository {
  constructor(
    private readonly versionsModel: Model<PolicyVersionDocument>,
    private readonly schemas: Model<PolicySchemaDocument>,
    private readonly entities: Model<PolicyEntityDocument>,
  ) {}

  async append(input: NewPolicyVersion, expected: number | 'absent'): Promise<PolicyVersion> {
    const [latest] = await this.versionsModel
      .find({ policy_id: { $eq: input.policy_id } })
      .sort({ version: -1 })
      .limit(1)
      .lean<PolicyVersionDocument[]>();
    const ok =
      expected === 'absent'
        ? !latest || latest.deleted
        : latest !== undefined && !latest.deleted && latest.version === expected;
    if (!ok) throw new StoreConflictError('version');
    const version = (latest?.version ?? 0) + 1;
    try {
      const created = await this.versionsModel.create({
        _id: versionId(input.policy_id, version),
        policy_id: input.policy_id,
        version,
        description: input.description,
        policy: input.policy,
        enabled: input.enabled,
        deleted: input.deleted === true,
        created_at: nextMoment(latest?.created_at),
      });
      return toVersion(created.toObject());
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('version');
      throw err;
    }
  }

  async findById(id: string): Promise<PolicyRecord | null> {
    return heads(await this.versions(id))[0] ?? null;
  }

  async list(asOf?: Date): Promise<PolicyRecord[]> {
    const filter = asOf ? { created_at: { $lte: asOf } } : {};
    const docs = await this.versionsModel
      .find(filter)
      .sort({ policy_id: 1, version: 1 })
      .lean<PolicyVersionDocument[]>();
    return heads(docs.map(toVersion));
  }

  async versions(id: string): Promise<PolicyVersion[]> {
    const docs = await this.versionsModel
      .find({ policy_id: { $eq: id } })
      .sort({ version: 1 })
      .lean<PolicyVersionDocument[]>();
    return docs.map(toVersion);
  }

  async revision(): Promise<string> {
    const [count, [newest], [schema]] = await Promise.all([
      this.versionsModel.countDocuments({}),
      this.versionsModel.find({}).sort({ created_at: -1 }).limit(1).lean<PolicyVersionDocument[]>(),
      this.schemas.find({}).sort({ _id: -1 }).limit(1).lean<PolicySchemaDocument[]>(),
    ]);
    return `${count}:${newest?.created_at.toISOString() ?? ''}:${schema?._id ?? 0}`;
  }

  async getSchema(): Promise<PolicySchemaRecord | null> {
    const [doc] = await this.schemas.find({}).sort({ _id: -1 }).limit(1).lean<PolicySchemaDocument[]>();
    return doc ? { schema: doc.schema ?? null, version: doc._id, updated_at: doc.created_at } : null;
  }

  async putSchema(schema: string | null, expected: number): Promise<PolicySchemaRecord> {
    const current = await this.getSchema();
    if ((current?.version ?? 0) !== expected) throw new StoreConflictError('version');
    const now = new Date();
    try {
      await this.schemas.create({ _id: expected + 1, schema, created_at: now });
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('version');
      throw err;
    }
    return { schema, version: expected + 1, updated_at: now };
  }

  async putEntity(
    entity: Pick<PolicyEntityRecord, 'type' | 'id' | 'attrs' | 'parents'>,
  ): Promise<PolicyEntityRecord> {
    const now = new Date();
    const doc = await this.entities
      .findOneAndUpdate(
        { _id: { $eq: entityId(entity.type, entity.id) } },
        {
          $set: {
            type: entity.type,
            id: entity.id,
            attrs: JSON.stringify(entity.attrs),
            parents: JSON.stringify(entity.parents),
            updated_at: now,
          },
          $setOnInsert: { created_at: now },
        },
        { upsert: true, returnDocument: 'after' },
      )
      .lean<PolicyEntityDocument>();
    return toEntity(doc!);
  }

  async findEntities(uids: { type: string; id: string }[]): Promise<PolicyEntityRecord[]> {
    if (uids.length === 0) return [];
    const docs = await this.entities
      .find({ _id: { $in: uids.map((u) => entityId(u.type, u.id)) } })
      .lean<PolicyEntityDocument[]>();
    return docs.map(toEntity);
  }

  async listEntities(page: { limit: number; offset?: number; type?: string }): Promise<PolicyEntityRecord[]> {
    if (!(page.limit > 0)) return [];
    const docs = await this.entities
      .find(page.type === undefined ? {} : { type: { $eq: page.type } })
      .sort({ type: 1, id: 1 })
      .skip(page.offset ?? 0)
      .limit(page.limit)
      .lean<PolicyEntityDocument[]>();
    return docs.map(toEntity);
  }

  async countEntities(type?: string): Promise<number> {
    return this.entities.countDocuments(type === undefined ? {} : { type: { $eq: type } });
  }

  async removeEntity(type: string, id: string): Promise<boolean> {
    const { deletedCount } = await this.entities.deleteOne({ _id: { $eq: entityId(type, id) } });
    return deletedCount > 0;
  }
}
