/** Signing keys in the mongo store (the kid is the _id; private parts arrive already encrypted). */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import type { NewSigningKey, SigningKeyPatch, SigningKeyRecord, SigningKeyRepository } from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { SigningKeyDocument } from './models.js';

function toKey(doc: SigningKeyDocument): SigningKeyRecord {
  return {
    kid: doc._id,
    alg: doc.alg,
    use: 'sig',
    status: doc.status,
    public_jwk: doc.public_jwk,
    private_jwk_encrypted: doc.private_jwk_encrypted,
    created_at: doc.created_at,
    activates_at: doc.activates_at,
    retired_at: doc.retired_at ?? null,
    expires_at: doc.expires_at ?? null,
  };
}

const byKid = (kid: string) => ({ _id: { $eq: kid } });

export class MongoSigningKeyRepository implements SigningKeyRepository {
  constructor(private readonly keys: Model<SigningKeyDocument>) {}

  async create(input: NewSigningKey): Promise<SigningKeyRecord> {
    try {
      const created = await this.keys.create({
        _id: input.kid,
        alg: input.alg,
        use: input.use,
        status: input.status,
        public_jwk: input.public_jwk,
        private_jwk_encrypted: input.private_jwk_encrypted,
        created_at: input.created_at ?? new Date(),
        activates_at: input.activates_at,
        retired_at: input.retired_at ?? null,
        expires_at: input.expires_at ?? null,
      });
      return toKey(created.toObject());
    } catch (err) {
      // _id is the only unique key of the collection.
      if (duplicateKey(err)) throw new StoreConflictError('kid');
      throw err;
    }
  }

  async list(): Promise<SigningKeyRecord[]> {
    const docs = await this.keys.find({}).sort({ created_at: 1, _id: 1 }).lean<SigningKeyDocument[]>();
    return docs.map(toKey);
  }

  async update(kid: string, patch: SigningKeyPatch): Promise<SigningKeyRecord | null> {
    const set: Partial<SigningKeyDocument> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.activates_at !== undefined) set.activates_at = patch.activates_at;
    if (patch.retired_at !== undefined) set.retired_at = patch.retired_at;
    if (patch.expires_at !== undefined) set.expires_at = patch.expires_at;
    // Keys carry no updated_at, so an empty patch changes nothing: read instead of writing.
    const query =
      Object.keys(set).length === 0
        ? this.keys.findOne(byKid(kid))
        : this.keys.findOneAndUpdate(byKid(kid), { $set: set }, { returnDocument: 'after' });
    const doc = await query.lean<SigningKeyDocument>();
    return doc ? toKey(doc) : null;
  }

  async remove(kid: string): Promise<boolean> {
    const { deletedCount } = await this.keys.deleteOne(byKid(kid));
    return deletedCount > 0;
  }
}
