/**
 * The storage ports: what services may ask of storage, with no driver types. Two kinds of data:
 *  - durable data (users, roles, clients, signing keys, and later API keys, plans, usage, audit,
 *    webhooks, the event outbox): one repository per entity on DurableStore, implemented by embedded and mongo;
 *  - short-lived data: oidc-provider artifacts (ArtifactStore) and windowed atomic counters
 *    (CounterStore), implemented by embedded and redis.
 * Every adapter runs the same contract suites in test/contract.
 */
import type { Expr, SortKey } from './query.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/* ------------------------------------------------------------------------------------------------ */
/* Durable entities                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

export const USER_STATUSES = ['active', 'suspended', 'inactive'] as const;
export type UserStatus = (typeof USER_STATUSES)[number];

export interface User {
  id: string;
  /** As entered (trimmed). Uniqueness and lookups use the normalized form, see normalizeEmail. */
  email: string;
  first_name: string;
  last_name: string;
  /** Name of the user's primary role. */
  role: string;
  status: UserStatus;
  email_verified: boolean;
  /** Whether the user has a second factor (an authenticator app or a passkey); kept by MfaService. */
  mfa_enabled: boolean;
  password_hash: string | null;
  password_reset_required: boolean;
  metadata: JsonObject;
  preferences: JsonObject;
  login_count: number;
  last_login: Date | null;
  /** The plan the user is on (rate limits, quota, credits); null means the default plan. */
  plan: string | null;
  created_at: Date;
  updated_at: Date;
  /** Set when soft-deleted: hidden from lists, email still reserved, restorable. */
  deleted_at: Date | null;
}

export interface NewUser {
  id?: string;
  email: string;
  first_name: string;
  last_name: string;
  role?: string;
  status?: UserStatus;
  email_verified?: boolean;
  password_hash?: string | null;
  password_reset_required?: boolean;
  metadata?: JsonObject;
  preferences?: JsonObject;
  plan?: string | null;
  created_at?: Date;
}

export type UserPatch = Partial<
  Pick<
    User,
    | 'email'
    | 'first_name'
    | 'last_name'
    | 'role'
    | 'status'
    | 'email_verified'
    | 'mfa_enabled'
    | 'password_hash'
    | 'password_reset_required'
    | 'metadata'
    | 'preferences'
    | 'plan'
    | 'deleted_at'
  >
>;

/** Which users a read considers: live ones (default), all, or only soft-deleted ones. */
export type DeletedFilter = 'exclude' | 'include' | 'only';

export interface UserListQuery {
  where?: Expr;
  /** Free text: every term must be a prefix of a word of the first name, last name or email. */
  search?: string;
  /** Sort keys; the adapter always appends `id` in the direction of the last key as a tie-breaker. */
  sort?: SortKey[];
  limit: number;
  offset?: number;
  deleted?: DeletedFilter;
}

/** One item's outcome in createMany. */
export type BulkCreateResult = { user: User } | { conflict: string } | { aborted: true };

export interface UserRepository {
  /** Throws StoreConflictError('email') when the normalized email is taken (soft-deleted users included). */
  create(input: NewUser): Promise<User>;
  /**
   * Creates several users, reporting per item (in input order). Duplicates inside the batch are
   * conflicts too (the first occurrence wins). With `atomic`, either every item is stored or none is:
   * when any item conflicts, nothing remains stored and every other item reports `aborted`.
   */
  createMany(inputs: NewUser[], options: { atomic: boolean }): Promise<BulkCreateResult[]>;
  findById(id: string, deleted?: DeletedFilter): Promise<User | null>;
  findByEmail(email: string, deleted?: DeletedFilter): Promise<User | null>;
  /**
   * A user (soft-deleted ones included) whose email looks like `email` (the same UTS #39 skeleton,
   * see email-skeleton.ts) without being the same address; `exceptId` leaves one user out.
   */
  findConfusable(email: string, exceptId?: string): Promise<User | null>;
  /** Applies the patch and bumps updated_at; null when no such user. Conflicts as in create. */
  update(id: string, patch: UserPatch, deleted?: DeletedFilter): Promise<User | null>;
  /** Erases the user and their role links; false when no such user. */
  remove(id: string): Promise<boolean>;
  list(query: UserListQuery): Promise<User[]>;
  count(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): Promise<number>;
  /**
   * One page of `list` plus the number of users matching `where` and `search` (as `count`), where
   * `after` (a keyset position, as built by keysetAfter) narrows the page but not the total.
   */
  listPage(query: UserListQuery & { after?: Expr }): Promise<{ items: User[]; total: number }>;
  /** Atomically increments login_count and sets last_login. */
  recordLogin(id: string, at: Date): Promise<User | null>;
}

