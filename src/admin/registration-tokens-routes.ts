/**
 * /v2/clients/registration-tokens: initial access tokens for dynamic client registration
 * (RFC 7591 §3, POST /oauth/register). A token is shown once, when created; only its digest is kept.
 */
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import type { DynamicRegistration } from '../services/dynamic-registration.js';
import type { RegistrationTokenRecord } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import { isoOf, offsetPagination, pageQuery, Pagination, plainText, timestamp } from './schemas.js';
import { contextOf } from './users-routes.js';

const DAY_S = 86_400;

const CreateToken = z
  .object({
    description: plainText(200, 'What the token is for (who it was given to)').optional(),
    expires_in: z
      .number()
      .int()
      .min(60)
      .max(90 * DAY_S)
      .default(DAY_S)
      .describe('Seconds until the token stops working, 60 to 7776000 (default one day)'),
  })
  .strict();

const Token = z.object({
  id: z.string(),
  description: z.string().nullable(),
  created_by: z.string().nullable(),
  created_at: timestamp,
  expires_at: timestamp,
  expired: z.boolean(),
  last_used_at: timestamp.nullable(),
  clients_registered: z.number().int().describe('How many clients were registered with the token'),
});
const TokenWithSecret = Token.extend({
  token: z.string().describe('Only in the response that created it: hand it to the registrant now'),
});

function toApiToken(record: RegistrationTokenRecord, token?: string) {
  return {
    id: record.id,
    description: record.description,
    created_by: record.created_by,
    created_at: record.created_at.toISOString(),
    expires_at: isoOf(record.expires_at),
    expired: record.expires_at !== null && record.expires_at.getTime() <= Date.now(),
    last_used_at: isoOf(record.last_used_at),
    clients_registered: record.use_count,
    ...(token ? { token } : {}),
  };
}

export function registerRegistrationTokenRoutes(api: ApiRouter, registration: DynamicRegistration): void {
  const note =
    registration.mode === 'initial_access_token'
      ? ''
      : ` This server runs with DYNAMIC_REGISTRATION=${registration.mode}: ${registration.mode === 'off' ? 'the tokens are accepted once registration is on' : 'registration needs no token, though a presented one is checked'}.`;

  api.add({
    method: 'post',
    path: '/clients/registration-tokens',
    operationId: 'createRegistrationToken',
    summary: 'Create an initial access token for dynamic client registration',
    description: `The token (in \`token\`, shown only here) lets its holder register OAuth clients at POST /oauth/register (RFC 7591) until it expires or is revoked. Registered clients are never first-party and may ask only for the OpenID Connect scopes.${note}`,
    tag: 'Clients',
    scope: 'client:manage',
    body: CreateToken,
    bodyOptional: true,
    responses: { 201: { description: 'The token, once', schema: TokenWithSecret } },
    errors: ['VALIDATION_ERROR'],
    async handler({ body, principal, ctx }) {
      const { actor, request } = contextOf(ctx, principal);
      const issued = await registration.createInitialAccessToken(body, { actor, request });
      return {
        status: 201,
        body: toApiToken(issued.record, issued.token),
        headers: { Location: `/v2/clients/registration-tokens/${issued.record.id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/clients/registration-tokens',
    operationId: 'listRegistrationTokens',
    summary: 'List initial access tokens (never the tokens themselves)',
    tag: 'Clients',
    scope: 'client:manage',
    query: z.object({ limit: pageQuery.limit, offset: pageQuery.offset }),
    responses: {
      200: {
        description: 'Newest first, expired ones included',
        schema: z.object({ data: z.array(Token), pagination: Pagination }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const [rows, total] = await Promise.all([
        registration.listInitialAccessTokens({ limit: query.limit, offset: query.offset }),
        registration.countInitialAccessTokens(),
      ]);
      return {
        status: 200,
        body: {
          data: rows.map((r) => toApiToken(r)),
          pagination: offsetPagination(total, query.limit, query.offset, rows.length),
        },
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/clients/registration-tokens/{id}',
    operationId: 'revokeRegistrationToken',
    summary: 'Revoke an initial access token',
    description: 'The token stops working at once; clients registered with it stay.',
    tag: 'Clients',
    scope: 'client:manage',
    params: z.object({ id: z.string().min(1).max(64) }),
    responses: { 204: { description: 'Revoked' } },
    errors: ['REGISTRATION_TOKEN_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const { actor, request } = contextOf(ctx, principal);
      if (!(await registration.revokeInitialAccessToken(params.id, { actor, request })))
        throw new AppError('REGISTRATION_TOKEN_NOT_FOUND');
      return { status: 204 };
    },
  });
}
