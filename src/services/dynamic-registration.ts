/**
 * Dynamic client registration (RFC 7591) and self-management of registered clients (RFC 7592).
 * Clients are created, changed and deleted through the client service, so they get the same checks,
 * secrets (shown once, stored as digests) and `client.*` events as clients made through /v2; the
 * events and the audit trail name the actor `dynamic-registration`. What is ours alone: initial
 * access tokens (made by administrators through /v2, scope client:manage) that allow registering,
 * and one registration access token per registered client that allows managing that client only.
 * Both are random 256-bit tokens stored as SHA-256 digests.
 */
import { createHash, randomBytes } from 'node:crypto';

import type {
  ClientRecord,
  EventActor,
  JsonObject,
  RegistrationTokenRecord,
  RegistrationTokenRepository,
} from '../store/ports.js';
import type { Actor, AuditService, RequestFacts } from './audit.js';
import { kindOf, type ClientCallContext, type ClientService } from './clients.js';

export const DYNAMIC_REGISTRATION_MODES = ['off', 'initial_access_token', 'open'] as const;
export type DynamicRegistrationMode = (typeof DYNAMIC_REGISTRATION_MODES)[number];

/** Who acts in the events of registered clients' creation, changes and deletion. */
export const DYNAMIC_REGISTRATION_ACTOR: EventActor = { type: 'system', id: 'dynamic-registration' };

/** Client metadata a registrant may set; anything else an administrator set stays through a PUT. */
export const REGISTRABLE_METADATA = [
  'client_name',
  'application_type',
  'redirect_uris',
  'post_logout_redirect_uris',
  'grant_types',
  'response_types',
  'token_endpoint_auth_method',
  'require_signed_request_object',
  'require_pushed_authorization_requests',
  'introspection_signed_response_alg',
  'dpop_bound_access_tokens',
  'scope',
  'jwks',
  'jwks_uri',
  'logo_uri',
  'client_uri',
  'policy_uri',
  'tos_uri',
  'contacts',
  'id_token_signed_response_alg',
  'require_pkce',
] as const;

const INITIAL_PREFIX = 'lkiat_';
const REGISTRATION_PREFIX = 'lkrat_';

export const digestToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('base64url');
const newToken = (prefix: string) => prefix + randomBytes(32).toString('base64url');

export interface IssuedToken {
  record: RegistrationTokenRecord;
  /** The token itself: returned once, never stored. */
  token: string;
}

export interface RegisteredClient {
  client: ClientRecord;
  /** Only when it was just created. */
  client_secret?: string;
  registration_access_token: string;
}

/**
 * RFC 7591 §2 defaults for what the registrant left out (grant type authorization_code, response
 * type code, client_secret_basic, a web application); a client without the code grant has no
 * response types and, unless it says otherwise, no redirect URIs.
 */
export function withRegistrationDefaults(metadata: JsonObject): JsonObject {
  const grants = Array.isArray(metadata.grant_types) ? metadata.grant_types : ['authorization_code'];
  const usesCode = grants.includes('authorization_code');
  return {
    application_type: 'web',
    token_endpoint_auth_method: 'client_secret_basic',
    ...(usesCode ? {} : { redirect_uris: [] }),
    ...metadata,
    grant_types: grants,
    response_types: Array.isArray(metadata.response_types)
      ? metadata.response_types
      : usesCode
        ? ['code']
        : [],
  };
}

export class DynamicRegistration {
  constructor(
    private readonly tokens: RegistrationTokenRepository,
    private readonly clients: ClientService,
    private readonly audit: AuditService,
    readonly mode: DynamicRegistrationMode,
  ) {}

  /* ----------------------------------------------------------------------------------------- */
  /* Initial access tokens (the management API)                                                 */
  /* ----------------------------------------------------------------------------------------- */

  async createInitialAccessToken(
    input: { description?: string | undefined; expires_in: number },
    by: { actor: Actor; request: RequestFacts },
  ): Promise<IssuedToken> {
    const token = newToken(INITIAL_PREFIX);
    const record = await this.tokens.create({
      kind: 'initial_access',
      token_hash: digestToken(token),
      description: input.description ?? null,
      created_by: by.actor.actor_id,
      expires_at: new Date(Date.now() + input.expires_in * 1000),
    });
    await this.audit.record({
      ...by.actor,
      request: by.request,
      action: 'registration_token.created',
      target_type: 'registration_token',
      target_id: record.id,
      details: { description: record.description, expires_at: record.expires_at },
    });
    return { record, token };
  }

  listInitialAccessTokens(page: { limit: number; offset: number }): Promise<RegistrationTokenRecord[]> {
    return this.tokens.list('initial_access', page);
  }

  countInitialAccessTokens(): Promise<number> {
    return this.tokens.count('initial_access');
  }

