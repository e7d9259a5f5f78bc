/**
 * /v2/clients and /v2/resources: OAuth clients of every kind and the APIs (resource servers) tokens
 * can be issued for. A new or rotated client secret is returned once and stored only as a hash.
 */
import { principalActor } from './principal.js';
import { eventActor } from '../events/recorder.js';
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import { MAX_RESOURCE_TOKEN_TTL_S } from '../oidc/resource-servers.js';
import { TOKEN_EXCHANGE_GRANT } from '../oidc/token-exchange.js';
import {
  CLIENT_KINDS,
  ClientMetadataError,
  kindOf,
  type ClientCallContext,
  type ClientService,
} from '../services/clients.js';
import type { RatePlan } from '../services/plans.js';
import { StoreConflictError } from '../store/errors.js';
import type {
  ClientRecord,
  JsonObject,
  ResourceServerRecord,
  ResourceServerRepository,
} from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import type { Principal } from './principal.js';
import { ADMIN_SCOPES, OIDC_SCOPES } from '../oidc/scopes.js';
import {
  ABSOLUTE_URI_PATTERN,
  pageQuery,
  Pagination,
  plainText,
  textField,
  timestamp,
  uriField,
  WEB_URI_PATTERN,
  WHITESPACE,
  wire,
  offsetPagination,
} from './schemas.js';
import { contextOf } from './users-routes.js';
import type { AuditService } from '../services/audit.js';

const redirectUri = uriField(
  ABSOLUTE_URI_PATTERN,
  'An absolute URI without fragment (http(s) for web and single-page clients; native clients may use private-use schemes and http only on loopback addresses)',
);
const webUri = uriField(WEB_URI_PATTERN, 'An http(s) URI without fragment');
/** Scope values this server knows; a client's `scope` is a space-separated list of them. */
const SCOPE_VALUES = [...OIDC_SCOPES, ...ADMIN_SCOPES];
const SCOPE_LIST = `(?:${SCOPE_VALUES.join('|')})(?: (?:${SCOPE_VALUES.join('|')}))*`;
const SCOPE_RE = new RegExp(`^(?:${SCOPE_LIST})?$`);
/** The HTML standard's "valid e-mail address" (what the OpenID provider checks contacts with). */
const CONTACT_PATTERN = "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*$";
const PLAN_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,63}$';

/** The caller as the client service's rules see it (a service token names its own client). */
function callContext(principal: Principal | undefined): ClientCallContext {
  return {
    grants: principal?.scopes ?? new Set<string>(),
    selfClientId: principal?.kind === 'client' ? principal.clientId : undefined,
    actor: eventActor(principalActor(principal)),
  };
}
const GRANTS = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:device_code',
  TOKEN_EXCHANGE_GRANT,
] as const;
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const;

/** A client id in a token-exchange policy, or "*" for any client. */
const clientRef = z.string().regex(/^(?:\*|[A-Za-z0-9_.:-]{1,128})$/, { error: 'A client id, or "*"' });

