/**
 * The domain event catalog: every event the server records, its payload, and the webhook wire
 * form (shared/API.md, "Webhooks"). Services will emit these through the durable outbox
 * (EventRecorder, src/events/recorder.ts, onto OutboxRepository in src/store/ports.ts); webhook
 * delivery, activity and analytics consume them.
 *
 * Payloads carry public shapes only: never password hashes, secret hashes, keys or tokens.
 */
import { newId } from '../store/ids.js';
import type {
  ApiKeyRecord,
  ClientRecord,
  EventActor,
  JsonObject,
  JsonValue,
  OutboxEvent,
  Role,
  User,
} from '../store/ports.js';

export const EVENT_TYPES = [
  'user.created',
  'user.updated',
  'user.deleted',
  'user.restored',
  'user.login',
  'user.login_failed',
  'user.logout',
  'user.locked',
  'user.role_changed',
  'user.password_changed',
  'user.email_verified',
  'user.mfa_reset',
  'api_key.created',
  'api_key.revoked',
  'api_key.rotated',
  'client.created',
  'client.updated',
  'client.deleted',
  'role.created',
  'role.updated',
  'role.deleted',
  'ping',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export function isEventType(value: string): value is EventType {
  return (EVENT_TYPES as readonly string[]).includes(value);
}

/** A user as events show it: exactly what `GET /v2/users/{id}` answers (publicUser). */
export type EventUser = {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string;
  status: string;
  email_verified: boolean;
  /** Whether the user has a second factor (an authenticator app or a passkey). */
  mfa_enabled: boolean;
  created_at: string;
  updated_at: string;
  last_login: string | null;
  metadata: JsonObject;
  plan: string | null;
};

export type EventRole = {
  id: string;
  name: string;
  display_name: string;
  description: string | null;
  permissions: string[];
  created_at: string;
  updated_at: string;
};

/** A client without its secret hash; metadata is left out too (it may grow secrets later). */
export type EventClient = {
  client_id: string;
  client_name: string | null;
  first_party: boolean;
  created_at: string;
  updated_at: string;
};

/** An API key without its hash or lookup id. */
export type EventApiKey = {
  id: string;
  name: string;
  owner_type: 'user' | 'client';
  owner_id: string;
  environment: 'live' | 'test';
  scopes: string[];
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
};

/** Where a sign-in attempt came from, when known. */
export type EventRequest = { ip_address: string | null; user_agent: string | null };

/** Payload of each event type. `changes` lists changed field names (`metadata.department` for nested ones). */
export type EventDataMap = {
  'user.created': { user: EventUser };
  'user.updated': { user: EventUser; changes: string[] };
  /** was_soft_deleted: a permanent deletion of a user soft-deleted before (counted once, then). */
  'user.deleted': { user: EventUser; permanent: boolean; was_soft_deleted: boolean };
  'user.restored': { user: EventUser };
  /** method: how the user proved who they are (`password` for now); client_id: the client signed in to. */
  'user.login': { user: EventUser; method: string; client_id: string | null } & EventRequest;
  /** user is null when the identifier matched no user. */
  'user.login_failed': { user: EventUser | null; reason: string } & EventRequest;
  /**
   * A sign-out through the provider's end-session endpoint. `signed_in_at` is when the ended
   * session signed in (the session's login time, ISO 8601), null when unknown; `session_id` is the
   * session's uid when known. Session expiry sends no event.
   */
  'user.logout': { user: EventUser; session_id: string | null; signed_in_at: string | null } & EventRequest;
  'user.locked': { user: EventUser; locked_until: string | null };
  'user.role_changed': { user: EventUser; previous_role: string | null; added: string[]; removed: string[] };
  /** by_administrator: someone other than the user set it (an administrator, a client). */
  'user.password_changed': { user: EventUser; by_administrator: boolean };
  /** The user proved the address by the e-mailed link. */
  'user.email_verified': { user: EventUser };
  /** An administrator removed second factors of the user (one, or all of them). */
  'user.mfa_reset': { user: EventUser; factor: EventMfaFactor | null; removed: number };
  'api_key.created': { api_key: EventApiKey };
  'api_key.revoked': { api_key: EventApiKey };
  /** The key keeps its id; its secret (and displayed prefix) changed. */
  'api_key.rotated': { api_key: EventApiKey };
  'client.created': { client: EventClient };
  'client.updated': { client: EventClient; changes: string[] };
  'client.deleted': { client: EventClient };
  'role.created': { role: EventRole };
  'role.updated': { role: EventRole; changes: string[] };
  'role.deleted': { role: EventRole };
  ping: { message: string };
};

/** What each type's `data` holds, in words (the README and the OpenAPI `webhooks` section). */
export const EVENT_DATA: Record<EventType, string> = {
  'user.created': '`user`: the new user, as GET /v2/users/{id} shows it',
  'user.updated':
    '`user` after the change; `changes`: the changed field names (`metadata.department` for a nested key)',
  'user.deleted':
    '`user` as it was; `permanent`: false for a soft delete; `was_soft_deleted`: a permanent deletion of a soft-deleted user',
  'user.restored': '`user`, restored from a soft delete',
  'user.logout':
    '`user`, `session_id`, `signed_in_at` (when the ended session began), `ip_address`, `user_agent`',
  'user.login':
    '`user`, `method` (password, password+otp, password+passkey, passkey, sso), `client_id`, `ip_address`, `user_agent`',
  'user.login_failed': '`user` (an existing user only), `reason`, `ip_address`, `user_agent`',
  'user.locked': '`user`, `locked_until`: sign-in is refused until then',
  'user.role_changed': '`user`, `previous_role`, `added` and `removed` role names',
  'user.password_changed': '`user`, `by_administrator`: someone other than the user set it',
  'user.email_verified': '`user`, who proved the address by the e-mailed link',
  'user.mfa_reset':
    '`user` after the reset; `factor`: the removed factor (`id`, `type`, `name`), null when all were removed; `removed`: how many',
  'api_key.created': '`api_key`: its public fields (never the secret or its hash)',
  'api_key.revoked': '`api_key`',
  'api_key.rotated': '`api_key` (same id, new secret)',
  'client.created': '`client`: `client_id`, `client_name`, `first_party`, timestamps',
  'client.updated': '`client`, `changes`',
  'client.deleted': '`client` as it was',
  'role.created': '`role`',
  'role.updated': '`role`, `changes`',
  'role.deleted': '`role` as it was',
  ping: '`message`: sent by POST /v2/webhooks/{id}/test to that endpoint only',
};

/** One event of the catalog; `DomainEvent<'user.created'>` narrows to one type. */
export type DomainEvent<T extends EventType = EventType> = {
  [K in T]: {
    /** `evt_…`, time-ordered like every id (src/store/ids.ts). */
    id: string;
    type: K;
    /** ISO 8601, UTC. */
    timestamp: string;
    actor: EventActor;
    data: EventDataMap[K];
  };
}[T];

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** The public shape of a user: the management API's and the events' (never a hash or secret). */
export function publicUser(user: User): EventUser {
  return {
    id: user.id,
    email: user.email,
    first_name: user.first_name,
    last_name: user.last_name,
    role: user.role,
    status: user.status,
    email_verified: user.email_verified,
    mfa_enabled: user.mfa_enabled,
    created_at: user.created_at.toISOString(),
    updated_at: user.updated_at.toISOString(),
    last_login: iso(user.last_login),
    metadata: user.metadata,
    plan: user.plan,
  };
}

export const eventUser = publicUser;

/** A second factor as events and the management API show it: never a secret or a key. */
export type EventMfaFactor = {
  id: string;
  type: 'totp' | 'webauthn';
  name: string;
  created_at: string;
  last_used_at: string | null;
};

export function eventRole(role: Role): EventRole {
  return {
    id: role.id,
    name: role.name,
    display_name: role.display_name,
    description: role.description,
    permissions: [...role.permissions],
    created_at: role.created_at.toISOString(),
    updated_at: role.updated_at.toISOString(),
  };
}

export function eventClient(client: ClientRecord): EventClient {
  const name = client.metadata.client_name;
  return {
    client_id: client.client_id,
    client_name: typeof name === 'string' ? name : null,
    first_party: client.first_party,
    created_at: client.created_at.toISOString(),
    updated_at: client.updated_at.toISOString(),
  };
}

export function eventApiKey(key: ApiKeyRecord): EventApiKey {
  return {
    id: key.id,
    name: key.name,
    owner_type: key.owner_type,
    owner_id: key.owner_id,
    environment: key.environment,
    scopes: [...key.scopes],
    expires_at: iso(key.expires_at),
    revoked_at: iso(key.revoked_at),
    created_at: key.created_at.toISOString(),
  };
}

/** Builds an event with a fresh id, stamped `now`. */
export function newEvent<T extends EventType>(
  type: T,
  actor: EventActor,
  data: EventDataMap[T],
  now = new Date(),
): DomainEvent<T> {
  return {
    id: newId('evt', now.getTime()),
    type,
    timestamp: now.toISOString(),
    actor: { type: actor.type, id: actor.id },
    data,
  } as DomainEvent<T>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

const same = (a: unknown, b: unknown): boolean => {
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  return JSON.stringify(a) === JSON.stringify(b);
};

/**
 * Names of the fields among `fields` that differ between two versions of a record; for object
 * fields (metadata, preferences) the changed keys, as `metadata.department`.
 */
export function changedFields<R extends object>(
  before: R,
  after: R,
  fields: readonly (keyof R & string)[],
): string[] {
  const changes: string[] = [];
  for (const field of fields) {
    const a: unknown = before[field];
    const b: unknown = after[field];
    if (isObject(a) && isObject(b)) {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const key of keys) if (!same(a[key], b[key])) changes.push(`${field}.${key}`);
    } else if (!same(a, b)) {
      changes.push(field);
    }
  }
  return changes;
}

/** The stored form (the outbox keeps the timestamp as a date). */
export function toOutboxEvent(event: DomainEvent): OutboxEvent {
  return {
    id: event.id,
    type: event.type,
    timestamp: new Date(event.timestamp),
    actor: event.actor,
    data: event.data as unknown as JsonObject,
  };
}

/** Back from the stored form; undefined for a type this catalog does not know (a newer server's). */
export function fromOutboxEvent(stored: OutboxEvent): DomainEvent | undefined {
  if (!isEventType(stored.type)) return undefined;
  return {
    id: stored.id,
    type: stored.type,
    timestamp: stored.timestamp.toISOString(),
    actor: stored.actor,
    data: stored.data,
  } as unknown as DomainEvent;
}

/** What a webhook receives (shared/API.md): `event` and `type` carry the same value. */
export type WebhookPayload = {
  event: EventType;
  type: EventType;
  timestamp: string;
  data: JsonObject;
  webhook_id: string;
};

export function webhookPayload(event: DomainEvent, webhookId: string): WebhookPayload {
  return {
    event: event.type,
    type: event.type,
    timestamp: event.timestamp,
    data: event.data as unknown as JsonObject,
    webhook_id: webhookId,
  };
}

/** The raw body to sign and send: the payload as JSON text. */
export function webhookBody(event: DomainEvent, webhookId: string): string {
  return JSON.stringify(webhookPayload(event, webhookId) satisfies { [key: string]: JsonValue });
}

/** Compile-time check that every payload is plain JSON (the outbox stores JsonObject). */
type JsonPayloads<T extends { [K in EventType]: JsonObject }> = T;
export type CheckedEventData = JsonPayloads<EventDataMap>;
