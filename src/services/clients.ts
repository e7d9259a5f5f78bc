/**
 * OAuth client management shared by the admin API and the CLI: sensible metadata per client kind,
 * validation by oidc-provider's own client schema (so a client we accept is one the provider can
 * load), secrets generated here, returned once and stored only as hashes.
 */
import { errors } from 'oidc-provider';

import { ACCOUNT_CLIENT_ID } from '../account/router.js';
import { AppError } from '../errors/app-error.js';
import { generateClientSecret, hashClientSecret } from '../oidc/client-secrets.js';
import { TOKEN_EXCHANGE_GRANT } from '../oidc/token-exchange.js';
import { StoreConflictError } from '../store/errors.js';
import { newId } from '../store/ids.js';
import type { ClientRecord, ClientRepository, JsonObject } from '../store/ports.js';
import { changedFields, eventClient, newEvent } from '../events/catalog.js';
import { SYSTEM_ACTOR, type EventRecorder } from '../events/recorder.js';
import type { EventActor } from '../store/ports.js';
import { requireDominance, requireGrantable, requireScopes, type Grants } from './authority.js';

/**
 * - web: confidential server-side app (client_secret_basic), code + PKCE and refresh tokens
 * - spa: public browser app (no secret), code + PKCE
 * - native: public mobile/desktop app (RFC 8252: private-use schemes, loopback redirects on any port)
 * - service: confidential machine client, client credentials only
 * - device: public client on a device without a browser or keyboard (a TV, a command-line tool):
 *   the device authorization grant (RFC 8628) and refresh tokens, no redirects
 */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