/** The client metadata fields and their checks; dynamic registration (oidc/registration-endpoint.ts) uses them too. */
export const clientFields = {
  client_name: textField(200),
  application_type: z.enum(['web', 'native']),
  redirect_uris: z.array(redirectUri).max(50),
  post_logout_redirect_uris: z.array(redirectUri).max(50),
  grant_types: z.array(z.enum(GRANTS)).min(1).max(5),
  response_types: z.array(z.enum(['code'])).max(1),
  token_endpoint_auth_method: z.enum(AUTH_METHODS),
  require_signed_request_object: z
    .boolean()
    .describe(
      'RFC 9101: authorization requests must come as a request object signed with a key in jwks / jwks_uri',
    ),
  require_pushed_authorization_requests: z
    .boolean()
    .describe('RFC 9126: authorization requests must be pushed to /oauth/par first'),
  introspection_signed_response_alg: z
    .enum(['RS256', 'ES256'])
    .describe('RFC 9701: introspection answers this client as a JWT signed with this algorithm'),
  backchannel_logout_uri: uriField(
    WEB_URI_PATTERN,
    'Back-Channel Logout 1.0: where logout tokens are POSTed when a session of the client ends (https; http only to a loopback address outside production)',
  ),
  backchannel_logout_session_required: z
    .boolean()
    .describe('Back-Channel Logout 1.0: logout tokens must carry `sid` (the session id of the ID tokens)'),
  dpop_bound_access_tokens: z
    .boolean()
    .describe('RFC 9449 §5.2: the client must send DPoP proofs; its tokens are always bound to its key'),
  scope: wire(
    z
      .string()
      .max(2000)
      .transform((v) => v.trim())
      .refine((v) => SCOPE_RE.test(v), {
        error: `Space-separated scope values of ${SCOPE_VALUES.join(', ')}`,
      }),
    {
      type: 'string',
      maxLength: 2000,
      pattern: `^[${WHITESPACE}]*(?:${SCOPE_LIST})?[${WHITESPACE}]*$`,
      description: `Space-separated scope values this server knows: ${SCOPE_VALUES.join(', ')}`,
    },
  ),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(20) }),
  jwks_uri: webUri,
  logo_uri: webUri,
  client_uri: webUri,
  policy_uri: webUri,
  tos_uri: webUri,
  contacts: z
    .array(z.string().max(254).regex(new RegExp(CONTACT_PATTERN), { error: 'An e-mail address' }))
    .max(10),
  id_token_signed_response_alg: z.enum(['RS256', 'ES256']),
  require_pkce: z.boolean().describe('Confidential clients only; PKCE is always required for public clients'),
  plan: z
    .string()
    .regex(new RegExp(PLAN_NAME_PATTERN), { error: 'A plan name' })
    .describe(
      'Rate-limit plan of the management API: basic, professional, enterprise or one of /v2/plans (422 for a plan that does not exist)',
    ),
  api_scopes: z
    .array(
      z
        .string()
        .regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, { error: 'A scope token without spaces or quotes' }),
    )
    .max(200)
    .describe(
      'Scopes of registered APIs this client may obtain for itself (client credentials with resource=…)',
    ),
  token_exchange: z
    .object({
      subject_clients: z
        .array(clientRef)
        .min(1)
        .max(50)
        .describe('Clients whose tokens (of their users) this client may exchange; "*" for any client'),
      audiences: z
        .array(
          z
            .string()
            .min(1)
            .max(2000)
            .regex(/^[\x21-\x7E]+$/, { error: 'An API identifier' }),
        )
        .max(50)
        .optional()
        .describe('Identifiers of registered APIs (/v2/resources) the exchanged tokens may be for'),
      actor_clients: z
        .array(clientRef)
        .max(50)
        .optional()
        .describe("Clients whose tokens may be the actor_token (delegation); default: this client's own"),
      impersonation: z
        .boolean()
        .optional()
        .describe('Whether an exchange without actor_token (impersonation) is allowed; default false'),
    })
    .strict()
    .describe(
      `RFC 8693 token exchange policy; required with the grant type ${TOKEN_EXCHANGE_GRANT} (confidential clients only)`,
    ),
};

const CreateClient = z
  .object({
    kind: z
      .enum(CLIENT_KINDS)
      .default('web')
      .describe(
        'Defaults for grant types and authentication: web, spa, native, service, device (RFC 8628 device authorization grant)',
      ),
    client_id: z
      .string()
      .regex(/^[A-Za-z0-9_-]{3,64}$/, { error: '3 to 64 letters, digits, "-" or "_"' })
      // /v2/clients/registration-tokens is the initial access tokens' collection, not a client.
      .refine((id) => id !== 'registration-tokens', { error: 'Reserved' })
      .optional(),
    first_party: z.boolean().default(false).describe('First-party clients skip the consent page'),
    ...clientFields,
    client_name: clientFields.client_name,
  })
  .partial({
    application_type: true,
    redirect_uris: true,
    post_logout_redirect_uris: true,
    grant_types: true,
    response_types: true,
    token_endpoint_auth_method: true,
    backchannel_logout_uri: true,
    backchannel_logout_session_required: true,
    dpop_bound_access_tokens: true,
    require_signed_request_object: true,
    require_pushed_authorization_requests: true,
    introspection_signed_response_alg: true,
    scope: true,
    jwks: true,
    jwks_uri: true,
    logo_uri: true,
    client_uri: true,
    policy_uri: true,
    tos_uri: true,
    contacts: true,
    id_token_signed_response_alg: true,
    require_pkce: true,
    plan: true,
    api_scopes: true,
    token_exchange: true,
  })
  .strict();

