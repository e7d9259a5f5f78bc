/**
 * /v2 routes of the API-key business: a user's (or service client's) API keys, plans, a user's plan
 * and usage, and the exchange of an API key for an access token (/v2/auth/token, /v2/auth/refresh).
 */
import type { Context } from 'koa';
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import { presentedToken } from '../http/dpop.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import { issueApiKeyToken } from '../oidc/api-key-grant.js';
import type { AuditService } from '../services/audit.js';
import {
  displayPrefix,
  looksLikeApiKey,
  parseAllowEntry,
  type ApiKeyService,
  type KeyOwner,
  type VerifiedKey,
} from '../services/api-keys.js';
import type { PlanService, Plan as PlanModel } from '../services/plans.js';
import type { QuotaService } from '../services/quotas.js';
import type { UserService } from '../services/users.js';
import { QUOTA_PERIODS, type ApiKeyRecord, type DurableStore } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import type { Principal } from './principal.js';
import { extra, IPV4, IPV6, isoOf, textField, timestamp, WHITESPACE, wire } from './schemas.js';
import { contextOf } from './users-routes.js';

export interface BillingRouteDeps {
  apiKeys: ApiKeyService;
  plans: PlanService;
  quotas: QuotaService;
  users: UserService;
  store: DurableStore;
  host: ProviderHost;
  audit: AuditService;
  tokenTtlS: number;
}

/* ------------------------------------------------------------------------------------------------ */
/* Schemas                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

const scopeToken = z
  .string()
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, { error: 'Not a valid scope token' });
const V4_PREFIX = '(?:0{0,2}[0-9]|0?[12][0-9]|0?3[0-2])';
const V6_PREFIX = '(?:0{0,2}[0-9]|0?[1-9][0-9]|1[01][0-9]|12[0-8])';
const ALLOW_ENTRY_PATTERN = `^[${WHITESPACE}]*(?:${IPV4}(?:/${V4_PREFIX})?|${IPV6}(?:/${V6_PREFIX})?)[${WHITESPACE}]*$`;
const ALLOW_ENTRY_RE = new RegExp(ALLOW_ENTRY_PATTERN);
const allowEntry = wire(
  z
    .string()
    .max(64)
    .refine((v) => ALLOW_ENTRY_RE.test(v) && parseAllowEntry(v) !== undefined, {
      error: 'Not an IPv4/IPv6 address or CIDR range',
    }),
  {
    type: 'string',
    maxLength: 64,
    pattern: ALLOW_ENTRY_PATTERN,
    description: 'An IPv4 or IPv6 address (no zone), or a CIDR range of one',
  },
);

const CreateApiKey = z
  .object({
    name: textField(100),
    scopes: z.array(scopeToken).max(100).optional(),
    expires_at: z.iso.datetime({ offset: true, error: 'An RFC 3339 date-time' }).nullable().optional(),
    allowed_ips: z.array(allowEntry).max(100).optional(),
    environment: z.enum(['live', 'test']).optional(),
  })
  .strict();

const ApiKey = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string().describe('The key’s public start (sk_live_<lookup id>), for recognizing it'),
  scopes: z.array(z.string()),
  allowed_ips: z.array(z.string()),
  created_at: timestamp,
  expires_at: timestamp.nullable(),
  last_used_at: timestamp.nullable(),
  revoked_at: timestamp.nullable(),
});
const NewApiKey = ApiKey.extend({
  key: z.string().describe('The API key itself; shown only in this answer'),
});

const PlanFields = {
  requests_per_hour: z.number().int().min(1).max(1_000_000_000),
  burst: z.number().int().min(1).max(10_000_000),
  quota: z.number().int().min(0).max(1_000_000_000),
  quota_period: z.enum(QUOTA_PERIODS),
  credits: z.number().int().min(0).max(1_000_000_000),
};
const planName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, {
  error: 'Lower-case letters, digits, "-" and "_", starting with a letter or digit, at most 64',
});
const CreatePlan = z.object({ name: planName, ...PlanFields }).strict();
const UpdatePlan = z
  .object({
    requests_per_hour: PlanFields.requests_per_hour.optional(),
    burst: PlanFields.burst.optional(),
    quota: PlanFields.quota.optional(),
    quota_period: PlanFields.quota_period.optional(),
    credits: PlanFields.credits.optional(),
  })
  .strict();
const Plan = z.object({
  name: z.string(),
  ...PlanFields,
  built_in: z.boolean(),
  created_at: timestamp.nullable(),
  updated_at: timestamp.nullable(),
});

const Usage = z.object({
  user_id: z.string(),
  plan: z.string(),
  period_start: timestamp,
  period_end: timestamp,
  quota: z.number().int(),
  remaining_conversations: z.number().int(),
  used: z.number().int(),
  credits: z.number().int(),
  total_messages_logged: z.number().int(),
  by_day: z.array(z.object({ date: z.string(), count: z.number().int() })),
  by_model: z.array(z.object({ model: z.string(), count: z.number().int() })),
});
const SetUsage = z
  .object({
    remaining_conversations: z.number().int().min(0).max(1_000_000_000).optional(),
    credits: z.number().int().min(0).max(1_000_000_000).optional(),
  })
  .strict()
  .refine((v) => v.remaining_conversations !== undefined || v.credits !== undefined, {
    error: 'Give remaining_conversations, credits, or both',
  });
extra(SetUsage, { minProperties: 1 });

const TokenRequest = z
  .object({
    api_key: z.string().min(1).max(200),
    grant_type: z.enum(['client_credentials', 'urn:latchkey:params:oauth:grant-type:api-key']).optional(),
  })
  .strict();
const TokenResponse = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.number().int(),
  scope: z.string(),
});

const userParam = z.object({ id: z.string().min(1).max(64) });
const userKeyParam = z.object({ id: z.string().min(1).max(64), key_id: z.string().min(1).max(64) });
const planParam = z.object({ name: z.string().min(1).max(64) });

/* ------------------------------------------------------------------------------------------------ */

