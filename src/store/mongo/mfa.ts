/**
 * Second factors and recovery codes in the mongo store. FerretDB 1.x applies updates as
 * read-then-write-back (see ServerFlavor), so taking a recovery code is a delete, which is atomic
 * there as on MongoDB: of two uses racing, one deletes the code and the other finds nothing.
 */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { MfaFactor, MfaRepository, NewMfaFactor } from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { MfaFactorDocument, MfaRecoveryCodeDocument } from './models.js';

const PLACEHOLDER = 'factor:';

function toFactor(doc: MfaFactorDocument): MfaFactor {
  return {
    id: doc._id,
    user_id: doc.user_id,
    type: doc.type,
    name: doc.name,
    created_at: doc.created_at,
    last_used_at: doc.last_used_at ?? null,
    secret: doc.secret ?? null,
    credential_id: doc.credential_id.startsWith(PLACEHOLDER) ? null : doc.credential_id,
    public_key: doc.public_key ?? null,
    counter: doc.counter ?? 0,
    transports: doc.transports ?? [],
    device_type: doc.device_type ?? null,
    backed_up: doc.backed_up === true,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });
const codeId = (userId: string, hash: string) => JSON.stringify([userId, hash]);

export class MongoMfaRepository implements MfaRepository {
  constructor(
    private readonly factors: Model<MfaFactorDocument>,
    private readonly codes: Model<MfaRecoveryCodeDocument>,
  ) {}

  async createFactor(input: NewMfaFactor): Promise<MfaFactor> {
    const id = input.id ?? newId('mfa');
    // A passkey's credential id never starts with the placeholder prefix (it is base64url).
    const credential = input.credential_id ?? `${PLACEHOLDER}${id}`;
    try {
      const created = await this.factors.create({
        _id: id,
        user_id: input.user_id,
        type: input.type,
        name: input.name,
        secret: input.secret ?? null,
        credential_id: credential,
        public_key: input.public_key ?? null,
        counter: input.counter ?? 0,
        transports: input.transports ?? [],
        device_type: input.device_type ?? null,
        backed_up: input.backed_up === true,
        created_at: new Date(),
        last_used_at: null,
      });
      return toFactor(created.toObject());
    } catch (err) {
      if (!duplicateKey(err)) throw err;
      const idTaken = input.id !== undefined && (await this.factors.exists(byId(input.id))) !== null;
      throw new StoreConflictError(idTaken ? 'id' : 'credential_id');
    }
  }

  async listFactors(userId: string): Promise<MfaFactor[]> {
    const docs = await this.factors
      .find({ user_id: { $eq: userId } })
      .sort({ created_at: 1, _id: 1 })
      .lean<MfaFactorDocument[]>();
    return docs.map(toFactor);
  }

  async findFactor(id: string): Promise<MfaFactor | null> {
    const doc = await this.factors.findOne(byId(id)).lean<MfaFactorDocument>();
    return doc ? toFactor(doc) : null;
  }

  async findByCredentialId(credentialId: string): Promise<MfaFactor | null> {
    if (credentialId.startsWith(PLACEHOLDER)) return null;
    const doc = await this.factors
      .findOne({ credential_id: { $eq: credentialId } })
      .lean<MfaFactorDocument>();
    return doc ? toFactor(doc) : null;
  }

  async recordUse(id: string, at: Date, counter?: number): Promise<boolean> {
    if (counter === undefined) {
      const { matchedCount } = await this.factors.updateOne(byId(id), { $set: { last_used_at: at } });
      return matchedCount > 0;
    }
    const { matchedCount } = await this.factors.updateOne(
      { ...byId(id), counter: counter === 0 ? { $eq: 0 } : { $lt: counter } },
      { $set: { last_used_at: at, counter } },
    );
    return matchedCount > 0;
  }

  async renameFactor(id: string, name: string): Promise<MfaFactor | null> {
    const doc = await this.factors
      .findOneAndUpdate(byId(id), { $set: { name } }, { returnDocument: 'after' })
      .lean<MfaFactorDocument>();
    return doc ? toFactor(doc) : null;
  }

  async removeFactor(id: string): Promise<boolean> {
    const { deletedCount } = await this.factors.deleteOne(byId(id));
    return deletedCount > 0;
  }

  async removeAllForUser(userId: string): Promise<number> {
    await this.codes.deleteMany({ user_id: { $eq: userId } });
    const { deletedCount } = await this.factors.deleteMany({ user_id: { $eq: userId } });
    return deletedCount;
  }

  async replaceRecoveryCodes(userId: string, hashes: readonly string[], at: Date): Promise<void> {
    await this.codes.deleteMany({ user_id: { $eq: userId } });
    if (hashes.length === 0) return;
    await this.codes.insertMany(
      hashes.map((hash) => ({
        _id: codeId(userId, hash),
        user_id: userId,
        hash,
        created_at: at,
        used_at: null,
      })),
    );
  }

  async useRecoveryCode(userId: string, hash: string): Promise<boolean> {
    const { deletedCount } = await this.codes.deleteOne(byId(codeId(userId, hash)));
    return deletedCount > 0;
  }

  async countRecoveryCodes(userId: string): Promise<number> {
    return this.codes.countDocuments({ user_id: { $eq: userId } });
  }
}