/** Optional fields an update may remove by sending null. */
const UpdateClient = z
  .object({
    ...clientFields,
    first_party: z.boolean(),
    scope: clientFields.scope.nullable(),
    jwks: clientFields.jwks.nullable(),
    jwks_uri: clientFields.jwks_uri.nullable(),
    logo_uri: clientFields.logo_uri.nullable(),
    client_uri: clientFields.client_uri.nullable(),
    policy_uri: clientFields.policy_uri.nullable(),
    tos_uri: clientFields.tos_uri.nullable(),
    contacts: clientFields.contacts.nullable(),
    plan: clientFields.plan.nullable(),
    api_scopes: clientFields.api_scopes.nullable(),
    token_exchange: clientFields.token_exchange.nullable(),
    introspection_signed_response_alg: clientFields.introspection_signed_response_alg.nullable(),
    backchannel_logout_uri: clientFields.backchannel_logout_uri.nullable(),
  })
  .partial()
  .strict();

const Client = z.object({
  client_id: z.string(),
  kind: z.enum(CLIENT_KINDS),
  client_name: z.string().optional(),
  application_type: z.string().optional(),
  redirect_uris: z.array(z.string()),
  post_logout_redirect_uris: z.array(z.string()),
  grant_types: z.array(z.string()),
  response_types: z.array(z.string()),
  token_endpoint_auth_method: z.string(),
  backchannel_logout_uri: z.string().optional(),
  backchannel_logout_session_required: z.boolean().optional(),
  dpop_bound_access_tokens: z.boolean().optional(),
  require_signed_request_object: z.boolean().optional(),
  require_pushed_authorization_requests: z.boolean().optional(),
  introspection_signed_response_alg: z.string().optional(),
  scope: z.string().nullable(),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).optional(),
  jwks_uri: z.string().optional(),
  logo_uri: z.string().optional(),
  client_uri: z.string().optional(),
  policy_uri: z.string().optional(),
  tos_uri: z.string().optional(),
  contacts: z.array(z.string()).optional(),
  id_token_signed_response_alg: z.string().optional(),
  api_scopes: z.array(z.string()).optional(),
  token_exchange: z
    .object({
      subject_clients: z.array(z.string()),
      audiences: z.array(z.string()).optional(),
      actor_clients: z.array(z.string()).optional(),
      impersonation: z.boolean().optional(),
    })
    .optional(),
  first_party: z.boolean(),
  require_pkce: z.boolean(),
  plan: z.string(),
  has_secret: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
});
const ClientWithSecret = Client.extend({
  client_secret: z.string().optional().describe('Only in the response that created it: store it now'),
});

function toApiClient(record: ClientRecord, secret?: string) {
  const m = record.metadata as Record<string, unknown>;
  return {
    ...m,
    client_id: record.client_id,
    kind: kindOf(record.metadata),
    redirect_uris: (m.redirect_uris as string[] | undefined) ?? [],
    post_logout_redirect_uris: (m.post_logout_redirect_uris as string[] | undefined) ?? [],
    grant_types: (m.grant_types as string[] | undefined) ?? ['authorization_code'],
    response_types: (m.response_types as string[] | undefined) ?? ['code'],
    token_endpoint_auth_method: (m.token_endpoint_auth_method as string | undefined) ?? 'client_secret_basic',
    scope: (m.scope as string | undefined) ?? null,
    first_party: record.first_party,
    require_pkce: m.require_pkce !== false,
    plan: (m.plan as string | undefined) ?? 'basic',
    has_secret: record.client_secret_hash !== null,
    created_at: record.created_at.toISOString(),
    updated_at: record.updated_at.toISOString(),
    ...(secret ? { client_secret: secret } : {}),
  };
}

function metadataError(err: unknown): never {
  if (err instanceof ClientMetadataError) {
    const field = /^([a-z_]+)/.exec(err.description)?.[1] ?? '(body)';
    // The provider's rules that the schema cannot state: combinations of fields (redirect URIs per
    // application type, grant and response types, authentication method and keys) and key contents.
    throw new AppError('INVALID_CLIENT_METADATA', {
      details: [{ field, issue: err.description }],
    });
  }
  if (err instanceof StoreConflictError) {
    throw new AppError('CONFLICT', {
      message: 'A client with this client_id already exists',
      details: [{ field: 'client_id', issue: 'Already taken' }],
    });
  }
  throw err;
}

