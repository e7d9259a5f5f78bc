/**
 * The stored shape of every durable collection: mongoose schemas, their indexes, and the models bound
 * to one connection. Schemas are built per connection so nothing here outlives a store. Documents
 * use string `_id`s (never ObjectId) and never leave the adapter: repositories map them to port types.
 */
import mongoose, { type Connection, type Model, type SchemaOptions } from 'mongoose';

import type {
  WebhookRecord,
  ApiKeyOwnerType,
  DeliveryStatus,
  JsonObject,
  QuotaPeriod,
  RegistrationTokenKind,
  SigningKeyStatus,
  SsoProvider,
  UserStatus,
} from '../ports.js';

export interface UserDocument {
  _id: string;
  email: string;
  email_normalized: string;
  first_name: string;
  last_name: string;
  role: string;
  status: UserStatus;
  email_verified: boolean;
  /** Absent on users stored before second factors existed: migrate backfills false. */
  mfa_enabled?: boolean;
  password_hash: string | null;
  password_reset_required: boolean;
  metadata: JsonObject;
  preferences: JsonObject;
  login_count: number;
  last_login: Date | null;
  /** Absent on users stored before plans existed: read as null. */
  plan?: string | null;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  /** Lower-cased words of names and email (searchTerms), matched by prefix. */
  search_terms: string[];
  /** UTS #39 skeleton of email_normalized (email-skeleton.ts); absent until migrate backfills it. */
  email_skeleton?: string;
}

