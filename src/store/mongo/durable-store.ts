/** The durable store on MongoDB (or a MongoDB-wire database such as FerretDB): repositories and index migration. */
import type { Connection, Model } from 'mongoose';

import { CachedUserRepository } from '../cached-users.js';
import type { DurableStore, EventBus, UserRepository } from '../ports.js';
import { MongoApiKeyRepository } from './api-keys.js';
import { MongoAuditRepository } from './audit.js';
import { MongoClientRepository } from './clients.js';
import { MongoRegistrationTokenRepository } from './registration-tokens.js';
import { pingConnection, type ServerFlavor } from './connection.js';
import { createModels, type MongoModels } from './models.js';
import { MongoMfaRepository } from './mfa.js';
import { MongoSsoConnectionRepository } from './sso.js';
import { MongoOutboxRepository } from './outbox.js';
import { MongoWebhookRepository } from './webhooks.js';
import { MongoPolicyRepository } from './policies.js';
import { MongoPlanRepository } from './plans.js';
import { MongoResourceServerRepository } from './resource-servers.js';
import { MongoRoleRepository } from './roles.js';
import { MongoSigningKeyRepository } from './signing-keys.js';
import { MongoUsageRepository } from './usage.js';
import { MongoUserRepository } from './users.js';

type CreateIndex = Model<never>['collection']['createIndex'];
type IndexKeys = Parameters<CreateIndex>[0];
type IndexOptions = Parameters<CreateIndex>[1];

export class MongoDurableStore implements DurableStore {
  readonly kind = 'mongo' as const;
  /** The repository itself, or the cache in front of it once cacheUsers() is called. */
  users: UserRepository;
  readonly roles: MongoRoleRepository;
  readonly clients: MongoClientRepository;
  readonly registrationTokens: MongoRegistrationTokenRepository;
  readonly signingKeys: MongoSigningKeyRepository;
  readonly resourceServers: MongoResourceServerRepository;
  readonly audit: MongoAuditRepository;
  readonly apiKeys: MongoApiKeyRepository;
  readonly plans: MongoPlanRepository;
  readonly usage: MongoUsageRepository;
  readonly outbox: MongoOutboxRepository;
  readonly webhooks: MongoWebhookRepository;
  readonly policies: MongoPolicyRepository;
  readonly mfa: MongoMfaRepository;
  readonly ssoConnections: MongoSsoConnectionRepository;
  private readonly models: MongoModels;
  /** The repository itself, never the cache (migrate backfills through it). */
  private readonly userRepository: MongoUserRepository;
  private closed = false;

  /** Takes ownership of `conn`: close() closes it. */
  constructor(
    private readonly conn: Connection,
    /** See ServerFlavor: FerretDB 1.x does not apply concurrent updates of one document atomically. */
    readonly flavor: ServerFlavor,
    /** Multi-document transactions (replica set, sharded cluster); see atomically(). */
    readonly transactional = false,
  ) {
    this.models = createModels(conn);
    const { users, roles, roleLinks, clients, signingKeys, resourceServers, audit } = this.models;
    this.users = this.userRepository = new MongoUserRepository(users, roleLinks, this.models.ssoIdentities);
    this.roles = new MongoRoleRepository(roles, roleLinks, users);
    this.clients = new MongoClientRepository(clients);
    this.registrationTokens = new MongoRegistrationTokenRepository(this.models.registrationTokens);
    this.signingKeys = new MongoSigningKeyRepository(signingKeys);
    this.resourceServers = new MongoResourceServerRepository(resourceServers);
    this.audit = new MongoAuditRepository(audit);
    this.apiKeys = new MongoApiKeyRepository(this.models.apiKeys);
    this.plans = new MongoPlanRepository(this.models.plans);
    this.usage = new MongoUsageRepository(this.models.usage);
    this.outbox = new MongoOutboxRepository(
      this.models.outboxEvents,
      this.models.outboxDeliveries,
      this.models.outboxClaims,
    );
    this.webhooks = new MongoWebhookRepository(this.models.webhooks);
    this.policies = new MongoPolicyRepository(
      this.models.policyVersions,
      this.models.policySchemas,
      this.models.policyEntities,
    );
    this.mfa = new MongoMfaRepository(this.models.mfaFactors, this.models.mfaRecoveryCodes);
    this.ssoConnections = new MongoSsoConnectionRepository(
      this.models.ssoConnections,
      this.models.ssoDomains,
      this.models.ssoIdentities,
    );
  }

  /**
   * One transaction where the deployment has them (the model operations inside `work` join its
   * session through AsyncLocalStorage; the driver retries it on transient errors, so `work` may
   * run more than once). Elsewhere the writes of `work` simply run in order.
   */
  async atomically<T>(work: () => Promise<T>): Promise<T> {
    if (!this.transactional) return work();
    return this.conn.transaction(work);
  }

  /**
   * Serves live users by id from memory for up to `ttlMs` (see CachedUserRepository), with changes
   * announced on `events`. Called once the event bus is open; 0 leaves every lookup to the database.
   */
  cacheUsers(events: EventBus, ttlMs: number): void {
    if (ttlMs <= 0 || this.users instanceof CachedUserRepository) return;
    this.users = new CachedUserRepository(this.users, events, { ttlMs });
  }

  /**
   * Creates every schema index (and with them the collections). createIndex is a no-op for an
   * index that exists with the same definition, so this is safe to repeat and to run from several
   * processes at once. One index per command, in order: FerretDB 1.x drops the connection when
   * one createIndexes command names several indexes that all exist already. The collection's
   * createIndex rather than Model.createIndexes(): mongoose reports a failed index as a model
   * 'error' event, which throws when nobody listens. Indexes are never dropped here; removing one
   * is a deliberate migration step. Derived fields added later (email skeletons) are backfilled.
   */
  async migrate(): Promise<void> {
    const models: Model<never>[] = Object.values(this.models);
    for (const model of models) {
      for (const [fields, options] of model.schema.indexes()) {
        // Schema index options are the driver's createIndex options, typed more loosely by mongoose.
        await model.collection.createIndex(fields as IndexKeys, options as IndexOptions);
      }
    }
    await this.userRepository.backfillSkeletons();
    await this.userRepository.backfillMfaFlag();
  }

  async ping(): Promise<void> {
    await pingConnection(this.conn);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.users instanceof CachedUserRepository) this.users.close();
    // destroy() also drops the connection from mongoose's own list of connections.
    await this.conn.destroy();
  }
}