const clientParam = z.object({ client_id: z.string().min(1).max(64) });

export function registerClientRoutes(
  api: ApiRouter,
  deps: { clients: ClientService; plans: () => Promise<Record<string, RatePlan>>; audit: AuditService },
): void {
  const { clients, audit } = deps;

  async function checkPlan(plan: string | undefined) {
    if (plan !== undefined && !(plan in (await deps.plans()))) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: `There is no plan named "${plan}"`,
        details: [{ field: 'plan', issue: 'Unknown plan', provided: plan }],
      });
    }
  }

  api.add({
    method: 'get',
    path: '/clients',
    operationId: 'listClients',
    summary: 'List OAuth clients',
    tag: 'Clients',
    scope: 'client:manage',
    query: z.object({ limit: pageQuery.limit, offset: pageQuery.offset }),
    responses: {
      200: {
        description: 'A page of clients',
        schema: z.object({ data: z.array(Client), pagination: Pagination }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const [rows, total] = await Promise.all([
        clients.list({ limit: query.limit, offset: query.offset }),
        clients.count(),
      ]);
      return {
        status: 200,
        body: {
          data: rows.map((c) => toApiClient(c)),
          pagination: offsetPagination(total, query.limit, query.offset, rows.length),
        },
      };
    },
  });

  api.add({
    method: 'post',
    path: '/clients',
    operationId: 'createClient',
    summary: 'Register an OAuth client',
    description:
      'Kinds: web (confidential, code + PKCE), spa (public, code + PKCE), native (public, RFC 8252 redirects), service (client credentials). For confidential clients the response holds `client_secret`, the only time it is shown.',
    tag: 'Clients',
    scope: 'client:manage',
    body: CreateClient,
    responses: { 201: { description: 'The client (with its secret, once)', schema: ClientWithSecret } },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'CONFLICT',
      'INVALID_CLIENT_METADATA',
      'BUSINESS_RULE_VIOLATION',
    ],
    async handler({ body, principal, ctx }) {
      const { kind, client_id, first_party, ...metadata } = body;
      await checkPlan(metadata.plan);
      const created = await clients
        .create(
          { kind, first_party, ...(client_id ? { client_id } : {}), metadata: metadata as JsonObject },
          callContext(principal),
        )
        .catch(metadataError);
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'client.created',
        target_type: 'client',
        target_id: created.client.client_id,
        before: null,
        after: { ...created.client.metadata, first_party: created.client.first_party },
      });
      return {
        status: 201,
        body: toApiClient(created.client, created.client_secret),
        headers: { Location: `/v2/clients/${created.client.client_id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/clients/{client_id}',
    operationId: 'getClient',
    summary: 'Get an OAuth client',
    tag: 'Clients',
    scope: 'client:manage',
    params: clientParam,
    responses: { 200: { description: 'The client', schema: Client } },
    errors: ['CLIENT_NOT_FOUND'],
    async handler({ params }) {
      const client = await clients.find(params.client_id);
      if (!client) throw new AppError('CLIENT_NOT_FOUND');
      return { status: 200, body: toApiClient(client) };
    },
  });

  api.add({
    method: 'put',
    path: '/clients/{client_id}',
    operationId: 'updateClient',
    summary: 'Update an OAuth client (partial)',
    description:
      'Changes apply on every instance within CLIENT_CACHE_TTL_S. `null` removes an optional field. Switching a public client to a secret-based method creates a secret, returned once.',
    tag: 'Clients',
    scope: 'client:manage',
    params: clientParam,
    body: UpdateClient,
    responses: { 200: { description: 'The client', schema: ClientWithSecret } },
    errors: [
      'CLIENT_NOT_FOUND',
      'VALIDATION_ERROR',
      'SELF_PROTECTION',
      'LAST_ADMINISTRATOR',
      'INVALID_CLIENT_METADATA',
      'BUSINESS_RULE_VIOLATION',
    ],
    async handler({ params, body, principal, ctx }) {
      const { first_party, ...metadata } = body;
      const before = await clients.find(params.client_id);
      if (!before) throw new AppError('CLIENT_NOT_FOUND');
      await checkPlan(metadata.plan ?? undefined);
      const updated = await clients
        .update(
          params.client_id,
          {
            metadata: metadata as JsonObject,
            ...(first_party !== undefined ? { first_party } : {}),
          },
          callContext(principal),
        )
        .catch(metadataError);
      if (!updated) throw new AppError('CLIENT_NOT_FOUND');
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'client.updated',
        target_type: 'client',
        target_id: params.client_id,
        before: { ...before.metadata, first_party: before.first_party },
        after: { ...updated.client.metadata, first_party: updated.client.first_party },
      });
      return { status: 200, body: toApiClient(updated.client, updated.client_secret) };
    },
  });

  api.add({
    method: 'delete',
    path: '/clients/{client_id}',
    operationId: 'deleteClient',
    summary: 'Delete an OAuth client',
    tag: 'Clients',
    scope: 'client:manage',
    params: clientParam,
    responses: { 204: { description: 'Deleted' } },
    errors: ['CLIENT_NOT_FOUND', 'SELF_PROTECTION', 'LAST_ADMINISTRATOR'],
    async handler({ params, principal, ctx }) {
      const before = await clients.find(params.client_id);
      if (!before || !(await clients.remove(params.client_id, callContext(principal))))
        throw new AppError('CLIENT_NOT_FOUND');
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'client.deleted',
        target_type: 'client',
        target_id: params.client_id,
        before: { ...before.metadata, first_party: before.first_party },
        after: null,
      });
      return { status: 204 };
    },
  });

  api.add({
    method: 'post',
    path: '/clients/{client_id}/secret',
    operationId: 'rotateClientSecret',
    summary: 'Rotate a client secret',
    description: 'Issues a new secret, returned once; the previous secret stops working at once.',
    tag: 'Clients',
    scope: 'client:manage',
    params: clientParam,
    responses: { 200: { description: 'The client with its new secret', schema: ClientWithSecret } },
    errors: ['CLIENT_NOT_FOUND', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, principal, ctx }) {
      const existing = await clients.find(params.client_id);
      if (!existing) throw new AppError('CLIENT_NOT_FOUND');
      const rotated = await clients.rotateSecret(params.client_id, callContext(principal));
      if (!rotated)
        throw new AppError('BUSINESS_RULE_VIOLATION', {
          message: 'This client does not use a client secret',
        });
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'client.secret_rotated',
        target_type: 'client',
        target_id: params.client_id,
      });
      return { status: 200, body: toApiClient(rotated.client, rotated.client_secret) };
    },
  });
}

/* --------------------------------------------------------------------------------------------- */
/* Resource servers                                                                               */
/* --------------------------------------------------------------------------------------------- */

const scopeToken = z
  .string()
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, { error: 'A scope token without spaces or quotes' });
const resourceFields = {
  identifier: uriField(ABSOLUTE_URI_PATTERN, 'An absolute URI without fragment'),
  name: plainText(200),
  scopes: z.array(scopeToken).max(200),
  access_token_format: z.enum(['jwt', 'opaque']),
  access_token_ttl: z.number().int().min(60).max(MAX_RESOURCE_TOKEN_TTL_S),
};
const CreateResource = z
  .object(resourceFields)
  .partial({ scopes: true, access_token_format: true, access_token_ttl: true })
  .strict();
const UpdateResource = z.object(resourceFields).partial().strict();
const Resource = z.object({
  id: z.string(),
  identifier: z.string(),
  name: z.string(),
  scopes: z.array(z.string()),
  access_token_format: z.enum(['jwt', 'opaque']),
  access_token_ttl: z.number().int(),
  created_at: timestamp,
  updated_at: timestamp,
});

const toApiResource = (r: ResourceServerRecord) => ({
  ...r,
  created_at: r.created_at.toISOString(),
  updated_at: r.updated_at.toISOString(),
});

function resourceConflict(err: unknown): never {
  if (err instanceof StoreConflictError) {
    throw new AppError('CONFLICT', {
      message: 'An API with this identifier already exists',
      details: [{ field: 'identifier', issue: 'Already taken' }],
    });
  }
  throw err;
}

export function registerResourceRoutes(
  api: ApiRouter,
  deps: {
    repo: ResourceServerRepository;
    invalidate: (identifier?: string) => void;
    audit: AuditService;
    reserved: string[];
  },
): void {
  const { repo, audit } = deps;
  const idParam = z.object({ id: z.string().min(1).max(64) });
  const notReserved = (identifier: string | undefined) => {
    if (identifier && deps.reserved.includes(identifier)) {
      throw new AppError('CONFLICT', {
        details: [{ field: 'identifier', issue: 'Reserved for this server’s own API' }],
      });
    }
  };

  api.add({
    method: 'get',
    path: '/resources',
    operationId: 'listResources',
    summary: 'List APIs (resource servers)',
    tag: 'Resources',
    scope: 'client:manage',
    responses: {
      200: { description: 'Every registered API', schema: z.object({ data: z.array(Resource) }) },
    },
    errors: [],
    async handler() {
      return { status: 200, body: { data: (await repo.list()).map(toApiResource) } };
    },
  });

  api.add({
    method: 'post',
    path: '/resources',
    operationId: 'createResource',
    summary: 'Register an API (resource server)',
    description:
      'Token requests with `resource=<identifier>` (RFC 8707) get access tokens with this audience, limited to these scopes; `jwt` tokens are RFC 9068 JWTs verifiable with /oauth/jwks.',
    tag: 'Resources',
    scope: 'client:manage',
    body: CreateResource,
    responses: { 201: { description: 'The API', schema: Resource } },
    errors: ['VALIDATION_ERROR', 'MISSING_REQUIRED_FIELD', 'CONFLICT'],
    async handler({ body, principal, ctx }) {
      notReserved(body.identifier);
      const created = await repo.create(body).catch(resourceConflict);
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'resource.created',
        target_type: 'resource',
        target_id: created.id,
        before: null,
        after: { ...created },
      });
      return {
        status: 201,
        body: toApiResource(created),
        headers: { Location: `/v2/resources/${created.id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/resources/{id}',
    operationId: 'getResource',
    summary: 'Get an API',
    tag: 'Resources',
    scope: 'client:manage',
    params: idParam,
    responses: { 200: { description: 'The API', schema: Resource } },
    errors: ['RESOURCE_NOT_FOUND'],
    async handler({ params }) {
      const found = await repo.findById(params.id);
      if (!found) throw new AppError('RESOURCE_NOT_FOUND');
      return { status: 200, body: toApiResource(found) };
    },
  });

  api.add({
    method: 'put',
    path: '/resources/{id}',
    operationId: 'updateResource',
    summary: 'Update an API (partial)',
    tag: 'Resources',
    scope: 'client:manage',
    params: idParam,
    body: UpdateResource,
    responses: { 200: { description: 'The API', schema: Resource } },
    errors: ['RESOURCE_NOT_FOUND', 'VALIDATION_ERROR', 'CONFLICT'],
    async handler({ params, body, principal, ctx }) {
      notReserved(body.identifier);
      const before = await repo.findById(params.id);
      if (!before) throw new AppError('RESOURCE_NOT_FOUND');
      const updated = await repo.update(params.id, body).catch(resourceConflict);
      if (!updated) throw new AppError('RESOURCE_NOT_FOUND');
      deps.invalidate(before.identifier);
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'resource.updated',
        target_type: 'resource',
        target_id: params.id,
        before: { ...before },
        after: { ...updated },
      });
      return { status: 200, body: toApiResource(updated) };
    },
  });

  api.add({
    method: 'delete',
    path: '/resources/{id}',
    operationId: 'deleteResource',
    summary: 'Delete an API',
    tag: 'Resources',
    scope: 'client:manage',
    params: idParam,
    responses: { 204: { description: 'Deleted' } },
    errors: ['RESOURCE_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const before = await repo.findById(params.id);
      if (!before || !(await repo.remove(params.id))) throw new AppError('RESOURCE_NOT_FOUND');
      deps.invalidate(before.identifier);
      await audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'resource.deleted',
        target_type: 'resource',
        target_id: params.id,
        before: { ...before },
        after: null,
      });
      return { status: 204 };
    },
  });
}