export const toApiKey = (record: ApiKeyRecord) => ({
  id: record.id,
  name: record.name,
  prefix: displayPrefix(record),
  scopes: record.scopes,
  allowed_ips: record.allowed_ips,
  created_at: record.created_at.toISOString(),
  expires_at: isoOf(record.expires_at),
  last_used_at: isoOf(record.last_used_at),
  revoked_at: isoOf(record.revoked_at),
});

const toApiPlan = (plan: PlanModel) => ({
  name: plan.name,
  requests_per_hour: plan.requests_per_hour,
  burst: plan.burst,
  quota: plan.quota,
  quota_period: plan.quota_period,
  credits: plan.credits,
  built_in: plan.built_in,
  created_at: isoOf(plan.created_at),
  updated_at: isoOf(plan.updated_at),
});

function registerKeyRoutes(api: ApiRouter, deps: BillingRouteDeps, kind: 'user' | 'client'): void {
  const base = kind === 'user' ? '/users/{id}/api-keys' : '/clients/{id}/api-keys';
  const whose = kind === 'user' ? 'a user' : 'a service client';
  const notFound = kind === 'user' ? ('USER_NOT_FOUND' as const) : ('CLIENT_NOT_FOUND' as const);
  const owner = (id: string): KeyOwner => ({ type: kind, id });
  const tag = 'API keys';
  const selfNote = kind === 'user' ? ' A user may also manage their own keys with their own token.' : '';

  api.add({
    method: 'post',
    path: base,
    operationId: kind === 'user' ? 'createUserApiKey' : 'createClientApiKey',
    summary: `Create an API key of ${whose}`,
    description:
      `The key is returned once, in \`key\`; only its hash is stored. Scopes default to, and may not exceed, what the owner holds (a user's role permissions, a client's scopes).` +
      selfNote,
    tag,
    scope: 'key:manage',
    allowSelf: kind === 'user',
    params: userParam,
    body: CreateApiKey,
    responses: { 201: { description: 'The new key, with the secret', schema: NewApiKey } },
    errors: ['VALIDATION_ERROR', 'MISSING_REQUIRED_FIELD', 'BUSINESS_RULE_VIOLATION', notFound],
    async handler({ params, body, principal, ctx }) {
      const { record, key } = await deps.apiKeys.create(
        owner(params.id),
        {
          name: body.name,
          scopes: body.scopes,
          expires_at: body.expires_at ? new Date(body.expires_at) : null,
          allowed_ips: body.allowed_ips,
          environment: body.environment,
        },
        contextOf(ctx, principal),
      );
      ctx.set('Cache-Control', 'no-store');
      return {
        status: 201,
        body: { ...toApiKey(record), key },
        headers: { Location: `/v2${base.replace('{id}', params.id)}/${record.id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: base,
    operationId: kind === 'user' ? 'listUserApiKeys' : 'listClientApiKeys',
    summary: `List the API keys of ${whose}`,
    description: 'Revoked keys are listed too (with revoked_at), so their history stays visible.' + selfNote,
    tag,
    scope: 'key:manage',
    allowSelf: kind === 'user',
    params: userParam,
    responses: {
      200: { description: 'The keys, oldest first', schema: z.object({ data: z.array(ApiKey) }) },
    },
    errors: [notFound],
    async handler({ params }) {
      return { status: 200, body: { data: (await deps.apiKeys.list(owner(params.id))).map(toApiKey) } };
    },
  });

  api.add({
    method: 'get',
    path: `${base}/{key_id}`,
    operationId: kind === 'user' ? 'getUserApiKey' : 'getClientApiKey',
    summary: `Get one API key of ${whose}`,
    tag,
    scope: 'key:manage',
    allowSelf: kind === 'user',
    params: userKeyParam,
    responses: { 200: { description: 'The key (never the secret)', schema: ApiKey } },
    errors: ['API_KEY_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiKey(await deps.apiKeys.get(owner(params.id), params.key_id)) };
    },
  });

  api.add({
    method: 'delete',
    path: `${base}/{key_id}`,
    operationId: kind === 'user' ? 'revokeUserApiKey' : 'revokeClientApiKey',
    summary: `Revoke an API key of ${whose}`,
    description:
      'The key stops working at once on every instance, and so do access tokens obtained with it. Revoking a revoked key changes nothing.',
    tag,
    scope: 'key:manage',
    allowSelf: kind === 'user',
    params: userKeyParam,
    responses: { 204: { description: 'Revoked' } },
    errors: ['API_KEY_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      await deps.apiKeys.revoke(owner(params.id), params.key_id, contextOf(ctx, principal));
      return { status: 204 };
    },
  });

  api.add({
    method: 'post',
    path: `${base}/{key_id}/rotate`,
    operationId: kind === 'user' ? 'rotateUserApiKey' : 'rotateClientApiKey',
    summary: `Rotate an API key of ${whose}`,
    description:
      'Issues a new secret for the key (same id, name, scopes and allow-list); the old secret stops working at once. The new `key` is shown only in this answer.',
    tag,
    scope: 'key:manage',
    allowSelf: kind === 'user',
    params: userKeyParam,
    responses: { 200: { description: 'The key with its new secret', schema: NewApiKey } },
    errors: ['API_KEY_NOT_FOUND', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, principal, ctx }) {
      const { record, key } = await deps.apiKeys.rotate(
        owner(params.id),
        params.key_id,
        contextOf(ctx, principal),
      );
      ctx.set('Cache-Control', 'no-store');
      return { status: 200, body: { ...toApiKey(record), key } };
    },
  });
}

function registerPlanRoutes(api: ApiRouter, deps: BillingRouteDeps): void {
  const tag = 'Plans';
  api.add({
    method: 'get',
    path: '/plans',
    operationId: 'listPlans',
    summary: 'List plans',
    description: 'The built-in plans (basic, professional, enterprise) and every custom plan, by name.',
    tag,
    scope: 'plan:manage',
    responses: { 200: { description: 'Every plan', schema: z.object({ data: z.array(Plan) }) } },
    errors: [],
    async handler() {
      return { status: 200, body: { data: (await deps.plans.list()).map(toApiPlan) } };
    },
  });

  api.add({
    method: 'post',
    path: '/plans',
    operationId: 'createPlan',
    summary: 'Create a plan',
    tag,
    scope: 'plan:manage',
    body: CreatePlan,
    responses: { 201: { description: 'The new plan', schema: Plan } },
    errors: ['VALIDATION_ERROR', 'MISSING_REQUIRED_FIELD', 'CONFLICT'],
    async handler({ body, principal, ctx }) {
      const plan = await deps.plans.create(body, contextOf(ctx, principal));
      return { status: 201, body: toApiPlan(plan), headers: { Location: `/v2/plans/${plan.name}` } };
    },
  });

  api.add({
    method: 'get',
    path: '/plans/{name}',
    operationId: 'getPlan',
    summary: 'Get a plan',
    tag,
    scope: 'plan:manage',
    params: planParam,
    responses: { 200: { description: 'The plan', schema: Plan } },
    errors: ['PLAN_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiPlan(await deps.plans.get(params.name)) };
    },
  });

  api.add({
    method: 'put',
    path: '/plans/{name}',
    operationId: 'updatePlan',
    summary: 'Update a plan (partial)',
    description:
      'Changes apply to subscribers at once for the request rate; a changed quota applies from the next period (adjust the current one with PUT /v2/users/{id}/usage). Built-in plans may be changed too.',
    tag,
    scope: 'plan:manage',
    params: planParam,
    body: UpdatePlan,
    responses: { 200: { description: 'The updated plan', schema: Plan } },
    errors: ['PLAN_NOT_FOUND', 'VALIDATION_ERROR'],
    async handler({ params, body, principal, ctx }) {
      return {
        status: 200,
        body: toApiPlan(await deps.plans.update(params.name, body, contextOf(ctx, principal))),
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/plans/{name}',
    operationId: 'deletePlan',
    summary: 'Delete a plan',
    description: 'Refused (422) for built-in plans and for plans users are on.',
    tag,
    scope: 'plan:manage',
    params: planParam,
    responses: { 204: { description: 'Deleted' } },
    errors: ['PLAN_NOT_FOUND', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, principal, ctx }) {
      await deps.plans.remove(params.name, contextOf(ctx, principal));
      return { status: 204 };
    },
  });

  api.add({
    method: 'put',
    path: '/users/{id}/plan',
    operationId: 'setUserPlan',
    summary: 'Move a user to a plan',
    description:
      'The new plan’s request rate applies at once; its quota from the next period (or adjust the current one with PUT /v2/users/{id}/usage).',
    tag,
    scope: 'plan:manage',
    params: userParam,
    body: z.object({ plan: planName }).strict(),
    responses: {
      200: {
        description: 'The user’s plan',
        schema: z.object({ user_id: z.string(), plan: z.string(), updated_at: timestamp }),
      },
    },
    errors: ['USER_NOT_FOUND', 'VALIDATION_ERROR', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, body, principal, ctx }) {
      // The URL names the user; a plan the body names but nobody created is a 422, not a 404.
      const plan = await deps.plans.find(body.plan);
      if (!plan) {
        throw new AppError('BUSINESS_RULE_VIOLATION', {
          message: `There is no plan named "${body.plan}"`,
          details: [{ field: 'plan', issue: 'Unknown plan', provided: body.plan }],
        });
      }
      const user = await deps.users.setPlan(params.id, plan.name, contextOf(ctx, principal));
      return {
        status: 200,
        body: { user_id: user.id, plan: plan.name, updated_at: user.updated_at.toISOString() },
      };
    },
  });
}

function registerUsageRoutes(api: ApiRouter, deps: BillingRouteDeps): void {
  const tag = 'Usage';
  const usageOf = async (userId: string, values?: { remaining?: number; credits?: number }) => {
    const user = await deps.users.get(userId);
    const plan = await deps.plans.forUser(user);
    const owner = { type: 'user' as const, id: user.id };
    const quota = values ? await deps.quotas.set(owner, plan, values) : await deps.quotas.read(owner, plan);
    const summary = await deps.store.usage.summarize('user', user.id, quota.periodStart, quota.periodEnd);
    return {
      user_id: user.id,
      plan: plan.name,
      period_start: quota.periodStart.toISOString(),
      period_end: quota.periodEnd.toISOString(),
      quota: plan.quota,
      remaining_conversations: quota.remaining,
      used: quota.used,
      credits: quota.credits,
      total_messages_logged: summary.total,
      by_day: summary.by_day,
      by_model: summary.by_model,
    };
  };

  api.add({
    method: 'get',
    path: '/users/{id}/usage',
    operationId: 'getUserUsage',
    summary: 'A user’s usage in the current period',
    description:
      'The plan, the period, what is left of its quota and the credits, and the usage entries logged in the period (POST /api/v1/auth/log-message) per day and per model. A user may read their own usage with their own token.',
    tag,
    scope: 'user:read',
    allowSelf: true,
    params: userParam,
    responses: { 200: { description: 'Usage and quota', schema: Usage } },
    errors: ['USER_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: await usageOf(params.id) };
    },
  });

  api.add({
    method: 'put',
    path: '/users/{id}/usage',
    operationId: 'setUserUsage',
    summary: 'Adjust a user’s remaining quota or credits',
    description:
      'Sets what is left in the current period, the credits, or both (an administrator’s adjustment).',
    tag,
    scope: 'plan:manage',
    params: userParam,
    body: SetUsage,
    responses: { 200: { description: 'Usage and quota after the adjustment', schema: Usage } },
    errors: ['USER_NOT_FOUND', 'VALIDATION_ERROR'],
    async handler({ params, body, principal, ctx }) {
      const before = await usageOf(params.id);
      const after = await usageOf(params.id, {
        remaining: body.remaining_conversations,
        credits: body.credits,
      });
      await deps.audit.record({
        ...contextOf(ctx, principal).actor,
        request: contextOf(ctx, principal).request,
        action: 'user.usage_adjusted',
        target_type: 'user',
        target_id: params.id,
        before: { remaining_conversations: before.remaining_conversations, credits: before.credits },
        after: { remaining_conversations: after.remaining_conversations, credits: after.credits },
      });
      return { status: 200, body: after };
    },
  });
}

function registerAuthRoutes(api: ApiRouter, deps: BillingRouteDeps): void {
  const tag = 'Authentication';
  const issue = async (
    ctx: Context,
    principal: Principal | undefined,
    verified: VerifiedKey,
    action: string,
  ) => {
    const issued = await issueApiKeyToken(deps.host.current, verified, deps.tokenTtlS);
    await deps.audit.record({
      ...contextOf(ctx, principal).actor,
      ...(principal
        ? {}
        : {
            actor_type: verified.owner.type,
            actor_id: verified.owner.id,
            actor_client_id: verified.owner.type === 'client' ? verified.owner.id : null,
          }),
      request: contextOf(ctx, principal).request,
      action,
      target_type: 'api_key',
      target_id: verified.key.id,
      details: { token_id: issued.jti, scope: issued.scope, expires_in: issued.expires_in },
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Pragma', 'no-cache');
    const { jti: _jti, ...body } = issued;
    return body;
  };

  api.add({
    method: 'post',
    path: '/auth/token',
    operationId: 'exchangeApiKey',
    summary: 'Exchange an API key for an access token',
    description:
      'Returns an access token carrying the key’s scopes, issued by the authorization server like any other (introspectable, revocable); it stops working when the key is revoked. The same exchange is available at the token endpoint with grant_type=urn:latchkey:params:oauth:grant-type:api-key.',
    tag,
    body: TokenRequest,
    responses: { 200: { description: 'An access token', schema: TokenResponse } },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'API_KEY_INVALID',
      'API_KEY_EXPIRED',
      'IP_NOT_ALLOWED',
      'USER_INACTIVE',
    ],
    async handler({ body, principal, ctx }) {
      const verified = await deps.apiKeys.verify(body.api_key, ctx.ip);
      return { status: 200, body: await issue(ctx, principal, verified, 'api_key.token_issued') };
    },
  });

  api.add({
    method: 'post',
    path: '/auth/refresh',
    operationId: 'refreshApiKeyToken',
    summary: 'Get a fresh access token for a current one',
    description:
      'Send a current access token obtained from POST /v2/auth/token as the bearer token; the answer is a new token of the same key with the same scopes. Tokens of other grants are refreshed with their refresh token at the token endpoint.',
    tag,
    responses: { 200: { description: 'A fresh access token', schema: TokenResponse } },
    errors: ['AUTH_TOKEN_MISSING', 'AUTH_TOKEN_INVALID', 'AUTH_TOKEN_EXPIRED'],
    async handler({ principal, ctx }) {
      if (ctx.state.authError) throw ctx.state.authError as AppError;
      const presented = presentedToken(ctx)?.token;
      if (!presented || !principal) throw new AppError('AUTH_TOKEN_MISSING');
      if (looksLikeApiKey(presented) || !principal.apiKeyId) {
        throw new AppError('AUTH_TOKEN_INVALID', {
          message: 'Only access tokens obtained from POST /v2/auth/token are refreshed here',
        });
      }
      const key = await deps.store.apiKeys.findById(principal.apiKeyId);
      if (!key) throw new AppError('AUTH_TOKEN_INVALID');
      const owner = await deps.apiKeys.ownerSnapshot({ type: key.owner_type, id: key.owner_id });
      if (!owner?.active) throw new AppError('AUTH_TOKEN_INVALID');
      return { status: 200, body: await issue(ctx, principal, { key, owner }, 'api_key.token_refreshed') };
    },
  });
}

export function registerBillingRoutes(api: ApiRouter, deps: BillingRouteDeps): void {
  registerKeyRoutes(api, deps, 'user');
  registerKeyRoutes(api, deps, 'client');
  registerPlanRoutes(api, deps);
  registerUsageRoutes(api, deps);
  registerAuthRoutes(api, deps);
}