export interface Role {
  id: string;
  /** Unique, machine-readable (for example `admin`). */
  name: string;
  display_name: string;
  description: string | null;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

export interface NewRole {
  id?: string;
  name: string;
  display_name?: string;
  description?: string | null;
  permissions?: string[];
}

export type RolePatch = Partial<Pick<Role, 'name' | 'display_name' | 'description' | 'permissions'>>;

export interface RoleRepository {
  /** Throws StoreConflictError('name') when the name is taken. */
  create(input: NewRole): Promise<Role>;
  findById(id: string): Promise<Role | null>;
  findByName(name: string): Promise<Role | null>;
  /** Sorted by name. */
  list(): Promise<Role[]>;
  update(id: string, patch: RolePatch): Promise<Role | null>;
  /** Deletes the role and every link to it; false when no such role. */
  remove(id: string): Promise<boolean>;
  /** Links a user to a role; false when the link already existed. */
  assign(userId: string, roleId: string): Promise<boolean>;
  /** Removes a link; false when it did not exist. */
  unassign(userId: string, roleId: string): Promise<boolean>;
  /** The roles linked to a user, sorted by name. */
  listForUser(userId: string): Promise<Role[]>;
  countUsers(roleId: string): Promise<number>;
  /** Ids of users linked to the role, sorted, at most `limit`. */
  listUserIds(roleId: string, limit: number): Promise<string[]>;
}

/** An OAuth client: oidc-provider client metadata plus what only we need. */
export interface ClientRecord {
  client_id: string;
  /** Hash of the client secret; the secret itself is never stored. */
  client_secret_hash: string | null;
  /** OpenID Connect client metadata (redirect_uris, grant_types, ...), without the secret. */
  metadata: JsonObject;
  /** First-party clients skip the consent page. */
  first_party: boolean;
  created_at: Date;
  updated_at: Date;
}

export type NewClient = Pick<ClientRecord, 'client_id' | 'metadata'> &
  Partial<Pick<ClientRecord, 'client_secret_hash' | 'first_party'>>;
export type ClientPatch = Partial<Pick<ClientRecord, 'client_secret_hash' | 'metadata' | 'first_party'>>;

export interface ClientRepository {
  /** Throws StoreConflictError('client_id') when the id is taken. */
  create(input: NewClient): Promise<ClientRecord>;
  find(clientId: string): Promise<ClientRecord | null>;
  /** Sorted by creation time, then id. */
  list(page: { limit: number; offset?: number }): Promise<ClientRecord[]>;
  count(): Promise<number>;
  update(clientId: string, patch: ClientPatch): Promise<ClientRecord | null>;
  remove(clientId: string): Promise<boolean>;
}

/**
 * Dynamic client registration (RFC 7591/7592): an initial access token lets its holder register
 * clients at /oauth/register; a registration access token lets one registered client read, change
 * and delete itself. Only a SHA-256 digest of either token is stored.
 */
export type RegistrationTokenKind = 'initial_access' | 'registration_access';

export interface RegistrationTokenRecord {
  /** `iat_…` or `rat_…`. */
  id: string;
  kind: RegistrationTokenKind;
  /** base64url SHA-256 of the token; unique. */
  token_hash: string;
  /** Registration access tokens: the one client they manage; null for initial access tokens. */
  client_id: string | null;
  description: string | null;
  /** Who created it (an actor id), for initial access tokens. */
  created_by: string | null;
  created_at: Date;
  /** null: until revoked. */
  expires_at: Date | null;
  last_used_at: Date | null;
  /** How many times the token was accepted (clients registered, for an initial access token). */
  use_count: number;
}

export type NewRegistrationToken = Pick<RegistrationTokenRecord, 'kind' | 'token_hash'> &
  Partial<Pick<RegistrationTokenRecord, 'id' | 'client_id' | 'description' | 'created_by' | 'expires_at'>>;

export interface RegistrationTokenRepository {
  /** Throws StoreConflictError('token_hash') when the digest is taken (or 'id'). */
  create(input: NewRegistrationToken): Promise<RegistrationTokenRecord>;
  findById(id: string): Promise<RegistrationTokenRecord | null>;
  findByHash(tokenHash: string): Promise<RegistrationTokenRecord | null>;
  /** One kind, newest first (then id). */
  list(
    kind: RegistrationTokenKind,
    page: { limit: number; offset?: number },
  ): Promise<RegistrationTokenRecord[]>;
  count(kind: RegistrationTokenKind): Promise<number>;
  /** Counts one use at `at` and sets last_used_at (informational, not a limit). */
  recordUse(id: string, at: Date): Promise<void>;
  remove(id: string): Promise<boolean>;
  /** Removes every token of a client; how many there were. */
  removeForClient(clientId: string): Promise<number>;
}

/**
 * `next`: published in JWKS but not yet used to sign; `current`: signs; `retired`: still published so
 * tokens it signed verify, until `expires_at`, after which it may be deleted.
 */
export type SigningKeyStatus = 'next' | 'current' | 'retired';

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  use: 'sig';
  status: SigningKeyStatus;
  public_jwk: JsonObject;
  /** The private JWK encrypted with the key-encryption secret (never stored in clear). */
  private_jwk_encrypted: string;
  created_at: Date;
  /** When a `next` key starts signing. */
  activates_at: Date;
  retired_at: Date | null;
  /** When a retired key may be removed from JWKS. */
  expires_at: Date | null;
}

export type NewSigningKey = Omit<SigningKeyRecord, 'created_at' | 'retired_at' | 'expires_at'> &
  Partial<Pick<SigningKeyRecord, 'created_at' | 'retired_at' | 'expires_at'>>;
export type SigningKeyPatch = Partial<
  Pick<SigningKeyRecord, 'status' | 'activates_at' | 'retired_at' | 'expires_at'>
>;

export interface SigningKeyRepository {
  /** Throws StoreConflictError('kid') when the kid exists. */
  create(input: NewSigningKey): Promise<SigningKeyRecord>;
  /** Sorted by creation time, then kid. */
  list(): Promise<SigningKeyRecord[]>;
  update(kid: string, patch: SigningKeyPatch): Promise<SigningKeyRecord | null>;
  remove(kid: string): Promise<boolean>;
}

/** An API registered as an OAuth resource server (RFC 8707): tokens for it carry its identifier as audience. */
export interface ResourceServerRecord {
  id: string;
  /** Absolute URI clients pass as `resource`; unique. */
  identifier: string;
  name: string;
  /** The scopes this API defines; tokens for it carry only these. */
  scopes: string[];
  access_token_format: 'jwt' | 'opaque';
  /** Seconds. */
  access_token_ttl: number;
  created_at: Date;
  updated_at: Date;
}

