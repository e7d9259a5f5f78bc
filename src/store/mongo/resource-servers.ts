/** Resource servers (APIs) in the mongo store. */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewResourceServer,
  ResourceServerPatch,
  ResourceServerRecord,
  ResourceServerRepository,
} from '../ports.js';
import { duplicateKey, isIdViolation, isViolationOf } from './duplicate-key.js';
import { UNIQUE_INDEX, type ResourceServerDocument } from './models.js';

const DEFAULT_TOKEN_TTL_S = 3600;

function toResourceServer(doc: ResourceServerDocument): ResourceServerRecord {
  return {
    id: doc._id,
    identifier: doc.identifier,
    name: doc.name,
    scopes: doc.scopes ?? [],
    access_token_format: doc.access_token_format,
    access_token_ttl: doc.access_token_ttl,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });

export class MongoResourceServerRepository implements ResourceServerRepository {
  constructor(private readonly servers: Model<ResourceServerDocument>) {}

  private async conflict(err: unknown, callerId: string | undefined): Promise<never> {
    const dup = duplicateKey(err);
    if (!dup) throw err;
    if (isViolationOf(dup, UNIQUE_INDEX.resourceIdentifier, 'identifier'))
      throw new StoreConflictError('identifier');
    if (isIdViolation(dup)) throw new StoreConflictError('id');
    // FerretDB does not name the index on insert; only a caller-chosen id can collide with an id.
    const idTaken = callerId !== undefined && (await this.servers.exists(byId(callerId))) !== null;
    throw new StoreConflictError(idTaken ? 'id' : 'identifier');
  }

  async create(input: NewResourceServer): Promise<ResourceServerRecord> {
    const now = new Date();
    try {
      const created = await this.servers.create({
        _id: input.id ?? newId('api'),
        identifier: input.identifier,
        name: input.name,
        scopes: input.scopes ?? [],
        access_token_format: input.access_token_format ?? 'jwt',
        access_token_ttl: input.access_token_ttl ?? DEFAULT_TOKEN_TTL_S,
        created_at: now,
        updated_at: now,
      });
      return toResourceServer(created.toObject());
    } catch (err) {
      return this.conflict(err, input.id);
    }
  }

  async findById(id: string): Promise<ResourceServerRecord | null> {
    const doc = await this.servers.findOne(byId(id)).lean<ResourceServerDocument>();
    return doc ? toResourceServer(doc) : null;
  }

  async findByIdentifier(identifier: string): Promise<ResourceServerRecord | null> {
    const doc = await this.servers
      .findOne({ identifier: { $eq: identifier } })
      .lean<ResourceServerDocument>();
    return doc ? toResourceServer(doc) : null;
  }

  async list(): Promise<ResourceServerRecord[]> {
    const docs = await this.servers.find({}).sort({ identifier: 1 }).lean<ResourceServerDocument[]>();
    return docs.map(toResourceServer);
  }

  async update(id: string, patch: ResourceServerPatch): Promise<ResourceServerRecord | null> {
    const set: Partial<ResourceServerDocument> = { updated_at: new Date() };
    if (patch.identifier !== undefined) set.identifier = patch.identifier;
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.scopes !== undefined) set.scopes = patch.scopes;
    if (patch.access_token_format !== undefined) set.access_token_format = patch.access_token_format;
    if (patch.access_token_ttl !== undefined) set.access_token_ttl = patch.access_token_ttl;
    try {
      const doc = await this.servers
        .findOneAndUpdate(byId(id), { $set: set }, { returnDocument: 'after' })
        .lean<ResourceServerDocument>();
      return doc ? toResourceServer(doc) : null;
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('identifier');
      throw err;
    }
  }

  async remove(id: string): Promise<boolean> {
    const { deletedCount } = await this.servers.deleteOne(byId(id));
    return deletedCount > 0;
  }
}
