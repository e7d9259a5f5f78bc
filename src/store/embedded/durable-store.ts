/** The durable store on the embedded SQLite file. */
import type { DurableStore } from '../ports.js';
import { EmbeddedApiKeyRepository } from './api-keys.js';
import { EmbeddedAuditRepository } from './audit.js';
import type { EmbeddedDatabase } from './database.js';
import { EmbeddedClientRepository } from './clients.js';
import { EmbeddedRegistrationTokenRepository } from './registration-tokens.js';
import { EmbeddedMfaRepository } from './mfa.js';
import { EmbeddedSsoConnectionRepository } from './sso.js';
import { EmbeddedOutboxRepository } from './outbox.js';
import { EmbeddedWebhookRepository } from './webhooks.js';
import { EmbeddedPolicyRepository } from './policies.js';
import { EmbeddedPlanRepository } from './plans.js';
import { EmbeddedResourceServerRepository } from './resource-servers.js';
import { EmbeddedRoleRepository } from './roles.js';
import { EmbeddedSigningKeyRepository } from './signing-keys.js';
import { EmbeddedUsageRepository } from './usage.js';
import { EmbeddedUserRepository } from './users.js';

export class EmbeddedDurableStore implements DurableStore {
  readonly kind = 'embedded' as const;
  readonly users: EmbeddedUserRepository;
  readonly roles: EmbeddedRoleRepository;
  readonly clients: EmbeddedClientRepository;
  readonly registrationTokens: EmbeddedRegistrationTokenRepository;
  readonly signingKeys: EmbeddedSigningKeyRepository;
  readonly resourceServers: EmbeddedResourceServerRepository;
  readonly audit: EmbeddedAuditRepository;
  readonly apiKeys: EmbeddedApiKeyRepository;
  readonly plans: EmbeddedPlanRepository;
  readonly usage: EmbeddedUsageRepository;
  readonly outbox: EmbeddedOutboxRepository;
  readonly webhooks: EmbeddedWebhookRepository;
  readonly policies: EmbeddedPolicyRepository;
  readonly mfa: EmbeddedMfaRepository;
  readonly ssoConnections: EmbeddedSsoConnectionRepository;
  private closed = false;
  private readonly optimizer: NodeJS.Timeout;

  constructor(private readonly db: EmbeddedDatabase) {
    db.retain();
    // Keep the planner's statistics current as the data grows (see EmbeddedDatabase.optimize).
    this.optimizer = setInterval(() => db.optimize(), 600_000);
    this.optimizer.unref();
    this.users = new EmbeddedUserRepository(db);
    this.roles = new EmbeddedRoleRepository(db);
    this.clients = new EmbeddedClientRepository(db);
    this.registrationTokens = new EmbeddedRegistrationTokenRepository(db);
    this.signingKeys = new EmbeddedSigningKeyRepository(db);
    this.resourceServers = new EmbeddedResourceServerRepository(db);
    this.audit = new EmbeddedAuditRepository(db);
    this.apiKeys = new EmbeddedApiKeyRepository(db);
    this.plans = new EmbeddedPlanRepository(db);
    this.usage = new EmbeddedUsageRepository(db);
    this.outbox = new EmbeddedOutboxRepository(db);
    this.webhooks = new EmbeddedWebhookRepository(db);
    this.policies = new EmbeddedPolicyRepository(db);
    this.mfa = new EmbeddedMfaRepository(db);
    this.ssoConnections = new EmbeddedSsoConnectionRepository(db);
  }

  readonly transactional = true;

  atomically<T>(work: () => Promise<T>): Promise<T> {
    return this.db.unitOfWork(work);
  }

  /** The schema is migrated when the file is opened; nothing is left to do. */
  async migrate(): Promise<void> {}

  async ping(): Promise<void> {
    this.db.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.optimizer);
    await this.db.release();
  }
}