export interface RoleDocument {
  _id: string;
  name: string;
  display_name: string;
  description: string | null;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

export interface RoleLinkDocument {
  /** roleLinkId(user_id, role_id): the pair itself, so a link exists at most once even before migrate. */
  _id: string;
  user_id: string;
  role_id: string;
  created_at: Date;
}

export interface ClientDocument {
  /** The client_id. */
  _id: string;
  client_secret_hash: string | null;
  metadata: JsonObject;
  first_party: boolean;
  created_at: Date;
  updated_at: Date;
}

export interface RegistrationTokenDocument {
  _id: string;
  kind: RegistrationTokenKind;
  token_hash: string;
  client_id: string | null;
  description: string | null;
  created_by: string | null;
  created_at: Date;
  expires_at: Date | null;
  last_used_at: Date | null;
  use_count: number;
}

export interface SigningKeyDocument {
  /** The kid. */
  _id: string;
  alg: string;
  use: 'sig';
  status: SigningKeyStatus;
  public_jwk: JsonObject;
  private_jwk_encrypted: string;
  created_at: Date;
  activates_at: Date;
  retired_at: Date | null;
  expires_at: Date | null;
}

export interface ResourceServerDocument {
  _id: string;
  identifier: string;
  name: string;
  scopes: string[];
  access_token_format: 'jwt' | 'opaque';
  access_token_ttl: number;
  created_at: Date;
  updated_at: Date;
}

export interface AuditDocument {
  /** The entry's id (`aud_...`). */
  _id: string;
  timestamp: Date;
  actor_type: 'client' | 'user' | 'system';
  actor_id: string;
  actor_client_id: string | null;
  action: string;
  target_type: string;
  target_id: string | null;
  request_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
  /**
   * JSON text, not a nested document: audit objects are free-form and must come back exactly,
   * while FerretDB 1.x refuses keys with a dot or a leading `$` (a changed `metadata.plan`, say).
   */
  changes: string | null;
  details: string | null;
}

export interface ApiKeyDocument {
  _id: string;
  owner_type: ApiKeyOwnerType;
  owner_id: string;
  name: string;
  environment: 'live' | 'test';
  lookup_id: string;
  secret_hash: string;
  scopes: string[];
  allowed_ips: string[];
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface PlanDocument {
  /** The plan's name. */
  _id: string;
  requests_per_hour: number;
  burst: number;
  quota: number;
  quota_period: QuotaPeriod;
  credits: number;
  created_at: Date;
  updated_at: Date;
}

export interface UsageDocument {
  _id: string;
  owner_type: ApiKeyOwnerType;
  owner_id: string;
  key_id: string | null;
  model: string;
  message_count: number;
  characters: number;
  research_model: boolean;
  /** JSON text (message bodies are free-form), only when the deployment keeps them. */
  messages: string | null;
  idempotency_key: string | null;
  day: string;
  created_at: Date;
}

export interface OutboxEventDocument {
  _id: string;
  type: string;
  timestamp: Date;
  actor_type: 'client' | 'user' | 'system';
  actor_id: string;
  /** JSON text: event data is free-form (user metadata keys may hold dots or `$`). */
  data: string;
}

export interface OutboxDeliveryDocument {
  /** deliveryId(event_id, endpoint_id). */
  _id: string;
  event_id: string;
  endpoint_id: string;
  status: DeliveryStatus;
  /** Attempts started; also the claim generation that outbox_claims fences (see outbox.ts). */
  attempts: number;
  next_attempt_at: Date | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  last_status: number | null;
  last_error: string | null;
  latency_ms: number | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

/** One claim of one delivery: `<delivery id>#<attempt>`, inserted once, so one claimer wins it. */
export interface OutboxClaimDocument {
  _id: string;
  delivery_id: string;
  owner: string;
  created_at: Date;
}

/** A webhook endpoint as stored: the record, its id as `_id`. */
export type WebhookDocument = Omit<WebhookRecord, 'id'> & { _id: string };

/** One version of one policy; `_id` is roleLinkId-style JSON of [policy id, version]. */
export interface PolicyVersionDocument {
  _id: string;
  policy_id: string;
  version: number;
  description: string | null;
  policy: string;
  enabled: boolean;
  deleted: boolean;
  created_at: Date;
}

/** One version of the policy schema; `_id` is the version number. */
export interface PolicySchemaDocument {
  _id: number;
  schema: string | null;
  created_at: Date;
}

/**
 * A registered policy entity; `_id` is JSON of [type, id]. Attributes and parents are kept as JSON
 * text: Cedar attribute names may hold `$` and `.`, which stored field names may not.
 */
export interface PolicyEntityDocument {
  _id: string;
  type: string;
  id: string;
  attrs: string;
  parents: string;
  created_at: Date;
  updated_at: Date;
}

export interface MongoModels {
  users: Model<UserDocument>;
  roles: Model<RoleDocument>;
  roleLinks: Model<RoleLinkDocument>;
  clients: Model<ClientDocument>;
  registrationTokens: Model<RegistrationTokenDocument>;
  signingKeys: Model<SigningKeyDocument>;
  resourceServers: Model<ResourceServerDocument>;
  audit: Model<AuditDocument>;
  apiKeys: Model<ApiKeyDocument>;
  plans: Model<PlanDocument>;
  usage: Model<UsageDocument>;
  outboxEvents: Model<OutboxEventDocument>;
  outboxDeliveries: Model<OutboxDeliveryDocument>;
  outboxClaims: Model<OutboxClaimDocument>;
  webhooks: Model<WebhookDocument>;
  policyVersions: Model<PolicyVersionDocument>;
  policySchemas: Model<PolicySchemaDocument>;
  policyEntities: Model<PolicyEntityDocument>;
  mfaFactors: Model<MfaFactorDocument>;
  mfaRecoveryCodes: Model<MfaRecoveryCodeDocument>;
  ssoConnections: Model<SsoConnectionDocument>;
  ssoDomains: Model<SsoDomainDocument>;
  ssoIdentities: Model<SsoIdentityDocument>;
}

export interface SsoConnectionDocument {
  _id: string;
  provider: SsoProvider;
  issuer: string | null;
  client_id: string | null;
  client_secret_encrypted: string | null;
  scopes: string[];
  metadata_url: string | null;
  metadata_xml: string | null;
  auto_provision: boolean;
  default_role: string | null;
  /** JSON of the mapping: its keys (metadata.*) contain dots, which FerretDB refuses as field names. */
  attribute_mapping: string;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

/** One e-mail domain of a connection: `_id` is the domain, so a domain has one connection. */
export interface SsoDomainDocument {
  _id: string;
  connection_id: string;
}

/** A user's upstream identity: `_id` is JSON of [connection_id, subject], unique. */
export interface SsoIdentityDocument {
  _id: string;
  connection_id: string;
  subject: string;
  user_id: string;
  created_at: Date;
}

export interface MfaFactorDocument {
  _id: string;
  user_id: string;
  type: 'totp' | 'webauthn';
  name: string;
  secret: string | null;
  /**
   * The passkey's credential id; for other factors `factor:<_id>`, so that the unique index holds
   * without partial or sparse indexes (which FerretDB 1.x does not have).
   */
  credential_id: string;
  public_key: string | null;
  counter: number;
  transports: string[];
  device_type: 'singleDevice' | 'multiDevice' | null;
  backed_up: boolean;
  created_at: Date;
  last_used_at: Date | null;
}

export interface MfaRecoveryCodeDocument {
  /** JSON of [user_id, hash]: unique per user and code. */
  _id: string;
  user_id: string;
  hash: string;
  created_at: Date;
  used_at: Date | null;
}

/** Names of the unique indexes, which duplicate-key errors are matched against. */
export const UNIQUE_INDEX = {
  userEmail: 'users_email_normalized_unique',
  roleName: 'roles_name_unique',
  roleLink: 'user_roles_pair_unique',
  resourceIdentifier: 'resource_servers_identifier_unique',
  registrationTokenHash: 'registration_tokens_hash_unique',
  apiKeyLookup: 'api_keys_lookup_id_unique',
  mfaCredential: 'mfa_factors_credential_id_unique',
} as const;

const { Schema } = mongoose;

/**
 * `strict`/`strictQuery: 'throw'` turn a stray path into an error instead of silently dropping it
 * (a dropped filter condition widens a query). `minimize: false` keeps empty metadata objects.
 * Indexes and collections are created only by migrate(), never at start-up or request time.
 */
const OPTIONS = {
  versionKey: false,
  minimize: false,
  strict: 'throw',
  strictQuery: 'throw',
  autoIndex: false,
  autoCreate: false,
  bufferCommands: false,
  id: false,
  timestamps: false,
} satisfies SchemaOptions;

const nullable = <T>(type: T) => ({ type, default: null });

function userSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      email: String,
      email_normalized: String,
      first_name: String,
      last_name: String,
      role: String,
      status: String,
      email_verified: Boolean,
      mfa_enabled: { type: Boolean, default: false },
      password_hash: nullable(String),
      password_reset_required: Boolean,
      metadata: { type: Schema.Types.Mixed, default: {} },
      preferences: { type: Schema.Types.Mixed, default: {} },
      login_count: { type: Number, default: 0 },
      last_login: nullable(Date),
      plan: nullable(String),
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
      deleted_at: nullable(Date),
      search_terms: { type: [String], default: [] },
      email_skeleton: String,
    },
    { ...OPTIONS, collection: 'users' },
  );
  // Soft-deleted users keep their row, so their email stays reserved by this index.
  schema.index({ email_normalized: 1 }, { unique: true, name: UNIQUE_INDEX.userEmail });
  schema.index({ search_terms: 1 }, { name: 'users_search_terms' });
  schema.index({ email_skeleton: 1 }, { name: 'users_email_skeleton' });
  schema.index({ created_at: 1, _id: 1 }, { name: 'users_created_at' });
  schema.index({ status: 1, created_at: 1 }, { name: 'users_status' });
  schema.index({ role: 1, created_at: 1 }, { name: 'users_role' });
  schema.index({ last_name: 1, _id: 1 }, { name: 'users_last_name' });
  return schema;
}

function roleSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      name: String,
      display_name: String,
      description: nullable(String),
      permissions: { type: [String], default: [] },
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'roles' },
  );
  schema.index({ name: 1 }, { unique: true, name: UNIQUE_INDEX.roleName });
  return schema;
}

function roleLinkSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      user_id: { type: String, required: true },
      role_id: { type: String, required: true },
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'user_roles' },
  );
  schema.index({ user_id: 1, role_id: 1 }, { unique: true, name: UNIQUE_INDEX.roleLink });
  schema.index({ role_id: 1 }, { name: 'user_roles_role' });
  return schema;
}

function clientSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      client_secret_hash: nullable(String),
      metadata: { type: Schema.Types.Mixed, default: {} },
      first_party: { type: Boolean, default: false },
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'clients' },
  );
  schema.index({ created_at: 1, _id: 1 }, { name: 'clients_created_at' });
  return schema;
}

function registrationTokenSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      kind: { type: String, required: true },
      token_hash: { type: String, required: true },
      client_id: nullable(String),
      description: nullable(String),
      created_by: nullable(String),
      created_at: { type: Date, required: true },
      expires_at: nullable(Date),
      last_used_at: nullable(Date),
      use_count: { type: Number, default: 0 },
    },
    { ...OPTIONS, collection: 'registration_tokens' },
  );
  schema.index({ token_hash: 1 }, { unique: true, name: UNIQUE_INDEX.registrationTokenHash });
  schema.index({ kind: 1, created_at: -1, _id: -1 }, { name: 'registration_tokens_kind' });
  schema.index({ client_id: 1 }, { name: 'registration_tokens_client' });
  return schema;
}

function signingKeySchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      alg: String,
      use: String,
      status: String,
      public_jwk: { type: Schema.Types.Mixed, required: true },
      private_jwk_encrypted: String,
      created_at: { type: Date, required: true },
      activates_at: { type: Date, required: true },
      retired_at: nullable(Date),
      expires_at: nullable(Date),
    },
    { ...OPTIONS, collection: 'signing_keys' },
  );
  schema.index({ created_at: 1, _id: 1 }, { name: 'signing_keys_created_at' });
  return schema;
}

function resourceServerSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      identifier: { type: String, required: true },
      name: String,
      scopes: { type: [String], default: [] },
      access_token_format: String,
      access_token_ttl: Number,
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'resource_servers' },
  );
  schema.index({ identifier: 1 }, { unique: true, name: UNIQUE_INDEX.resourceIdentifier });
  return schema;
}

/** Append-only: entries are inserted and read, never updated; the indexes mirror the embedded table's. */
function auditSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      timestamp: { type: Date, required: true },
      actor_type: { type: String, required: true },
      actor_id: { type: String, required: true },
      actor_client_id: nullable(String),
      action: { type: String, required: true },
      target_type: { type: String, required: true },
      target_id: nullable(String),
      request_id: nullable(String),
      ip_address: nullable(String),
      user_agent: nullable(String),
      changes: nullable(String),
      details: nullable(String),
    },
    { ...OPTIONS, collection: 'audit_log' },
  );
  schema.index({ timestamp: 1, _id: 1 }, { name: 'audit_log_timestamp' });
  schema.index({ target_type: 1, target_id: 1, timestamp: 1 }, { name: 'audit_log_target' });
  schema.index({ actor_id: 1, timestamp: 1 }, { name: 'audit_log_actor' });
  schema.index({ action: 1, timestamp: 1 }, { name: 'audit_log_action' });
  return schema;
}

function apiKeySchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      owner_type: { type: String, required: true },
      owner_id: { type: String, required: true },
      name: String,
      environment: String,
      lookup_id: { type: String, required: true },
      secret_hash: { type: String, required: true },
      scopes: { type: [String], default: [] },
      allowed_ips: { type: [String], default: [] },
      expires_at: nullable(Date),
      last_used_at: nullable(Date),
      revoked_at: nullable(Date),
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'api_keys' },
  );
  schema.index({ lookup_id: 1 }, { unique: true, name: UNIQUE_INDEX.apiKeyLookup });
  schema.index({ owner_type: 1, owner_id: 1, created_at: 1 }, { name: 'api_keys_owner' });
  return schema;
}

function planSchema() {
  return new Schema(
    {
      _id: { type: String, required: true },
      requests_per_hour: Number,
      burst: Number,
      quota: Number,
      quota_period: String,
      credits: Number,
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'plans' },
  );
}

function usageSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      owner_type: { type: String, required: true },
      owner_id: { type: String, required: true },
      key_id: nullable(String),
      model: String,
      message_count: Number,
      characters: Number,
      research_model: Boolean,
      messages: nullable(String),
      idempotency_key: nullable(String),
      day: String,
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'usage_entries' },
  );
  schema.index({ owner_type: 1, owner_id: 1, created_at: 1 }, { name: 'usage_entries_owner' });
  return schema;
}

function outboxEventSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      type: { type: String, required: true },
      timestamp: { type: Date, required: true },
      actor_type: { type: String, required: true },
      actor_id: { type: String, required: true },
      data: { type: String, required: true },
    },
    { ...OPTIONS, collection: 'outbox_events' },
  );
  schema.index({ timestamp: 1, _id: 1 }, { name: 'outbox_events_timestamp' });
  schema.index({ type: 1, timestamp: 1, _id: 1 }, { name: 'outbox_events_type' });
  return schema;
}

function outboxDeliverySchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      event_id: { type: String, required: true },
      endpoint_id: { type: String, required: true },
      status: { type: String, required: true },
      attempts: { type: Number, default: 0 },
      next_attempt_at: nullable(Date),
      lease_owner: nullable(String),
      lease_expires_at: nullable(Date),
      last_status: nullable(Number),
      last_error: nullable(String),
      latency_ms: nullable(Number),
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
      finished_at: nullable(Date),
    },
    { ...OPTIONS, collection: 'outbox_deliveries' },
  );
  // Due-claiming: status then due time (final statuses have no due time).
  schema.index({ status: 1, next_attempt_at: 1 }, { name: 'outbox_deliveries_due' });
  schema.index({ endpoint_id: 1, created_at: -1, _id: -1 }, { name: 'outbox_deliveries_endpoint' });
  schema.index({ event_id: 1 }, { name: 'outbox_deliveries_event' });
  schema.index({ created_at: -1, _id: -1 }, { name: 'outbox_deliveries_created' });
  schema.index({ finished_at: 1 }, { name: 'outbox_deliveries_finished' });
  return schema;
}

function outboxClaimSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      delivery_id: { type: String, required: true },
      owner: { type: String, required: true },
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'outbox_claims' },
  );
  schema.index({ delivery_id: 1 }, { name: 'outbox_claims_delivery' });
  return schema;
}

function webhookSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      url: { type: String, required: true },
      events: { type: [String], default: [] },
      description: nullable(String),
      active: { type: Boolean, default: true },
      secret: { type: String, required: true },
      previous_secret: nullable(String),
      previous_secret_expires_at: nullable(Date),
      disabled_reason: nullable(String),
      failing_since: nullable(Date),
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'webhooks' },
  );
  schema.index({ created_at: 1, _id: 1 }, { name: 'webhooks_created_at' });
  return schema;
}

function policyVersionSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      policy_id: { type: String, required: true },
      version: { type: Number, required: true },
      description: nullable(String),
      policy: { type: String, required: true },
      enabled: { type: Boolean, required: true },
      deleted: { type: Boolean, default: false },
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'policy_versions' },
  );
  schema.index({ policy_id: 1, version: 1 }, { name: 'policy_versions_policy' });
  schema.index({ created_at: 1 }, { name: 'policy_versions_created_at' });
  return schema;
}

function policySchemaSchema() {
  const schema = new Schema(
    {
      _id: { type: Number, required: true },
      schema: nullable(String),
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'policy_schemas' },
  );
  schema.index({ created_at: 1 }, { name: 'policy_schemas_created_at' });
  return schema;
}

function policyEntitySchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      type: { type: String, required: true },
      id: { type: String, required: true },
      attrs: { type: String, default: '{}' },
      parents: { type: String, default: '[]' },
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'policy_entities' },
  );
  schema.index({ type: 1, id: 1 }, { name: 'policy_entities_type_id' });
  return schema;
}

function mfaFactorSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      user_id: { type: String, required: true },
      type: { type: String, required: true },
      name: String,
      secret: nullable(String),
      credential_id: { type: String, required: true },
      public_key: nullable(String),
      counter: { type: Number, default: 0 },
      transports: { type: [String], default: [] },
      device_type: nullable(String),
      backed_up: { type: Boolean, default: false },
      created_at: { type: Date, required: true },
      last_used_at: nullable(Date),
    },
    { ...OPTIONS, collection: 'mfa_factors' },
  );
  schema.index({ credential_id: 1 }, { unique: true, name: UNIQUE_INDEX.mfaCredential });
  schema.index({ user_id: 1, created_at: 1 }, { name: 'mfa_factors_user' });
  return schema;
}

function mfaRecoveryCodeSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      user_id: { type: String, required: true },
      hash: { type: String, required: true },
      created_at: { type: Date, required: true },
      used_at: nullable(Date),
    },
    { ...OPTIONS, collection: 'mfa_recovery_codes' },
  );
  schema.index({ user_id: 1 }, { name: 'mfa_recovery_codes_user' });
  return schema;
}

function ssoConnectionSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      provider: { type: String, required: true },
      issuer: nullable(String),
      client_id: nullable(String),
      client_secret_encrypted: nullable(String),
      scopes: { type: [String], default: [] },
      metadata_url: nullable(String),
      metadata_xml: nullable(String),
      auto_provision: { type: Boolean, default: false },
      default_role: nullable(String),
      attribute_mapping: { type: String, default: '{}' },
      enabled: { type: Boolean, default: true },
      created_at: { type: Date, required: true },
      updated_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'sso_connections' },
  );
  schema.index({ created_at: 1, _id: 1 }, { name: 'sso_connections_created' });
  return schema;
}

function ssoDomainSchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      connection_id: { type: String, required: true },
    },
    { ...OPTIONS, collection: 'sso_domains' },
  );
  schema.index({ connection_id: 1 }, { name: 'sso_domains_connection' });
  return schema;
}

function ssoIdentitySchema() {
  const schema = new Schema(
    {
      _id: { type: String, required: true },
      connection_id: { type: String, required: true },
      subject: { type: String, required: true },
      user_id: { type: String, required: true },
      created_at: { type: Date, required: true },
    },
    { ...OPTIONS, collection: 'sso_identities' },
  );
  schema.index({ user_id: 1, created_at: 1 }, { name: 'sso_identities_user' });
  schema.index({ connection_id: 1 }, { name: 'sso_identities_connection' });
  return schema;
}

/** Binds fresh models to `conn` (models live in the connection's registry, not mongoose's global one). */
export function createModels(conn: Connection): MongoModels {
  return {
    users: conn.model<UserDocument>('User', userSchema()),
    roles: conn.model<RoleDocument>('Role', roleSchema()),
    roleLinks: conn.model<RoleLinkDocument>('RoleLink', roleLinkSchema()),
    clients: conn.model<ClientDocument>('Client', clientSchema()),
    registrationTokens: conn.model<RegistrationTokenDocument>('RegistrationToken', registrationTokenSchema()),
    signingKeys: conn.model<SigningKeyDocument>('SigningKey', signingKeySchema()),
    resourceServers: conn.model<ResourceServerDocument>('ResourceServer', resourceServerSchema()),
    audit: conn.model<AuditDocument>('AuditEntry', auditSchema()),
    apiKeys: conn.model<ApiKeyDocument>('ApiKey', apiKeySchema()),
    plans: conn.model<PlanDocument>('Plan', planSchema()),
    usage: conn.model<UsageDocument>('UsageEntry', usageSchema()),
    outboxEvents: conn.model<OutboxEventDocument>('OutboxEvent', outboxEventSchema()),
    outboxDeliveries: conn.model<OutboxDeliveryDocument>('OutboxDelivery', outboxDeliverySchema()),
    outboxClaims: conn.model<OutboxClaimDocument>('OutboxClaim', outboxClaimSchema()),
    webhooks: conn.model<WebhookDocument>('Webhook', webhookSchema()),
    policyVersions: conn.model<PolicyVersionDocument>('PolicyVersion', policyVersionSchema()),
    policySchemas: conn.model<PolicySchemaDocument>('PolicySchema', policySchemaSchema()),
    policyEntities: conn.model<PolicyEntityDocument>('PolicyEntity', policyEntitySchema()),
    mfaFactors: conn.model<MfaFactorDocument>('MfaFactor', mfaFactorSchema()),
    mfaRecoveryCodes: conn.model<MfaRecoveryCodeDocument>('MfaRecoveryCode', mfaRecoveryCodeSchema()),
    ssoConnections: conn.model<SsoConnectionDocument>('SsoConnection', ssoConnectionSchema()),
    ssoDomains: conn.model<SsoDomainDocument>('SsoDomain', ssoDomainSchema()),
    ssoIdentities: conn.model<SsoIdentityDocument>('SsoIdentity', ssoIdentitySchema()),
  };
}

/** The id of the link between a user and a role: unambiguous whatever characters the ids hold. */
export function roleLinkId(userId: string, roleId: string): string {
  return JSON.stringify([userId, roleId]);
}