  /** False when there is no such initial access token. */
  async revokeInitialAccessToken(id: string, by: { actor: Actor; request: RequestFacts }): Promise<boolean> {
    const found = await this.tokens.findById(id);
    if (!found || found.kind !== 'initial_access' || !(await this.tokens.remove(id))) return false;
    await this.audit.record({
      ...by.actor,
      request: by.request,
      action: 'registration_token.revoked',
      target_type: 'registration_token',
      target_id: id,
      details: { description: found.description },
    });
    return true;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* RFC 7591 registration                                                                      */
  /* ----------------------------------------------------------------------------------------- */

  /**
   * Whether a registration request may proceed: with a valid, unexpired initial access token, or
   * without one when registration is open. A token presented in open mode must still be valid.
   * Returns the token's record (null when open without one), or undefined when refused.
   */
  async admit(bearer: string | undefined): Promise<RegistrationTokenRecord | null | undefined> {
    if (bearer === undefined) return this.mode === 'open' ? null : undefined;
    const found = await this.findToken(bearer, 'initial_access');
    return found ?? undefined;
  }

  /** Registers a client from metadata already checked against the /v2 field schema. */
  async register(
    metadata: JsonObject,
    initial: RegistrationTokenRecord | null,
    request: RequestFacts,
  ): Promise<RegisteredClient> {
    const full = withRegistrationDefaults(metadata);
    const created = await this.clients.create(
      { kind: kindOf(full), first_party: false, metadata: full },
      this.callContext(undefined),
    );
    const token = newToken(REGISTRATION_PREFIX);
    try {
      await this.tokens.create({
        kind: 'registration_access',
        token_hash: digestToken(token),
        client_id: created.client.client_id,
      });
    } catch (err) {
      // A client nobody was told about and nobody can manage is taken back (its events say so).
      await this.clients
        .remove(created.client.client_id, this.callContext(created.client.client_id))
        .catch(() => undefined);
      throw err;
    }
    if (initial) await this.tokens.recordUse(initial.id, new Date());
    await this.audit.record({
      ...this.auditActor(null),
      request,
      action: 'client.created',
      target_type: 'client',
      target_id: created.client.client_id,
      before: null,
      after: { ...created.client.metadata, first_party: false },
      details: { dynamic_registration: true, initial_access_id: initial?.id ?? null },
    });
    return { ...created, registration_access_token: token };
  }

  /* ----------------------------------------------------------------------------------------- */
  /* RFC 7592 management by the registered client                                               */
  /* ----------------------------------------------------------------------------------------- */

  /**
   * The client `clientId`, when `bearer` is its registration access token; undefined otherwise
   * (a token of another client, an unknown token, a client deleted since, or a client re-created
   * under the same id after the token was issued).
   */
  async authorizeClient(clientId: string, bearer: string | undefined): Promise<ClientRecord | undefined> {
    if (bearer === undefined) return undefined;
    const token = await this.findToken(bearer, 'registration_access');
    if (!token || token.client_id !== clientId) return undefined;
    const client = await this.clients.find(clientId);
    if (!client || client.created_at.getTime() > token.created_at.getTime()) return undefined;
    await this.tokens.recordUse(token.id, new Date());
    return client;
  }

  /**
   * RFC 7592 §2.2: the request replaces the client's registrable metadata; what it leaves out is
   * removed (metadata only an administrator sets, such as a plan, stays). Null if the client is gone.
   */
  async replace(
    current: ClientRecord,
    metadata: JsonObject,
    request: RequestFacts,
  ): Promise<{ client: ClientRecord; client_secret?: string } | null> {
    const full = withRegistrationDefaults(metadata);
    const patch: JsonObject = { ...full };
    for (const key of REGISTRABLE_METADATA) if (!(key in full) && key in current.metadata) patch[key] = null;
    const updated = await this.clients.update(
      current.client_id,
      { metadata: patch },
      this.callContext(current.client_id),
    );
    if (!updated) return null;
    await this.audit.record({
      ...this.auditActor(current.client_id),
      request,
      action: 'client.updated',
      target_type: 'client',
      target_id: current.client_id,
      before: { ...current.metadata, first_party: current.first_party },
      after: { ...updated.client.metadata, first_party: updated.client.first_party },
      details: { dynamic_registration: true },
    });
    return updated;
  }

  /** RFC 7592 §2.3: deletes the client and its registration access token. */
  async remove(current: ClientRecord, request: RequestFacts): Promise<boolean> {
    const removed = await this.clients.remove(current.client_id, this.callContext(current.client_id));
    await this.tokens.removeForClient(current.client_id);
    if (!removed) return false;
    await this.audit.record({
      ...this.auditActor(current.client_id),
      request,
      action: 'client.deleted',
      target_type: 'client',
      target_id: current.client_id,
      before: { ...current.metadata, first_party: current.first_party },
      after: null,
      details: { dynamic_registration: true },
    });
    return true;
  }

  private async findToken(
    bearer: string,
    kind: RegistrationTokenRecord['kind'],
  ): Promise<RegistrationTokenRecord | undefined> {
    const prefix = kind === 'initial_access' ? INITIAL_PREFIX : REGISTRATION_PREFIX;
    if (!bearer.startsWith(prefix) || bearer.length > 200) return undefined;
    const found = await this.tokens.findByHash(digestToken(bearer));
    if (!found || found.kind !== kind) return undefined;
    if (found.expires_at && found.expires_at.getTime() <= Date.now()) return undefined;
    return found;
  }

  /** No management scopes at all: a registrant can grant none, and acts on its own client only. */
  private callContext(selfClientId: string | undefined): ClientCallContext {
    return {
      grants: new Set<string>(),
      ...(selfClientId ? { selfClientId } : {}),
      actor: DYNAMIC_REGISTRATION_ACTOR,
    };
  }

  private auditActor(clientId: string | null): Actor {
    return {
      actor_type: DYNAMIC_REGISTRATION_ACTOR.type,
      actor_id: DYNAMIC_REGISTRATION_ACTOR.id,
      actor_client_id: clientId,
    };
  }
}
