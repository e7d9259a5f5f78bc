/**
 * Single sign-on connections, their domains and users' upstream identities in the mongo store.
 * No transactions are assumed (FerretDB 1.x): a domain is claimed by inserting its document (the
 * domain is the `_id`), an identity by inserting its (connection, subject) `_id`, so of two racing
 * claims exactly one wins; a failed claim takes back what this call inserted before throwing.
 */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewSsoConnection,
  SsoConnection,
  SsoConnectionPatch,
  SsoConnectionRepository,
  SsoIdentity,
} from '../ports.js';
import { duplicateKey } from './duplicate-key.js';
import type { SsoConnectionDocument, SsoDomainDocument, SsoIdentityDocument } from './models.js';

const byId = (id: string) => ({ _id: { $eq: id } });
const identityId = (connectionId: string, subject: string) => JSON.stringify([connectionId, subject]);

function toConnection(doc: SsoConnectionDocument, domains: string[]): SsoConnection {
  return {
    id: doc._id,
    provider: doc.provider,
    domains,
    issuer: doc.issuer ?? null,
    client_id: doc.client_id ?? null,
    client_secret_encrypted: doc.client_secret_encrypted ?? null,
    scopes: doc.scopes ?? [],
    metadata_url: doc.metadata_url ?? null,
    metadata_xml: doc.metadata_xml ?? null,
    auto_provision: doc.auto_provision === true,
    default_role: doc.default_role ?? null,
    attribute_mapping: JSON.parse(doc.attribute_mapping ?? '{}'),
    enabled: doc.enabled !== false,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

function toIdentity(doc: SsoIdentityDocument): SsoIdentity {
  return {
    connection_id: doc.connection_id,
    subject: doc.subject,
    user_id: doc.user_id,
    created_at: doc.created_at,
  };
}

export class MongoSsoConnectionRepository implements SsoConnectionRepository {
  constructor(
    private readonly connections: Model<SsoConnectionDocument>,
    private readonly domains: Model<SsoDomainDocument>,
    private readonly identities: Model<SsoIdentityDocument>,
  ) {}

  private async domainsOf(id: string): Promise<string[]> {
    const docs = await this.domains.find({ connection_id: { $eq: id } }).lean<SsoDomainDocument[]>();
    return docs.map((d) => d._id).sort();
  }

  /** Inserts the domains not yet owned by the connection; on a conflict takes back its own inserts. */
  private async claimDomains(id: string, wanted: readonly string[]): Promise<void> {
    const owned = new Set(await this.domainsOf(id));
    const inserted: string[] = [];
    for (const domain of new Set(wanted)) {
      if (owned.has(domain)) continue;
      try {
        await this.domains.create({ _id: domain, connection_id: id });
        inserted.push(domain);
      } catch (err) {
        if (!duplicateKey(err)) throw err;
        if (inserted.length > 0) await this.domains.deleteMany({ _id: { $in: inserted } });
        throw new StoreConflictError('domain');
      }
    }
  }

  async create(input: NewSsoConnection): Promise<SsoConnection> {
    const id = input.id ?? newId('sso');
    const now = new Date();
    try {
      await this.connections.create({
        _id: id,
        provider: input.provider,
        issuer: input.issuer ?? null,
        client_id: input.client_id ?? null,
        client_secret_encrypted: input.client_secret_encrypted ?? null,
        scopes: input.scopes ?? [],
        metadata_url: input.metadata_url ?? null,
        metadata_xml: input.metadata_xml ?? null,
        auto_provision: input.auto_provision === true,
        default_role: input.default_role ?? null,
        attribute_mapping: JSON.stringify(input.attribute_mapping ?? {}),
        enabled: input.enabled !== false,
        created_at: now,
        updated_at: now,
      });
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('id');
      throw err;
    }
    try {
      await this.claimDomains(id, input.domains);
    } catch (err) {
      await this.connections.deleteOne(byId(id));
      throw err;
    }
    return (await this.findById(id))!;
  }

  async findById(id: string): Promise<SsoConnection | null> {
    const doc = await this.connections.findOne(byId(id)).lean<SsoConnectionDocument>();
    return doc ? toConnection(doc, await this.domainsOf(id)) : null;
  }

  async findByDomain(domain: string): Promise<SsoConnection | null> {
    const doc = await this.domains.findOne(byId(domain)).lean<SsoDomainDocument>();
    return doc ? this.findById(doc.connection_id) : null;
  }

  async list(): Promise<SsoConnection[]> {
    const docs = await this.connections
      .find({})
      .sort({ created_at: 1, _id: 1 })
      .lean<SsoConnectionDocument[]>();
    return Promise.all(docs.map(async (doc) => toConnection(doc, await this.domainsOf(doc._id))));
  }

  async update(id: string, patch: SsoConnectionPatch): Promise<SsoConnection | null> {
    if (!(await this.connections.exists(byId(id)))) return null;
    if (patch.domains) await this.claimDomains(id, patch.domains);
    const { domains, attribute_mapping, ...fields } = patch;
    const set = {
      ...fields,
      ...(attribute_mapping ? { attribute_mapping: JSON.stringify(attribute_mapping) } : {}),
      updated_at: new Date(),
    };
    const updated = await this.connections
      .findOneAndUpdate(byId(id), { $set: set }, { new: true })
      .lean<SsoConnectionDocument>();
    if (!updated) return null;
    if (domains) {
      await this.domains.deleteMany({ connection_id: { $eq: id }, _id: { $nin: [...new Set(domains)] } });
    }
    return toConnection(updated, await this.domainsOf(id));
  }

  async remove(id: string): Promise<boolean> {
    const removed = await this.connections.deleteOne(byId(id));
    await this.domains.deleteMany({ connection_id: { $eq: id } });
    await this.identities.deleteMany({ connection_id: { $eq: id } });
    return removed.deletedCount > 0;
  }

  async linkIdentity(identity: Omit<SsoIdentity, 'created_at'>): Promise<SsoIdentity> {
    try {
      const created = await this.identities.create({
        _id: identityId(identity.connection_id, identity.subject),
        connection_id: identity.connection_id,
        subject: identity.subject,
        user_id: identity.user_id,
        created_at: new Date(),
      });
      return toIdentity(created.toObject());
    } catch (err) {
      if (duplicateKey(err)) throw new StoreConflictError('identity');
      throw err;
    }
  }

  async findIdentity(connectionId: string, subject: string): Promise<SsoIdentity | null> {
    const doc = await this.identities
      .findOne(byId(identityId(connectionId, subject)))
      .lean<SsoIdentityDocument>();
    return doc ? toIdentity(doc) : null;
  }

  async listIdentities(userId: string): Promise<SsoIdentity[]> {
    return (await this.listIdentitiesOf([userId])).get(userId) ?? [];
  }

  async listIdentitiesOf(userIds: readonly string[]): Promise<Map<string, SsoIdentity[]>> {
    const out = new Map<string, SsoIdentity[]>();
    if (userIds.length === 0) return out;
    const docs = await this.identities
      .find({ user_id: { $in: [...userIds] } })
      .sort({ created_at: 1, _id: 1 })
      .lean<SsoIdentityDocument[]>();
    for (const doc of docs) out.set(doc.user_id, [...(out.get(doc.user_id) ?? []), toIdentity(doc)]);
    return out;
  }

  async removeIdentitiesOfUser(userId: string): Promise<number> {
    return (await this.identities.deleteMany({ user_id: { $eq: userId } })).deletedCount;
  }
}
