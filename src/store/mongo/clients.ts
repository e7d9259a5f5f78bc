/** OAuth clients in the mongo store; the client_id is the document's _id. */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import type { ClientPatch, ClientRecord, ClientRepository, NewClient } from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { ClientDocument } from './models.js';

function toClient(doc: ClientDocument): ClientRecord {
  return {
    client_id: doc._id,
    client_secret_hash: doc.client_secret_hash ?? null,
    metadata: doc.metadata ?? {},
    first_party: doc.first_party === true,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byId = (clientId: string) => ({ _id: { $eq: clientId } });

export class MongoClientRepository implements ClientRepository {
  constructor(private readonly clients: Model<ClientDocument>) {}

  async create(input: NewClient): Promise<ClientRecord> {
    const now = new Date();
    try {
      const created = await this.clients.create({
        _id: input.client_id,
        client_secret_hash: input.client_secret_hash ?? null,
        metadata: input.metadata,
        first_party: input.first_party ?? false,
        created_at: now,
        updated_at: now,
      });
      return toClient(created.toObject());
    } catch (err) {
      // _id is the only unique key of the collection.
      if (duplicateKey(err)) throw new StoreConflictError('client_id');
      throw err;
    }
  }

  async find(clientId: string): Promise<ClientRecord | null> {
    const doc = await this.clients.findOne(byId(clientId)).lean<ClientDocument>();
    return doc ? toClient(doc) : null;
  }

  async list(page: { limit: number; offset?: number }): Promise<ClientRecord[]> {
    // MongoDB reads a limit of 0 as "no limit"; the port means an empty page.
    if (!(page.limit > 0)) return [];
    const docs = await this.clients
      .find({})
      .sort({ created_at: 1, _id: 1 })
      .skip(page.offset ?? 0)
      .limit(page.limit)
      .lean<ClientDocument[]>();
    return docs.map(toClient);
  }

  async count(): Promise<number> {
    return this.clients.countDocuments({});
  }

  async update(clientId: string, patch: ClientPatch): Promise<ClientRecord | null> {
    const set: Partial<ClientDocument> = { updated_at: new Date() };
    if (patch.client_secret_hash !== undefined) set.client_secret_hash = patch.client_secret_hash;
    if (patch.metadata !== undefined) set.metadata = patch.metadata;
    if (patch.first_party !== undefined) set.first_party = patch.first_party;
    const doc = await this.clients
      .findOneAndUpdate(byId(clientId), { $set: set }, { returnDocument: 'after' })
      .lean<ClientDocument>();
    return doc ? toClient(doc) : null;
  }

  async remove(clientId: string): Promise<boolean> {
    const { deletedCount } = await this.clients.deleteOne(byId(clientId));
    return deletedCount > 0;
  }
}
