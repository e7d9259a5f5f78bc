/**
 * The request and answer shapes of Latchkey's HTTP API as a client sees them (shared/API.md): snake_case
 * fields, timestamps as RFC 3339 strings. Written by hand so the SDK carries no server code.
 */

export type JsonObject = Record<string, unknown>;
export type UserStatus = 'active' | 'suspended' | 'inactive';

export interface Pagination {
  total: number;
  limit: number;
  offset: number;
  has_more: boolean;
  next_cursor: string | null;
}

export interface Page<T> {
  data: T[];
  pagination: Pagination;
}

/* Users ------------------------------------------------------------------------------------------ */

export interface RoleSummary {
  id: string;
  name: string;
  display_name: string;
  permissions: string[];
}

export interface User {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string;
  status: UserStatus;
  email_verified: boolean;
  created_at: string;
  updated_at: string;
  last_login: string | null;
  metadata: JsonObject;
  /** With `include: ['roles']`. */
  roles?: RoleSummary[];
  /** With `include: ['permissions']`. */
  permissions?: string[];
  /** With `include: ['preferences']`. */
  preferences?: JsonObject;
}

export interface PageQuery {
  /** 1 to 100, default 25. */
  limit?: number;
  offset?: number;
  /** `pagination.next_cursor` of the previous page. */
  cursor?: string;
}

export interface ListUsersQuery extends PageQuery {
  role?: string;
  status?: UserStatus;
  /** `field:asc|desc`, comma-separated for several fields. */
  sort?: string;
  /** Words matching the start of a name or email part. */
  search?: string;
}

export type FilterOp = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'in' | 'contains';
export type FilterValue = string | number | boolean | null;
export type UserFilters = Record<
  string,
  FilterValue | FilterValue[] | Partial<Record<FilterOp, FilterValue | FilterValue[]>>
>;

export interface SearchUsersQuery extends PageQuery {
  /** Full text over names and email. */
  q?: string;
  /** Field → value or `{ op: value }`; sent as JSON. */
  filters?: UserFilters;
  /** `['created_at:desc', 'email:asc']`; sent as JSON. */
  sort?: string[];
  /** A projection; `id` is always returned. Sent as JSON. */
  fields?: (keyof User)[];
}

export interface CreateUserInput {
  email: string;
  first_name: string;
  last_name: string;
  role?: string;
  status?: UserStatus;
  email_verified?: boolean;
  password?: string;
  send_welcome_email?: boolean;
  metadata?: JsonObject;
}

export type UpdateUserInput = Partial<
  Pick<
    CreateUserInput,
    'email' | 'first_name' | 'last_name' | 'role' | 'status' | 'email_verified' | 'metadata'
  >
>;

export type UserInclude = 'roles' | 'permissions' | 'preferences';

export interface DeleteResult {
  message: string;
  deleted_at: string;
  soft_delete: boolean;
}

export interface BulkCreateOptions {
  send_welcome_emails?: boolean;
  /** All or nothing. */
  fail_on_error?: boolean;
}

export interface BulkItemResult {
  index: number;
  success: boolean;
  user?: User;
  error?: { code: string; message: string; field?: string };
}

export interface BulkResult {
  results: BulkItemResult[];
  summary: { total: number; successful: number; failed: number };
}

/* Roles ------------------------------------------------------------------------------------------ */

export interface Role {
  id: string;
  name: string;
  display_name: string;
  description: string | null;
  permissions: string[];
  created_at: string;
  updated_at: string;
}

export interface CreateRoleInput {
  name: string;
  display_name?: string;
  description?: string | null;
  permissions?: string[];
}

export type UpdateRoleInput = Partial<Omit<CreateRoleInput, 'name'>>;

/* API keys --------------------------------------------------------------------------------------- */

export interface CreateApiKeyInput {
  name: string;
  /** Default, and at most: what the owner holds. */
  scopes?: string[];
  expires_at?: string | null;
  /** Addresses or CIDR ranges, IPv4 or IPv6. */
  allowed_ips?: string[];
  /** `sk_live_…` (default) or `sk_test_…`. */
  environment?: 'live' | 'test';
}

export interface ApiKey {
  id: string;
  name: string;
  /** The key's public start, for recognizing it. */
  prefix: string;
  scopes: string[];
  allowed_ips: string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** The answer to creating or rotating a key: the only time `key` is shown. */
export interface IssuedApiKey extends ApiKey {
  key: string;
}

/* Plans and usage -------------------------------------------------------------------------------- */

export interface PlanInput {
  name: string;
  requests_per_hour: number;
  burst: number;
  quota: number;
  quota_period: 'day' | 'month';
  credits: number;
}

export interface Plan extends PlanInput {
  built_in: boolean;
  created_at: string | null;
  updated_at: string | null;
}

export interface UserPlan {
  user_id: string;
  plan: string;
  updated_at: string;
}

export interface Usage {
  user_id: string;
  plan: string;
  period_start: string;
  period_end: string;
  quota: number;
  remaining_conversations: number;
  used: number;
  credits: number;
  total_messages_logged: number;
  by_day: { date: string; count: number }[];
  by_model: { model: string; count: number }[];
}

export interface UsageAdjustment {
  remaining_conversations?: number;
  credits?: number;
}

/* Auth and the gateway API ----------------------------------------------------------------------- */

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

export interface VerifyKeyResult {
  valid: true;
  key_id: string;
  owner_type: 'user' | 'client';
  user_id?: string;
  client_id?: string;
  username?: string;
  email?: string;
  scopes: string[];
  plan: string;
  remaining_conversations: number;
  credits: number;
  resets_at: string;
  [extra: string]: unknown;
}

export interface LogMessageInput {
  model: string;
  messages: { role: string; content: string }[];
  research_model?: boolean;
}

export interface LogMessageResult {
  id: string;
  /** False when the Idempotency-Key was seen before and nothing new was recorded. */
  recorded: boolean;
  duplicate: boolean;
  model: string;
  message_count: number;
  characters: number;
  research_model: boolean;
  key_id: string;
  user_id?: string;
  client_id?: string;
  created_at: string;
}

/** A Cedar entity uid: `{ type: 'User', id: 'alice@example.com' }`. */
export interface EntityRef {
  type: string;
  id: string;
}

/** An entity sent with a check, in Cedar's JSON form. */
export interface CedarEntity {
  uid: EntityRef;
  attrs?: Record<string, unknown>;
  parents?: EntityRef[];
}

/** One question for `POST /v1/authorize`. */
export interface AuthorizeRequest {
  principal: EntityRef;
  action: EntityRef;
  resource: EntityRef;
  context?: Record<string, unknown>;
  entities?: CedarEntity[];
}

export interface AuthorizeDecision {
  decision: 'Allow' | 'Deny';
  diagnostics: { reasons: string[]; errors: { policy: string | null; message: string }[] };
}