export const CLIENT_KINDS = ['web', 'spa', 'native', 'service', 'device'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

const SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post']);

export function kindDefaults(kind: ClientKind): JsonObject {
  switch (kind) {
    case 'web':
      return {
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      };
    case 'spa':
      return {
        application_type: 'web',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      };
    case 'native':
      return {
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      };
    case 'service':
      return {
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      };
    case 'device':
      return {
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      };
  }
}

/** The kind a stored client's metadata describes. */
export function kindOf(metadata: JsonObject): ClientKind {
  const grants = Array.isArray(metadata.grant_types) ? metadata.grant_types : [];
  // A service may also exchange tokens (RFC 8693) it receives from its callers.
  if (grants.length > 0 && grants.every((g) => g === 'client_credentials' || g === TOKEN_EXCHANGE_GRANT))
    return 'service';
  if (grants.includes(DEVICE_CODE_GRANT) && !grants.includes('authorization_code')) return 'device';
  if (metadata.token_endpoint_auth_method === 'none')
    return metadata.application_type === 'native' ? 'native' : 'spa';
  return 'web';
}

/** A client metadata problem, with the provider's own description. */
export class ClientMetadataError extends Error {
  constructor(readonly description: string) {
    super(description);
    this.name = 'ClientMetadataError';
  }
}

export interface NewClientInput {
  client_id?: string;
  kind: ClientKind;
  first_party?: boolean;
  /** OpenID Connect client metadata; overrides the kind's defaults. */
  metadata: JsonObject;
}

export interface ClientWithSecret {
  client: ClientRecord;
  /** Present only when a secret was just created: it is never available again. */
  client_secret?: string;
}

export type MetadataValidator = (metadata: JsonObject) => Promise<void>;

/** Who changes a client: the caller's management scopes and, for a service token, its own client id. */
export interface ClientCallContext {
  grants: Grants;
  /** The client the caller acts as (a service token's client), for the self-protection rules. */
  selfClientId?: string;
  /** Who acts, for the events (default: the system). */
  actor?: EventActor;
}

/** The system itself (the CLI, start-up). */
export const SYSTEM_CALL: ClientCallContext = { grants: 'all' };

const scopesOf = (metadata: JsonObject): string[] =>
  typeof metadata.scope === 'string' ? metadata.scope.split(' ').filter(Boolean) : [];

/** A client that can get a token carrying client:manage: the clients that can manage clients. */
function managesClients(metadata: JsonObject): boolean {
  const grants = Array.isArray(metadata.grant_types) ? metadata.grant_types : [];
  return scopesOf(metadata).includes('client:manage') && grants.includes('client_credentials');
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Back-Channel Logout 1.0 §2.2: an absolute https URL without fragment; plain http only to a
 * loopback address and only outside production (a receiver on the developer's machine).
 */
function checkBackchannelLogoutUri(value: unknown, production: boolean): void {
  if (value === undefined) return;
  const url = typeof value === 'string' ? URL.parse(value) : null;
  const problem = !url
    ? 'must be an absolute URL'
    : url.hash || String(value).includes('#')
      ? 'must not have a fragment'
      : url.protocol === 'https:'
        ? null
        : url.protocol !== 'http:'
          ? 'must use https'
          : production
            ? 'must use https in production'
            : LOOPBACK_HOSTS.has(url.hostname)
              ? null
              : 'must use https (http only to a loopback address outside production)';
  if (problem) throw new ClientMetadataError(`backchannel_logout_uri ${problem}`);
}

const PROTECTED_METADATA = ['client_id', 'client_secret', 'client_secret_expires_at', 'client_id_issued_at'];

export class ClientService {
  constructor(
    private readonly clients: ClientRepository,
    private readonly validate: MetadataValidator,
    private readonly events: EventRecorder,
    private readonly onChange: (clientId: string) => void = () => undefined,
    private readonly options: { production?: boolean } = {},
  ) {}

  private async check(clientId: string, metadata: JsonObject, hasSecret: boolean): Promise<void> {
    checkBackchannelLogoutUri(metadata.backchannel_logout_uri, this.options.production ?? false);
    // The provider requires PKCE from every client without authentication whatever this says, so
    // accepting `false` would store (and show) a setting that is not in effect.
    if (metadata.require_pkce === false && metadata.token_endpoint_auth_method === 'none') {
      throw new ClientMetadataError(
        'require_pkce can only be false for confidential clients; PKCE is always required for public clients',
      );
    }
    try {
      // The provider requires a secret for secret-based methods; a placeholder stands in for the hash.
      await this.validate({
        ...metadata,
        client_id: clientId,
        ...(hasSecret ? { client_secret: 'x'.repeat(43) } : {}),
      });
    } catch (err) {
      if (
        err instanceof errors.OIDCProviderError ||
        (err as { error?: string }).error === 'invalid_client_metadata'
      ) {
        const e = err as errors.OIDCProviderError;
        throw new ClientMetadataError(e.error_description ?? e.message);
      }
      throw err;
    }
  }

  private static clean(metadata: JsonObject): JsonObject {
    const out = { ...metadata };
    for (const key of PROTECTED_METADATA) delete out[key];
    return out;
  }

  /**
   * The field, target and self-protection rules of a change from `before` to `after` (authority.ts):
   * a client's management scopes and plan are granted only by a caller holding them; a client with
   * management scopes is changed only by a caller holding them all; a client cannot remove its own
   * management access; the last client able to manage clients stays.
   */
  private async guard(
    clientId: string,
    before: JsonObject | null,
    after: JsonObject | null,
    context: ClientCallContext,
  ): Promise<void> {
    const self = context.selfClientId === clientId;
    if (before && !self) requireDominance(context.grants, scopesOf(before), 'client_id');
    if (after) requireGrantable(context.grants, scopesOf(after), 'scope');
    if (after && (after.plan ?? null) !== (before?.plan ?? null)) {
      requireScopes(context.grants, ['plan:manage'], 'plan', "Setting a client's plan");
    }
    if (!before || !managesClients(before) || (after && managesClients(after))) return;
    if (self) {
      throw new AppError('SELF_PROTECTION', {
        message: after
          ? 'A client cannot remove its own client:manage scope or client_credentials grant'
          : 'A client cannot delete itself',
        details: [{ field: 'client_id', issue: 'This is the calling client', provided: clientId }],
      });
    }
    for (let offset = 0; ; offset += 500) {
      const page = await this.clients.list({ limit: 500, offset });
      if (page.some((c) => c.client_id !== clientId && managesClients(c.metadata))) return;
      if (page.length < 500) break;
    }
    throw new AppError('LAST_ADMINISTRATOR', {
      message: 'This is the last client that can manage clients; give another client client:manage first',
      details: [{ field: 'client_id', issue: 'Last client holding client:manage', provided: clientId }],
    });
  }

  async create(input: NewClientInput, context: ClientCallContext = SYSTEM_CALL): Promise<ClientWithSecret> {
    const clientId = input.client_id ?? newId('cl');
    // The built-in account page's client is part of the provider configuration; its id is taken.
    if (clientId === ACCOUNT_CLIENT_ID) throw new StoreConflictError('client_id');
    const metadata = { ...kindDefaults(input.kind), ...ClientService.clean(input.metadata) };
    await this.guard(clientId, null, metadata, context);
    const needsSecret = SECRET_METHODS.has(String(metadata.token_endpoint_auth_method));
    await this.check(clientId, metadata, needsSecret);
    const secret = needsSecret ? generateClientSecret() : undefined;
    const client = await this.events.record(
      () =>
        this.clients.create({
          client_id: clientId,
          client_secret_hash: secret ? hashClientSecret(secret) : null,
          first_party: input.first_party ?? false,
          metadata,
        }),
      (created) => [
        newEvent('client.created', context.actor ?? SYSTEM_ACTOR, { client: eventClient(created) }),
      ],
    );
    return { client, ...(secret ? { client_secret: secret } : {}) };
  }

  list(page: { limit: number; offset?: number }): Promise<ClientRecord[]> {
    return this.clients.list(page);
  }

  count(): Promise<number> {
    return this.clients.count();
  }

  find(clientId: string): Promise<ClientRecord | null> {
    return this.clients.find(clientId);
  }

  /** Replaces the given metadata fields; a secret is created when the client starts needing one. */
  async update(
    clientId: string,
    patch: { metadata?: JsonObject; first_party?: boolean },
    context: ClientCallContext = SYSTEM_CALL,
  ): Promise<ClientWithSecret | null> {
    const current = await this.clients.find(clientId);
    if (!current) return null;
    const metadata: JsonObject = { ...current.metadata, ...ClientService.clean(patch.metadata ?? {}) };
    // null removes an optional field
    for (const [key, value] of Object.entries(metadata)) if (value === null) delete metadata[key];
    await this.guard(clientId, current.metadata, metadata, context);
    const needsSecret = SECRET_METHODS.has(String(metadata.token_endpoint_auth_method));
    await this.check(clientId, metadata, needsSecret);
    const secret = needsSecret && !current.client_secret_hash ? generateClientSecret() : undefined;
    const client = await this.events.record(
      () =>
        this.clients.update(clientId, {
          metadata,
          ...(patch.first_party !== undefined ? { first_party: patch.first_party } : {}),
          ...(secret ? { client_secret_hash: hashClientSecret(secret) } : {}),
          ...(!needsSecret ? { client_secret_hash: null } : {}),
        }),
      (updated) => {
        if (!updated) return [];
        const changes = [
          ...changedFields(current, updated, ['first_party', 'metadata']),
          ...(secret || (!needsSecret && current.client_secret_hash) ? ['client_secret'] : []),
        ];
        return changes.length > 0
          ? [
              newEvent('client.updated', context.actor ?? SYSTEM_ACTOR, {
                client: eventClient(updated),
                changes,
              }),
            ]
          : [];
      },
    );
    this.onChange(clientId);
    return client ? { client, ...(secret ? { client_secret: secret } : {}) } : null;
  }

  /** Issues a new secret (the old one stops working at once); null when no such confidential client. */
  async rotateSecret(
    clientId: string,
    context: ClientCallContext = SYSTEM_CALL,
  ): Promise<ClientWithSecret | null> {
    const current = await this.clients.find(clientId);
    if (!current || !SECRET_METHODS.has(String(current.metadata.token_endpoint_auth_method))) return null;
    // Whoever gets the new secret can act as the client.
    await this.guard(clientId, current.metadata, current.metadata, context);
    const secret = generateClientSecret();
    const client = await this.events.record(
      () => this.clients.update(clientId, { client_secret_hash: hashClientSecret(secret) }),
      (updated) =>
        updated
          ? [
              newEvent('client.updated', context.actor ?? SYSTEM_ACTOR, {
                client: eventClient(updated),
                changes: ['client_secret'],
              }),
            ]
          : [],
    );
    this.onChange(clientId);
    return client ? { client, client_secret: secret } : null;
  }

  async remove(clientId: string, context: ClientCallContext = SYSTEM_CALL): Promise<boolean> {
    const current = await this.clients.find(clientId);
    if (!current) return false;
    await this.guard(clientId, current.metadata, null, context);
    const removed = await this.events.record(
      () => this.clients.remove(clientId),
      (done) =>
        done
          ? [newEvent('client.deleted', context.actor ?? SYSTEM_ACTOR, { client: eventClient(current) })]
          : [],
    );
    this.onChange(clientId);
    return removed;
  }
}
