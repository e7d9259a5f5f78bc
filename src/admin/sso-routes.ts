/** /v2/sso: single sign-on connections to upstream identity providers (scope sso:manage). */
import { z } from 'zod';

import type { SsoConnections } from '../sso/connections.js';
import { SSO_PROVIDERS, type SsoConnection } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import { chars, named, timestamp, uriField, WEB_URI_PATTERN, wire } from './schemas.js';
import { contextOf } from './users-routes.js';

export const toApiConnection = (c: SsoConnection) => ({
  id: c.id,
  provider: c.provider,
  domain: c.domains[0] ?? null,
  domains: c.domains,
  issuer: c.issuer,
  client_id: c.client_id,
  has_client_secret: c.client_secret_encrypted !== null,
  scopes: c.scopes,
  metadata_url: c.metadata_url,
  has_metadata_xml: c.metadata_xml !== null,
  auto_provision: c.auto_provision,
  default_role: c.default_role,
  attribute_mapping: c.attribute_mapping,
  enabled: c.enabled,
  login_url: `/sso/login/${c.id}`,
  created_at: c.created_at.toISOString(),
  updated_at: c.updated_at.toISOString(),
});

const provider = z
  .enum(SSO_PROVIDERS)
  .describe('azure_ad, okta, google_workspace and auth0 speak OIDC when `issuer` is given, SAML otherwise');

const SsoConnectionSchema = named(
  'SsoConnection',
  z.object({
    id: z.string(),
    provider,
    domain: z.string().nullable().describe('The first of `domains`'),
    domains: z.array(z.string()),
    issuer: z.string().nullable(),
    client_id: z.string().nullable(),
    has_client_secret: z.boolean().describe('Whether a client secret is stored (it is never returned)'),
    scopes: z.array(z.string()),
    metadata_url: z.string().nullable(),
    has_metadata_xml: z.boolean(),
    auto_provision: z.boolean(),
    default_role: z.string().nullable(),
    attribute_mapping: z.record(z.string(), z.string()),
    enabled: z.boolean(),
    login_url: z.string().describe('Where a browser starts signing in through this connection'),
    created_at: timestamp,
    updated_at: timestamp,
  }),
);

const DOMAIN_PATTERN = '^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$';
const DOMAIN = new RegExp(DOMAIN_PATTERN);
// The OpenAPI document states the whole rule (length and pattern): a refinement after chars() would
// hide chars()'s minLength from it, and clients (Schemathesis) would send "" as valid.
const domain = wire(
  z
    .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Must be a string') })
    .refine((d) => d.length >= 1 && d.length <= 253 && DOMAIN.test(d), {
      error: 'An e-mail domain such as company.com',
    }),
  { type: 'string', minLength: 1, maxLength: 253, pattern: DOMAIN_PATTERN },
);
const MAPPED_FIELD_PATTERN = '^(email|first_name|last_name|metadata\\.[A-Za-z0-9_-]{1,64})$';
const MAPPED_FIELD = new RegExp(MAPPED_FIELD_PATTERN);
// Stated whole in the OpenAPI document (key pattern, value length, count): a record of refined keys
// would show no rule for its keys.
const attributeMapping = wire(
  z
    .record(
      z
        .string()
        .refine((k) => MAPPED_FIELD.test(k), { error: 'email, first_name, last_name or metadata.<key>' }),
      chars(1, 500),
    )
    .refine((m) => Object.keys(m).length <= 50, { error: 'At most 50 mapped attributes' }),
  {
    type: 'object',
    propertyNames: { type: 'string', pattern: MAPPED_FIELD_PATTERN },
    additionalProperties: { type: 'string', minLength: 1, maxLength: 500 },
    maxProperties: 50,
    description:
      'Our field (email, first_name, last_name, metadata.<key>) → the upstream claim or attribute name',
  },
);

const fields = {
  provider,
  domain: domain.optional(),
  domains: z.array(domain).max(50).optional(),
  issuer: uriField(WEB_URI_PATTERN, 'The issuer URL of the upstream OpenID provider').nullable().optional(),
  client_id: chars(1, 500).nullable().optional(),
  client_secret: chars(1, 2000).nullable().optional().describe('Stored encrypted, never returned'),
  scopes: z.array(chars(1, 200)).max(30).optional(),
  metadata_url: uriField(WEB_URI_PATTERN, 'The URL of the IdP’s SAML metadata').nullable().optional(),
  metadata_xml: chars(1, 500_000).nullable().optional(),
  auto_provision: z.boolean().optional(),
  default_role: chars(1, 100).nullable().optional(),
  attribute_mapping: attributeMapping.optional(),
  enabled: z.boolean().optional(),
};

