/** Initial and registration access tokens (dynamic client registration) in the mongo store. */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewRegistrationToken,
  RegistrationTokenKind,
  RegistrationTokenRecord,
  RegistrationTokenRepository,
} from '../ports.js';
import { duplicateKey, isIdViolation, isViolationOf } from './duplicate-key.js';
import { UNIQUE_INDEX, type RegistrationTokenDocument } from './models.js';

function toToken(doc: RegistrationTokenDocument): RegistrationTokenRecord {
  return {
    id: doc._id,
    kind: doc.kind,
    token_hash: doc.token_hash,
    client_id: doc.client_id ?? null,
    description: doc.description ?? null,
    created_by: doc.created_by ?? null,
    created_at: doc.created_at,
    expires_at: doc.expires_at ?? null,
    last_used_at: doc.last_used_at ?? null,
    use_count: doc.use_count ?? 0,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });

export class MongoRegistrationTokenRepository implements RegistrationTokenRepository {
  constructor(private readonly tokens: Model<RegistrationTokenDocument>) {}

  async create(input: NewRegistrationToken): Promise<RegistrationTokenRecord> {
    const id = input.id ?? newId(input.kind === 'initial_access' ? 'iat' : 'rat');
    try {
      const created = await this.tokens.create({
        _id: id,
        kind: input.kind,
        token_hash: input.token_hash,
        client_id: input.client_id ?? null,
        description: input.description ?? null,
        created_by: input.created_by ?? null,
        created_at: new Date(),
        expires_at: input.expires_at ?? null,
        last_used_at: null,
        use_count: 0,
      });
      return toToken(created.toObject());
    } catch (err) {
      const dup = duplicateKey(err);
      if (!dup) throw err;
      if (isViolationOf(dup, UNIQUE_INDEX.registrationTokenHash, 'token_hash'))
        throw new StoreConflictError('token_hash');
      if (isIdViolation(dup)) throw new StoreConflictError('id');
      // FerretDB does not name the index on insert: a caller-chosen id is the only other candidate.
      const idTaken = input.id !== undefined && (await this.tokens.exists(byId(input.id))) !== null;
      throw new StoreConflictError(idTaken ? 'id' : 'token_hash');
    }
  }

  async findById(id: string): Promise<RegistrationTokenRecord | null> {
    const doc = await this.tokens.findOne(byId(id)).lean<RegistrationTokenDocument>();
    return doc ? toToken(doc) : null;
  }

  async findByHash(tokenHash: string): Promise<RegistrationTokenRecord | null> {
    const doc = await this.tokens
      .findOne({ token_hash: { $eq: tokenHash } })
      .lean<RegistrationTokenDocument>();
    return doc ? toToken(doc) : null;
  }

  async list(
    kind: RegistrationTokenKind,
    page: { limit: number; offset?: number },
  ): Promise<RegistrationTokenRecord[]> {
    const docs = await this.tokens
      .find({ kind: { $eq: kind } })
      .sort({ created_at: -1, _id: -1 })
      .skip(page.offset ?? 0)
      .limit(page.limit)
      .lean<RegistrationTokenDocument[]>();
    return docs.map(toToken);
  }

  async count(kind: RegistrationTokenKind): Promise<number> {
    return await this.tokens.countDocuments({ kind: { $eq: kind } });
  }

  async recordUse(id: string, at: Date): Promise<void> {
    await this.tokens.updateOne(byId(id), { $inc: { use_count: 1 }, $set: { last_used_at: at } });
  }

  async remove(id: string): Promise<boolean> {
    const { deletedCount } = await this.tokens.deleteOne(byId(id));
    return deletedCount > 0;
  }

  async removeForClient(clientId: string): Promise<number> {
    const { deletedCount } = await this.tokens.deleteMany({ client_id: { $eq: clientId } });
    return deletedCount;
  }
}
