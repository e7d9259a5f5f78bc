/** API keys in the mongo store: the hash and the short lookup id, never the key. */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { ApiKeyOwnerType, ApiKeyPatch, ApiKeyRecord, ApiKeyRepository, NewApiKey } from '../ports.js';
import { duplicateKey, isIdViolation } from './duplicate-key.js';
import type { ApiKeyDocument } from './models.js';

function toApiKey(doc: ApiKeyDocument): ApiKeyRecord {
  return {
    id: doc._id,
    owner_type: doc.owner_type,
    owner_id: doc.owner_id,
    name: doc.name,
    environment: doc.environment,
    lookup_id: doc.lookup_id,
    secret_hash: doc.secret_hash,
    scopes: doc.scopes ?? [],
    allowed_ips: doc.allowed_ips ?? [],
    expires_at: doc.expires_at ?? null,
    last_used_at: doc.last_used_at ?? null,
    revoked_at: doc.revoked_at ?? null,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });
const byOwner = (ownerType: ApiKeyOwnerType, ownerId: string) => ({
  owner_type: { $eq: ownerType },
  owner_id: { $eq: ownerId },
});

export class MongoApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly keys: Model<ApiKeyDocument>) {}

  async create(input: NewApiKey): Promise<ApiKeyRecord> {
    const now = input.created_at ?? new Date();
    try {
      const created = await this.keys.create({
        _id: input.id ?? newId('key', now.getTime()),
        owner_type: input.owner_type,
        owner_id: input.owner_id,
        name: input.name,
        environment: input.environment,
        lookup_id: input.lookup_id,
        secret_hash: input.secret_hash,
        scopes: input.scopes,
        allowed_ips: input.allowed_ips,
        expires_at: input.expires_at,
        last_used_at: null,
        revoked_at: null,
        created_at: now,
        updated_at: now,
      });
      return toApiKey(created.toObject());
    } catch (err) {
      const dup = duplicateKey(err);
      if (!dup) throw err;
      throw new StoreConflictError(isIdViolation(dup) ? 'id' : 'lookup_id');
    }
  }

  async findById(id: string): Promise<ApiKeyRecord | null> {
    const doc = await this.keys.findOne(byId(id)).lean<ApiKeyDocument>();
    return doc ? toApiKey(doc) : null;
  }

  async findByLookupId(lookupId: string): Promise<ApiKeyRecord | null> {
    const doc = await this.keys.findOne({ lookup_id: { $eq: lookupId } }).lean<ApiKeyDocument>();
    return doc ? toApiKey(doc) : null;
  }

  async listByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<ApiKeyRecord[]> {
    const docs = await this.keys
      .find(byOwner(ownerType, ownerId))
      .sort({ created_at: 1, _id: 1 })
      .lean<ApiKeyDocument[]>();
    return docs.map(toApiKey);
  }

  async update(id: string, patch: ApiKeyPatch): Promise<ApiKeyRecord | null> {
    const set: Partial<ApiKeyDocument> = { updated_at: new Date() };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (set as Record<string, unknown>)[key] = value;
    }
    try {
      const doc = await this.keys
        .findOneAndUpdate(byId(id), { $set: set }, { returnDocument: 'after' })
        .lean<ApiKeyDocument>();
      return doc ? toApiKey(doc) : null;
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('lookup_id');
      throw err;
    }
  }

  async touch(id: string, at: Date): Promise<void> {
    await this.keys.updateOne(
      { _id: { $eq: id }, $or: [{ last_used_at: null }, { last_used_at: { $lt: at } }] },
      { $set: { last_used_at: at } },
    );
  }

  async removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number> {
    const { deletedCount } = await this.keys.deleteMany(byOwner(ownerType, ownerId));
    return deletedCount;
  }
}