export type NewResourceServer = Pick<ResourceServerRecord, 'identifier' | 'name'> &
  Partial<Pick<ResourceServerRecord, 'id' | 'scopes' | 'access_token_format' | 'access_token_ttl'>>;
export type ResourceServerPatch = Partial<
  Pick<ResourceServerRecord, 'identifier' | 'name' | 'scopes' | 'access_token_format' | 'access_token_ttl'>
>;

/* ------------------------------------------------------------------------------------------------ */
/* Second factors                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

export type MfaFactorType = 'totp' | 'webauthn';

/** A confirmed second factor of a user: an authenticator app (TOTP) or a passkey (WebAuthn). */
export interface MfaFactor {
  id: string;
  user_id: string;
  type: MfaFactorType;
  /** Shown to the user: "Authenticator app", or the name given to a passkey. */
  name: string;
  created_at: Date;
  last_used_at: Date | null;
  /** TOTP: the shared secret, encrypted (KeyCipher, bound to the factor id). Null for passkeys. */
  secret: string | null;
  /** WebAuthn: the credential id (base64url), unique across users. */
  credential_id: string | null;
  /** WebAuthn: the COSE public key (base64url). */
  public_key: string | null;
  /** WebAuthn: the authenticator's signature counter as last seen (0 when it keeps none). */
  counter: number;
  /** WebAuthn: transports the authenticator reported (usb, internal, hybrid, ...). */
  transports: string[];
  /** WebAuthn: 'singleDevice' (a hardware-bound key) or 'multiDevice' (a synced passkey). */
  device_type: 'singleDevice' | 'multiDevice' | null;
  backed_up: boolean;
}

export type NewMfaFactor = Pick<MfaFactor, 'user_id' | 'type' | 'name'> &
  Partial<
    Pick<
      MfaFactor,
      | 'id'
      | 'secret'
      | 'credential_id'
      | 'public_key'
      | 'counter'
      | 'transports'
      | 'device_type'
      | 'backed_up'
    >
  >;