const CreateConnection = z.object(fields).strict();
const UpdateConnection = z.object({ ...fields, provider: provider.optional() }).strict();
const Configure = z.object({ ...fields, domain }).strict();

const idParam = z.object({ id: z.string().min(1).max(64) });

export function registerSsoRoutes(api: ApiRouter, connections: SsoConnections): void {
  api.add({
    method: 'post',
    path: '/sso/configure',
    operationId: 'configureSso',
    summary: 'Create or replace the connection of a domain',
    description:
      'The connection serving `domain` is replaced by this configuration (fields not given return to their defaults; its other domains stay), or created when the domain has none. OIDC connections need `issuer` and `client_id` (and usually `client_secret`); SAML connections need `metadata_url` or `metadata_xml` (our SP metadata is then at /sso/saml/{id}/metadata).',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    body: Configure,
    responses: {
      200: { description: 'The replaced connection', schema: SsoConnectionSchema },
      201: { description: 'The created connection', schema: SsoConnectionSchema },
    },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'BUSINESS_RULE_VIOLATION',
      'INVALID_ROLE',
      'SSO_DOMAIN_TAKEN',
    ],
    async handler({ body, principal, ctx }) {
      const { connection, created } = await connections.configure(body, contextOf(ctx, principal));
      return {
        status: created ? 201 : 200,
        body: toApiConnection(connection),
        ...(created ? { headers: { Location: `/v2/sso/connections/${connection.id}` } } : {}),
      };
    },
  });

  api.add({
    method: 'post',
    path: '/sso/connections',
    operationId: 'createSsoConnection',
    summary: 'Create a single sign-on connection',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    body: CreateConnection,
    responses: { 201: { description: 'The connection', schema: SsoConnectionSchema } },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'BUSINESS_RULE_VIOLATION',
      'INVALID_ROLE',
      'SSO_DOMAIN_TAKEN',
    ],
    async handler({ body, principal, ctx }) {
      const connection = await connections.create(body, contextOf(ctx, principal));
      return {
        status: 201,
        body: toApiConnection(connection),
        headers: { Location: `/v2/sso/connections/${connection.id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/sso/connections',
    operationId: 'listSsoConnections',
    summary: 'List single sign-on connections',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    responses: {
      200: {
        description: 'Every connection, oldest first',
        schema: z.object({ data: z.array(SsoConnectionSchema) }),
      },
    },
    errors: [],
    async handler() {
      return { status: 200, body: { data: (await connections.list()).map(toApiConnection) } };
    },
  });

  api.add({
    method: 'get',
    path: '/sso/connections/{id}',
    operationId: 'getSsoConnection',
    summary: 'Get a single sign-on connection',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    params: idParam,
    responses: { 200: { description: 'The connection', schema: SsoConnectionSchema } },
    errors: ['SSO_CONNECTION_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiConnection(await connections.get(params.id)) };
    },
  });

  api.add({
    method: 'put',
    path: '/sso/connections/{id}',
    operationId: 'updateSsoConnection',
    summary: 'Update a single sign-on connection (partial)',
    description:
      'Given `domain` or `domains` replace the connection’s domains; `client_secret: null` removes the secret.',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    params: idParam,
    body: UpdateConnection,
    responses: { 200: { description: 'The updated connection', schema: SsoConnectionSchema } },
    errors: [
      'SSO_CONNECTION_NOT_FOUND',
      'VALIDATION_ERROR',
      'BUSINESS_RULE_VIOLATION',
      'INVALID_ROLE',
      'SSO_DOMAIN_TAKEN',
    ],
    async handler({ params, body, principal, ctx }) {
      return {
        status: 200,
        body: toApiConnection(await connections.update(params.id, body, contextOf(ctx, principal))),
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/sso/connections/{id}',
    operationId: 'deleteSsoConnection',
    summary: 'Delete a single sign-on connection',
    description: 'Users signed up through it stay, but lose the link to their upstream identity.',
    tag: 'Single sign-on',
    scope: 'sso:manage',
    params: idParam,
    responses: { 200: { description: 'Deleted', schema: z.object({ message: z.string() }) } },
    errors: ['SSO_CONNECTION_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      await connections.remove(params.id, contextOf(ctx, principal));
      return { status: 200, body: { message: 'Connection deleted' } };
    },
  });
}