export interface MfaRepository {
  /** Throws StoreConflictError('credential_id') when the passkey is registered already. */
  createFactor(input: NewMfaFactor): Promise<MfaFactor>;
  /** A user's factors, oldest first. */
  listFactors(userId: string): Promise<MfaFactor[]>;
  findFactor(id: string): Promise<MfaFactor | null>;
  findByCredentialId(credentialId: string): Promise<MfaFactor | null>;
  /**
   * Records a use at `at`. With `counter` (WebAuthn), only when the stored counter is below it, or
   * both are 0 (an authenticator keeping no counter), in one atomic step: false means the counter
   * did not go forward (a cloned authenticator, or a replayed assertion) and nothing changed.
   */
  recordUse(id: string, at: Date, counter?: number): Promise<boolean>;
  renameFactor(id: string, name: string): Promise<MfaFactor | null>;
  removeFactor(id: string): Promise<boolean>;
  /** Removes every factor and recovery code of the user; how many factors there were. */
  removeAllForUser(userId: string): Promise<number>;
  /** Replaces the user's recovery codes (their hashes) with a new set. */
  replaceRecoveryCodes(userId: string, hashes: readonly string[], at: Date): Promise<void>;
  /** Takes one unused recovery code of the user, atomically: false when it is unknown or used. */
  useRecoveryCode(userId: string, hash: string, at: Date): Promise<boolean>;
  /** How many unused recovery codes the user has. */
  countRecoveryCodes(userId: string): Promise<number>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Single sign-on: upstream identity providers and the identities users have there                  */
/* ------------------------------------------------------------------------------------------------ */

export const SSO_PROVIDERS = ['azure_ad', 'okta', 'google_workspace', 'auth0', 'saml', 'oidc'] as const;
export type SsoProvider = (typeof SSO_PROVIDERS)[number];

/** A connection to an upstream identity provider, for the users of one or more e-mail domains. */
export interface SsoConnection {
  id: string;
  provider: SsoProvider;
  /** Lower-case e-mail domains; each belongs to at most one connection. */
  domains: string[];
  /** OIDC: the upstream issuer. */
  issuer: string | null;
  client_id: string | null;
  /** OIDC: the client secret, encrypted (KeyCipher, bound to the connection id). Never returned. */
  client_secret_encrypted: string | null;
  scopes: string[];
  /** SAML: where the IdP's metadata is, or the metadata itself. */
  metadata_url: string | null;
  metadata_xml: string | null;
  auto_provision: boolean;
  default_role: string | null;
  /** Our field (email, first_name, last_name, metadata.*) → the upstream claim or attribute name. */
  attribute_mapping: Record<string, string>;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

export type NewSsoConnection = Pick<SsoConnection, 'provider' | 'domains'> &
  Partial<Omit<SsoConnection, 'provider' | 'domains' | 'created_at' | 'updated_at'>>;
export type SsoConnectionPatch = Partial<Omit<SsoConnection, 'id' | 'created_at' | 'updated_at'>>;

/** A user's account at an upstream provider: (connection_id, subject) is unique. */
export interface SsoIdentity {
  connection_id: string;
  subject: string;
  user_id: string;
  created_at: Date;
}

export interface SsoConnectionRepository {
  /** Throws StoreConflictError('domain') when one of the domains has a connection already. */
  create(input: NewSsoConnection): Promise<SsoConnection>;
  findById(id: string): Promise<SsoConnection | null>;
  /** The connection of an e-mail domain (lower-case). */
  findByDomain(domain: string): Promise<SsoConnection | null>;
  /** Oldest first. */
  list(): Promise<SsoConnection[]>;
  /** Conflicts as in create; null when no such connection. */
  update(id: string, patch: SsoConnectionPatch): Promise<SsoConnection | null>;
  /** Removes the connection, its domains and the identities linked through it. */
  remove(id: string): Promise<boolean>;
  /** Throws StoreConflictError('identity') when (connection_id, subject) is linked already. */
  linkIdentity(identity: Omit<SsoIdentity, 'created_at'>): Promise<SsoIdentity>;
  findIdentity(connectionId: string, subject: string): Promise<SsoIdentity | null>;
  /** A user's identities, oldest first. */
  listIdentities(userId: string): Promise<SsoIdentity[]>;
  /** Identities of many users at once (for lists), grouped by user id. */
  listIdentitiesOf(userIds: readonly string[]): Promise<Map<string, SsoIdentity[]>>;
  removeIdentitiesOfUser(userId: string): Promise<number>;
}

export interface ResourceServerRepository {
  /** Throws StoreConflictError('identifier') when the identifier is taken. */
  create(input: NewResourceServer): Promise<ResourceServerRecord>;
  findById(id: string): Promise<ResourceServerRecord | null>;
  findByIdentifier(identifier: string): Promise<ResourceServerRecord | null>;
  /** Sorted by identifier. */
  list(): Promise<ResourceServerRecord[]>;
  update(id: string, patch: ResourceServerPatch): Promise<ResourceServerRecord | null>;
  remove(id: string): Promise<boolean>;
}

/** One entry of the audit trail: who did what to which record, and what changed (never secrets). */
export interface AuditEntry {
  id: string;
  timestamp: Date;
  /** `client` (a service token), `user` (a user's token or session), or `system` (start-up, CLI). */
  actor_type: 'client' | 'user' | 'system';
  actor_id: string;
  /** The OAuth client the actor acted through, when there is one. */
  actor_client_id: string | null;
  /** Dotted verb, for example `user.created`, `user.updated`, `role.deleted`, `user.login`. */
  action: string;
  target_type: string;
  target_id: string | null;
  request_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
  /** Changed fields: `{ field: { before, after } }`; secrets appear only as "[REDACTED]". */
  changes: JsonObject | null;
  /** Anything else worth keeping about the event. */
  details: JsonObject | null;
}

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'timestamp'> &
  Partial<Pick<AuditEntry, 'id' | 'timestamp'>>;

export interface AuditQuery {
  /** Over AUDIT_QUERY_FIELDS (query.ts). */
  where?: Expr;
  /** Default: newest first; `id` always ends the order. */
  sort?: SortKey[];
  limit: number;
  offset?: number;
}

export interface AuditRepository {
  append(entry: NewAuditEntry): Promise<AuditEntry>;
  /** Appends several entries in one write (bulk operations); all or none are stored. */
  appendMany(entries: NewAuditEntry[]): Promise<void>;
  list(query: AuditQuery): Promise<AuditEntry[]>;
  count(query: Pick<AuditQuery, 'where'>): Promise<number>;
}

/** Who an API key belongs to: a user, or a service client. */
export type ApiKeyOwnerType = 'user' | 'client';

/**
 * An API key. The key itself (`sk_live_<lookup_id>_<secret>`) is shown once; only its SHA-256 is
 * kept. `lookup_id` is the short public part that finds the record without the secret.
 */
export interface ApiKeyRecord {
  id: string;
  owner_type: ApiKeyOwnerType;
  owner_id: string;
  name: string;
  /** `live` or `test`: the key's prefix, `sk_live_` or `sk_test_`. */
  environment: 'live' | 'test';
  lookup_id: string;
  /** Hex SHA-256 of the whole key. */
  secret_hash: string;
  scopes: string[];
  /** Single addresses and CIDR ranges, IPv4 and IPv6; empty means any address. */
  allowed_ips: string[];
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export type NewApiKey = Omit<
  ApiKeyRecord,
  'id' | 'last_used_at' | 'revoked_at' | 'created_at' | 'updated_at'
> &
  Partial<Pick<ApiKeyRecord, 'id' | 'created_at'>>;
export type ApiKeyPatch = Partial<
  Pick<
    ApiKeyRecord,
    'name' | 'lookup_id' | 'secret_hash' | 'scopes' | 'allowed_ips' | 'expires_at' | 'revoked_at'
  >
>;

export interface ApiKeyRepository {
  /** Throws StoreConflictError('lookup_id') when the lookup id is taken. */
  create(input: NewApiKey): Promise<ApiKeyRecord>;
  findById(id: string): Promise<ApiKeyRecord | null>;
  findByLookupId(lookupId: string): Promise<ApiKeyRecord | null>;
  /** An owner's keys, revoked ones included, oldest first. */
  listByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<ApiKeyRecord[]>;
  update(id: string, patch: ApiKeyPatch): Promise<ApiKeyRecord | null>;
  /** Sets last_used_at (never moving it backwards). */
  touch(id: string, at: Date): Promise<void>;
  /** Erases every key of an owner; returns how many. */
  removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number>;
}

export const QUOTA_PERIODS = ['day', 'month'] as const;
export type QuotaPeriod = (typeof QUOTA_PERIODS)[number];

/** A plan: request rate (per hour, with a per-second burst), a quota per period, and credits. */
export interface PlanRecord {
  name: string;
  requests_per_hour: number;
  burst: number;
  /** Units (for example conversations) per period. */
  quota: number;
  quota_period: QuotaPeriod;
  /** Credits a subscriber starts with: spent once the period's quota is used up. */
  credits: number;
  created_at: Date;
  updated_at: Date;
}

export type NewPlan = Omit<PlanRecord, 'created_at' | 'updated_at'>;
export type PlanPatch = Partial<Omit<PlanRecord, 'name' | 'created_at' | 'updated_at'>>;

export interface PlanRepository {
  /** Throws StoreConflictError('name') when the name is taken. */
  create(input: NewPlan): Promise<PlanRecord>;
  find(name: string): Promise<PlanRecord | null>;
  /** Sorted by name. */
  list(): Promise<PlanRecord[]>;
  update(name: string, patch: PlanPatch): Promise<PlanRecord | null>;
  remove(name: string): Promise<boolean>;
}

/** One usage entry (for example one chat completion) reported by a gateway or an app. */
export interface UsageEntry {
  id: string;
  owner_type: ApiKeyOwnerType;
  owner_id: string;
  key_id: string | null;
  model: string;
  message_count: number;
  /** Total characters of the messages' contents. */
  characters: number;
  research_model: boolean;
  /** The message bodies, only when the deployment keeps them; null otherwise. */
  messages: JsonValue | null;
  /** The caller's Idempotency-Key, when it sent one. */
  idempotency_key: string | null;
  /** UTC day (YYYY-MM-DD) of created_at, for per-day totals. */
  day: string;
  created_at: Date;
}

export type NewUsageEntry = Omit<UsageEntry, 'id' | 'day'>;

export interface UsageSummary {
  total: number;
  by_day: { date: string; count: number }[];
  by_model: { model: string; count: number }[];
}

export interface UsageRepository {
  /**
   * Stores an entry. With an idempotency key, a second entry with the same owner and key is not
   * stored: the first one is returned with `duplicate: true`.
   */
  record(input: NewUsageEntry): Promise<{ entry: UsageEntry; duplicate: boolean }>;
  /** Counts of an owner's entries with from <= created_at < to, per day and per model. */
  summarize(ownerType: ApiKeyOwnerType, ownerId: string, from: Date, to: Date): Promise<UsageSummary>;
  removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Outbox: domain events and their deliveries                                                       */
/* ------------------------------------------------------------------------------------------------ */

/** Who caused an event: as for audit entries. */
export interface EventActor {
  type: 'client' | 'user' | 'system';
  id: string;
}

/**
 * One domain event as stored (src/events/catalog.ts gives the typed catalog). Append-only: never
 * changed once stored; read back by id and by time range for activity and analytics.
 */
export interface OutboxEvent {
  /** `evt_…`, time-ordered. */
  id: string;
  /** A catalog type, for example `user.created`. */
  type: string;
  timestamp: Date;
  actor: EventActor;
  data: JsonObject;
}

/**
 * `pending`: not tried yet (or put back by retry); `failed`: the last attempt failed and another is
 * due at next_attempt_at; `succeeded` and `dead` (given up) are final until retry.
 */
export const DELIVERY_STATUSES = ['pending', 'failed', 'succeeded', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** One event for one consumer (a webhook endpoint, a mail sender, ...): at most one per pair. */
export interface OutboxDelivery {
  /** deliveryId(event_id, endpoint_id): `dlv_…`, the same for the same pair on every adapter. */
  id: string;
  event_id: string;
  endpoint_id: string;
  status: DeliveryStatus;
  /** Attempts started (claims); a claim whose lease expired counts as one. */
  attempts: number;
  /** When the delivery is due (pending, failed); null once final (succeeded, dead). */
  next_attempt_at: Date | null;
  /** Who holds the current claim and until when; both null when unclaimed. */
  lease_owner: string | null;
  lease_expires_at: Date | null;
  /** HTTP status (or another consumer's code) of the last attempt; null when it had none. */
  last_status: number | null;
  last_error: string | null;
  latency_ms: number | null;
  created_at: Date;
  updated_at: Date;
  /** When it became succeeded or dead; null otherwise. */
  finished_at: Date | null;
}

export interface NewDelivery {
  event_id: string;
  endpoint_id: string;
  /** Default: now. */
  next_attempt_at?: Date;
  /** Default: now. */
  now?: Date;
}

/** A claim taken when a delivery is enqueued (OutboxRepository.enqueueLeased). */
export interface DeliveryLease {
  owner: string;
  until: Date;
}

/** What an attempt reports. */
export interface AttemptReport {
  /** HTTP status (or another code), null when there was no response. */
  status?: number | null;
  latency_ms?: number | null;
  /** The caller's clock; default now. */
  now?: Date;
}

/** A failed attempt: either another one is due at next_attempt_at, or the delivery is dead. */
export type AttemptFailure = AttemptReport & { error: string } & (
    { next_attempt_at: Date; dead?: never } | { dead: true; next_attempt_at?: never }
  );

export interface DeliveryListQuery {
  endpoint_id?: string;
  event_id?: string;
  status?: DeliveryStatus | DeliveryStatus[];
  limit: number;
  /** next_cursor of the previous page. Newest first (created_at, then id). */
  cursor?: string;
}

export interface EventListQuery {
  /** from <= timestamp < to. */
  from?: Date;
  to?: Date;
  types?: string[];
  limit: number;
  /** next_cursor of the previous page. Oldest first (timestamp, then id). */
  cursor?: string;
}

/** Which deliveries a claimer takes: one consumer's (by endpoint id prefix), not busy endpoints'. */
export interface ClaimFilter {
  /** Only endpoints whose id starts with this (`wh_` for webhooks). */
  endpointPrefix?: string;
  /** Not these endpoints (those the claimer has no free slot for). */
  excludeEndpoints?: readonly string[];
}

/** A page; next_cursor is null on the last one. A cursor that is not ours throws QueryError. */
export interface OutboxPage<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * The durable outbox: services append domain events (durable once append resolves), consumers
 * enqueue one delivery per (event, endpoint) and workers claim due deliveries with an expiring lease,
 * so that however many instances race, a delivery is claimed by one of them until its lease expires.
 * Only the lease owner can record the outcome.
 */
export interface OutboxRepository {
  /** Stores events (all or none); throws StoreConflictError('id') when an id exists. */
  append(events: OutboxEvent[]): Promise<void>;
  getEvent(id: string): Promise<OutboxEvent | null>;
  listEvents(query: EventListQuery): Promise<OutboxPage<OutboxEvent>>;
  /**
   * Creates a pending delivery per pair; a pair that already has one keeps it unchanged. Returns
   * the deliveries of every pair, in input order.
   */
  enqueue(deliveries: NewDelivery[]): Promise<OutboxDelivery[]>;
  /** As enqueue, without reading the deliveries back (the recorder's path: it needs none). */
  enqueueQuietly(deliveries: NewDelivery[]): Promise<void>;
  /**
   * As enqueueQuietly, but each new delivery is stored already claimed by `lease.owner` until
   * `lease.until`, its first attempt counted, as claimDue would leave it: the instance that records
   * the event makes the first attempt without a claim (see EventRecorder.handOffTo). Returns the
   * ids stored so; a pair that already had a delivery keeps it unchanged and is not among them.
   */
  enqueueLeased(deliveries: NewDelivery[], lease: DeliveryLease): Promise<string[]>;
  /**
   * Claims up to `limit` due deliveries (pending or failed, next_attempt_at <= now, no live lease)
   * for `owner` until now + leaseMs, counting an attempt on each; oldest due first. May return
   * fewer than are due when other claimers race; never one that another claimer holds.
   */
  claimDue(
    now: Date,
    limit: number,
    leaseMs: number,
    owner: string,
    filter?: ClaimFilter,
  ): Promise<OutboxDelivery[]>;
  /** Marks the delivery succeeded; null (and nothing changed) unless `owner` holds its claim. */
  complete(id: string, owner: string, result: AttemptReport): Promise<OutboxDelivery | null>;
  /** Records a failed attempt (due again at next_attempt_at, or dead); null unless `owner` holds it. */
  fail(id: string, owner: string, failure: AttemptFailure): Promise<OutboxDelivery | null>;
  get(id: string): Promise<OutboxDelivery | null>;
  list(query: DeliveryListQuery): Promise<OutboxPage<OutboxDelivery>>;
  /** Deliveries not yet made (pending or failed) and the creation time of the oldest of them. */
  pendingStats(): Promise<{ pending: number; oldest: Date | null }>;
  /** A failed or dead delivery becomes pending and due at `now`; null when it is neither. */
  retry(id: string, now?: Date): Promise<OutboxDelivery | null>;
  /**
   * Deletes finished deliveries (succeeded, dead) finished before `date`, then events older than
   * `date` that no delivery refers to any more. Returns how many of each.
   */
  purgeOlderThan(date: Date): Promise<{ events: number; deliveries: number }>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Webhook endpoints                                                                                */
/* ------------------------------------------------------------------------------------------------ */

/** A subscribed webhook endpoint. Secrets are stored as the service gives them (encrypted). */
export interface WebhookRecord {
  /** `wh_…` */
  id: string;
  url: string;
  /** Event types it receives; `*` stands for every type. */
  events: string[];
  description: string | null;
  active: boolean;
  /** The signing secret, encrypted by the service. */
  secret: string;
  /** The secret before the last rotation, signing too until previous_secret_expires_at. */
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  /** Why the server disabled it (410 Gone, failing for days); null when it did not. */
  disabled_reason: string | null;
  /** Start of the current run of failed attempts; null after a success. */
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
}

export type NewWebhook = Pick<WebhookRecord, 'url' | 'events' | 'description' | 'active' | 'secret'> & {
  id?: string;
};

export type WebhookPatch = Partial<Omit<WebhookRecord, 'id' | 'created_at' | 'updated_at'>>;

export interface WebhookRepository {
  /** Throws StoreConflictError('id') when the id exists. */
  create(input: NewWebhook): Promise<WebhookRecord>;
  findById(id: string): Promise<WebhookRecord | null>;
  /** Oldest first (created_at, then id). */
  list(page: { limit: number; offset?: number }): Promise<WebhookRecord[]>;
  count(): Promise<number>;
  /** Every active endpoint (the subscriptions in force). */
  listActive(): Promise<WebhookRecord[]>;
  update(id: string, patch: WebhookPatch): Promise<WebhookRecord | null>;
  remove(id: string): Promise<boolean>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Cedar policies, their schema, and registered entities                                            */
/* ------------------------------------------------------------------------------------------------ */

/** One version of one policy: every write appends one; a deletion appends a tombstone. */
export interface PolicyVersion {
  policy_id: string;
  /** 1, 2, 3, ... per policy. */
  version: number;
  description: string | null;
  /** Cedar text (one or more statements). */
  policy: string;
  enabled: boolean;
  /** This version records the policy's deletion. */
  deleted: boolean;
  /** When this version was written. */
  created_at: Date;
}

/** A policy as it stands at some moment: its latest version then, with its first version's date. */
export interface PolicyRecord {
  id: string;
  description: string | null;
  policy: string;
  enabled: boolean;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export type NewPolicyVersion = Pick<PolicyVersion, 'policy_id' | 'description' | 'policy' | 'enabled'> & {
  deleted?: boolean;
};

/** The optional Cedar schema; versioned like policies (null text: no schema). */
export interface PolicySchemaRecord {
  schema: string | null;
  version: number;
  updated_at: Date;
}

/** An entity registered for policy decisions (a resource, a group, an action group), Cedar's JSON form. */
export interface PolicyEntityRecord {
  type: string;
  id: string;
  attrs: JsonObject;
  parents: { type: string; id: string }[];
  created_at: Date;
  updated_at: Date;
}

export interface PolicyRepository {
  /**
   * Appends the next version of a policy. `expected` is the latest version the writer read, or
   * `absent` when the policy must not exist (never written, or deleted); when the latest version is
   * another (a concurrent write came first), throws StoreConflictError('version'). A version's
   * created_at is later than its predecessor's, even within one millisecond, so reading as of a
   * version's created_at sees that version.
   */
  append(input: NewPolicyVersion, expected: number | 'absent'): Promise<PolicyVersion>;
  /** The policy as it stands now; null when it never existed or its latest version is a deletion. */
  findById(id: string): Promise<PolicyRecord | null>;
  /** Every live policy as it stood at `asOf` (now when undefined), by id. */
  list(asOf?: Date): Promise<PolicyRecord[]>;
  /** Every version of a policy, oldest first (tombstones included). */
  versions(id: string): Promise<PolicyVersion[]>;
  /** A cheap marker that changes whenever a policy or the schema is written. */
  revision(): Promise<string>;
  /** The current schema; null when none was ever set. */
  getSchema(): Promise<PolicySchemaRecord | null>;
  /** Appends a schema version (`expected`: the version read, 0 for none); conflicts as append(). */
  putSchema(schema: string | null, expected: number): Promise<PolicySchemaRecord>;
  /** Creates or replaces a registered entity. */
  putEntity(
    entity: Pick<PolicyEntityRecord, 'type' | 'id' | 'attrs' | 'parents'>,
  ): Promise<PolicyEntityRecord>;
  /** The registered entities among `uids` (any order; missing ones left out). */
  findEntities(uids: { type: string; id: string }[]): Promise<PolicyEntityRecord[]>;
  /** By type then id; `type` narrows to one entity type. */
  listEntities(page: { limit: number; offset?: number; type?: string }): Promise<PolicyEntityRecord[]>;
  countEntities(type?: string): Promise<number>;
  removeEntity(type: string, id: string): Promise<boolean>;
}

export interface DurableStore {
  readonly kind: 'embedded' | 'mongo';
  readonly users: UserRepository;
  readonly roles: RoleRepository;
  readonly clients: ClientRepository;
  readonly registrationTokens: RegistrationTokenRepository;
  readonly signingKeys: SigningKeyRepository;
  readonly resourceServers: ResourceServerRepository;
  readonly audit: AuditRepository;
  readonly apiKeys: ApiKeyRepository;
  readonly plans: PlanRepository;
  readonly usage: UsageRepository;
  readonly outbox: OutboxRepository;
  readonly webhooks: WebhookRepository;
  readonly policies: PolicyRepository;
  readonly mfa: MfaRepository;
  readonly ssoConnections: SsoConnectionRepository;
  /**
   * Runs `work` (a change through these repositories and the outbox append recording it) as one
   * unit where the backend can: one SQLite transaction on the embedded store, a multi-document
   * transaction on a MongoDB replica set or sharded cluster. A standalone MongoDB or FerretDB has
   * none: the writes then happen in order, each durable on its own (the README names the window).
   * `work` must only call repositories of this store.
   */
  atomically<T>(work: () => Promise<T>): Promise<T>;
  /** Whether atomically() is one transaction on this deployment. */
  readonly transactional: boolean;
  /** Creates or updates schema and indexes; safe to run repeatedly and concurrently. */
  migrate(): Promise<void>;
  /** Resolves when the backend answers; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Short-lived data                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

/** What oidc-provider stores: its own payload shape, opaque to us except for these index fields. */
export interface ArtifactPayload {
  [key: string]: unknown;
  grantId?: string;
  userCode?: string;
  uid?: string;
  /** Set by consume (seconds since the epoch). */
  consumed?: number;
}

/** oidc-provider's adapter interface for one model (Session, AccessToken, ...). */
export interface ArtifactAdapter {
  /** expiresIn is in seconds and must be a positive finite number: nothing is stored forever. */
  upsert(id: string, payload: ArtifactPayload, expiresIn: number): Promise<void>;
  find(id: string): Promise<ArtifactPayload | undefined>;
  findByUid(uid: string): Promise<ArtifactPayload | undefined>;
  findByUserCode(userCode: string): Promise<ArtifactPayload | undefined>;
  /** Marks the artifact consumed, atomically; a no-op when it does not exist. */
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  /** Deletes every grant-bound artifact (codes, tokens, ...) of the grant, whatever its model. */
  revokeByGrantId(grantId: string): Promise<void>;
}

export interface ArtifactStore {
  readonly kind: 'embedded' | 'redis';
  adapterFor(model: string): ArtifactAdapter;
  /**
   * Deletes every artifact whose payload names this account (`accountId`): sessions, grants,
   * authorization codes, access and refresh tokens, ... Returns how many were deleted.
   */
  revokeByAccountId(accountId: string): Promise<number>;
  /**
   * The live artifacts of one model whose payload names this account (the user's sessions, say,
   * before they are revoked: back-channel logout needs to know which clients they covered).
   */
  listByAccountId(accountId: string, model: string): Promise<ArtifactPayload[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface CounterValue {
  value: number;
  /** When the current window ends and the counter disappears. */
  resetAt: Date;
}

/** Counters that are exact under concurrency, shared by every instance, living for a time window. */
export interface CounterStore {
  readonly kind: 'embedded' | 'redis';
  /**
   * Atomically adds `by` (default 1). A counter that does not exist, or whose window has ended,
   * starts from zero with a new window of `windowSeconds`.
   */
  increment(key: string, windowSeconds: number, by?: number): Promise<CounterValue>;
  get(key: string): Promise<CounterValue | null>;
  reset(key: string): Promise<void>;
  /** Several resets and increments (as `reset` and `increment` do) in one atomic step. */
  update(changes: CounterChange[]): Promise<void>;
  /**
   * Brute-force guard, in one atomic step (one round trip on Redis): takes the subjects in order and
   * stops at the first one that is locked. A subject whose `lock` counter exists is refused until
   * that counter's window ends. Otherwise its `attempts` counter is incremented (window
   * `windowSeconds`); the increment that takes it past `limit` locks the subject: its `lockouts`
   * counter (window `lockoutMemorySeconds`) is incremented to level L, the `lock` counter is set for
   * min(lockoutBaseSeconds × 2^(L−1), lockoutMaxSeconds) and `attempts` starts over. Subjects after
   * a refused one are not counted. So however many attempts race, no more than `limit` per window
   * get through.
   */
  guardAttempt(request: AttemptGuard): Promise<AttemptVerdict>;
  /**
   * A subject's quota, in one atomic step: starts (or, once `periodEnd` of the stored period has
   * passed, restarts) the period with `quota` units and `credits` (credits only for a new subject:
   * they carry over periods), then takes `amount` units, from the period's quota first and then
   * from credits, only when both together still hold `max(amount, 1)`. `amount: 0` checks.
   * Backends may forget a subject a year after its last period ended (it then starts afresh).
   */
  consumeQuota(
    key: string,
    request: QuotaRequest & { amount: number },
  ): Promise<QuotaState & { granted: boolean }>;
  /**
   * One request's admission in one step (one round trip on Redis): counts it in every rate window
   * (as increment does), and only when no window is over its limit, takes from the quota as
   * consumeQuota does.
   */
  admit(request: AdmitRequest): Promise<AdmitResult>;
  /** Starts or restarts the period as consumeQuota does, then sets what `values` gives. */
  setQuota(
    key: string,
    request: QuotaRequest,
    values: { remaining?: number; credits?: number },
  ): Promise<QuotaState>;
  /**
   * The current values of many counters in one read (one round trip on Redis), in the order of
   * `keys`; 0 for a counter that does not exist or whose window has ended.
   */
  getMany(keys: readonly string[]): Promise<number[]>;
  /**
   * Adds members to distinct-count sets, all in one step (one round trip on Redis). Each set lives
   * `ttlSeconds` after its last addition. Embedded sets are exact; Redis keeps a HyperLogLog per
   * set, whose counts have a standard error of 0.81% (exact for small sets).
   */
  addDistinct(additions: readonly DistinctAddition[]): Promise<void>;
  /** How many distinct members the sets named hold together (the size of their union). */
  countDistinct(keys: readonly string[]): Promise<number>;
  /** Several union sizes, as countDistinct gives each, in one read (one round trip on Redis). */
  countDistinctMany(unions: readonly (readonly string[])[]): Promise<number[]>;
  /**
   * Small exact sets of labels (the group values analytics has seen): adds, and renews the set's
   * life to `ttlSeconds`. Kept apart from distinct-count sets.
   */
  addLabels(key: string, labels: readonly string[], ttlSeconds: number): Promise<void>;
  /** The labels of a set, sorted, at most `limit` of them. */
  listLabels(key: string, limit: number): Promise<string[]>;
}

export interface DistinctAddition {
  key: string;
  members: readonly string[];
  ttlSeconds: number;
}

export type CounterChange = { reset: string } | { increment: string; windowSeconds: number; by?: number };

export interface AttemptGuard {
  subjects: { attempts: string; lock: string; lockouts: string; limit: number }[];
  windowSeconds: number;
  lockoutBaseSeconds: number;
  lockoutMaxSeconds: number;
  lockoutMemorySeconds: number;
}

export type AttemptVerdict =
  | { allowed: true }
  /** `subject`: the index of the locked subject in the request. */
  | { allowed: false; subject: number; lockedUntil: Date };

export interface AdmitRequest {
  windows: { key: string; windowSeconds: number; limit: number }[];
  quota?: { key: string } & QuotaRequest & { amount: number };
}

export interface AdmitResult {
  /** The counters after this request, in the order of the request's windows. */
  windows: CounterValue[];
  /** Whether any window is over its limit (then nothing was taken from the quota). */
  limited: boolean;
  /** Absent when limited or when no quota was asked for. */
  quota?: QuotaState & { granted: boolean };
}

export interface QuotaRequest {
  /** Units of a new period. */
  quota: number;
  /** Credits of a new subject. */
  credits: number;
  /** When a period started now would end. */
  periodEnd: Date;
  /** The caller's clock (so tests can move it). */
  now: Date;
}

export interface QuotaState {
  remaining: number;
  used: number;
  credits: number;
  periodEnd: Date;
}

/** Cross-instance notifications (cache invalidation): Redis pub/sub, or in-process when embedded. */
export interface EventBus {
  publish(channel: string, message: string): Promise<void>;
  /** Returns an unsubscribe function. */
  subscribe(channel: string, handler: (message: string) => void): () => void;
}

export interface Stores {
  durable: DurableStore;
  artifacts: ArtifactStore;
  counters: CounterStore;
  events: EventBus;
  close(): Promise<void>;
}
