/**
 * /api/v1/auth/*: what API gateways and app middleware call on every request of a customer's API.
 *
 * - POST /api/v1/auth/verify-key: checks an API key (known, unrevoked, unexpired, owner active,
 *   caller's address allowed), counts the request against the owner's plan rate, and takes one unit
 *   of quota atomically (`{"consume": false}` or `?consume=false` only checks). Answers with who the
 *   key belongs to and what is left.
 * - POST /api/v1/auth/log-message: records one usage entry (model, message count and size, research
 *   flag) for the key's owner; an Idempotency-Key header makes retries harmless. Message bodies are
 *   stored only when the deployment turns that on.
 */
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';

import { countRequest, enforceRate, rateWindows } from '../admin/rate-limit.js';
import { validationError } from '../admin/api-router.js';
import { AppError } from '../errors/app-error.js';
import type { VerifyKeyOutcome } from '../observability/metrics.js';
import type { ApiKeyService, VerifiedKey } from '../services/api-keys.js';
import type { PlanService } from '../services/plans.js';
import type { QuotaService } from '../services/quotas.js';
import type { CounterStore, UsageRepository } from '../store/ports.js';

export interface GatewayDeps {
  apiKeys: ApiKeyService;
  plans: PlanService;
  quotas: QuotaService;
  counters: CounterStore;
  usage: UsageRepository;
  /** Keep message bodies in usage entries (USAGE_STORE_MESSAGES). */
  storeMessages: boolean;
  onVerify?: (outcome: VerifyKeyOutcome) => void;
}

const VerifyBody = z.object({ consume: z.boolean().optional() }).strict();

const LogMessageBody = z
  .object({
    model: z.string().trim().min(1).max(200),
    messages: z
      .array(z.object({ role: z.string().min(1).max(64), content: z.string().max(1_000_000) }).strict())
      .max(10_000),
    research_model: z.boolean().optional(),
  })
  .strict();

const IDEMPOTENCY_KEY = /^[\x21-\x7E]{1,255}$/;

/** The presented key: `Authorization: Bearer <key>`, or `X-API-Key: <key>`. */
function presentedKey(ctx: Context): string {
  const header = ctx.get('Authorization');
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match)
      throw new AppError('API_KEY_INVALID', {
        message: 'The Authorization header must be "Bearer <api key>"',
      });
    return match[1]!;
  }
  const apiKey = ctx.get('X-API-Key').trim();
  if (apiKey) return apiKey;
  throw new AppError('API_KEY_MISSING');
}

function outcomeOf(err: unknown): VerifyKeyOutcome {
  if (!(err instanceof AppError)) return 'unavailable';
  switch (err.code) {
    case 'API_KEY_EXPIRED':
      return 'expired';
    case 'IP_NOT_ALLOWED':
      return 'ip_denied';
    case 'QUOTA_EXCEEDED':
      return 'quota_exceeded';
    case 'RATE_LIMIT_EXCEEDED':
      return 'rate_limited';
    case 'STORE_UNAVAILABLE':
      return 'unavailable';
    default:
      return 'invalid';
  }
}

function parseBody<T extends z.ZodType>(schema: T, ctx: Context): z.output<T> {
  // No body at all parses as {} (verify-key is usually called with none).
  const input: unknown = ctx.request.body ?? {};
  const result = schema.safeParse(input);
  if (!result.success) throw validationError(result.error, input);
  return result.data;
}

function ownerFields(verified: VerifiedKey) {
  const { key, owner } = verified;
  return {
    key_id: key.id,
    owner_type: owner.type,
    ...(owner.type === 'user' ? { user_id: owner.id } : { client_id: owner.id }),
    username: owner.username,
    email: owner.email,
    scopes: key.scopes,
  };
}

export function gatewayRouter(deps: GatewayDeps): Router {
  const router = new Router({ prefix: '/api/v1/auth' });
  router.use(bodyParser({ enableTypes: ['json'], jsonLimit: '8mb', encoding: 'utf-8' }));
  router.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    await next();
  });

  const ownerSubject = (verified: VerifiedKey) => `key-owner:${verified.owner.type}:${verified.owner.id}`;

  router.post('/verify-key', async (ctx) => {
    try {
      const body = parseBody(VerifyBody, ctx);
      const consume = body.consume ?? ctx.query.consume !== 'false';
      const verified = await deps.apiKeys.verify(presentedKey(ctx), ctx.ip);
      const plan = await deps.plans.forUser({ plan: verified.owner.plan });
      const owner = { type: verified.owner.type, id: verified.owner.id };
      // The rate count and the quota step in one store operation (one Redis round trip).
      const admitted = await deps.quotas.admit(
        owner,
        plan,
        consume ? 1 : 0,
        rateWindows(ownerSubject(verified), plan),
      );
      enforceRate(ctx, plan, admitted.windows);
      const quota = admitted.quota!;
      if (!quota.granted) {
        const retryAfter = Math.max(
          1,
          Math.ceil((quota.periodEnd.getTime() - deps.quotas.now().getTime()) / 1000),
        );
        throw new AppError('QUOTA_EXCEEDED', {
          message: `The ${plan.quota_period}ly quota of ${plan.quota} of the ${plan.name} plan is used up, and no credits are left`,
          retryAfter,
          extra: { resets_at: quota.periodEnd.toISOString() },
        });
      }
      ctx.body = {
        valid: true,
        ...ownerFields(verified),
        plan: plan.name,
        remaining_conversations: quota.remaining,
        credits: quota.credits,
        resets_at: quota.periodEnd.toISOString(),
      };
      deps.onVerify?.('ok');
    } catch (err) {
      deps.onVerify?.(outcomeOf(err));
      throw err;
    }
  });

  router.post('/log-message', async (ctx) => {
    const body = parseBody(LogMessageBody, ctx);
    const idempotencyKey = ctx.get('Idempotency-Key') || null;
    if (idempotencyKey !== null && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw new AppError('VALIDATION_ERROR', {
        details: [{ field: 'Idempotency-Key', issue: 'Must be 1 to 255 visible ASCII characters' }],
      });
    }
    const verified = await deps.apiKeys.verify(presentedKey(ctx), ctx.ip);
    const plan = await deps.plans.forUser({ plan: verified.owner.plan });
    await countRequest(ctx, deps.counters, ownerSubject(verified), plan);
    const { entry, duplicate } = await deps.usage.record({
      owner_type: verified.owner.type,
      owner_id: verified.owner.id,
      key_id: verified.key.id,
      model: body.model,
      message_count: body.messages.length,
      characters: body.messages.reduce((sum, m) => sum + m.content.length, 0),
      research_model: body.research_model ?? false,
      messages: deps.storeMessages ? body.messages : null,
      idempotency_key: idempotencyKey,
      created_at: deps.quotas.now(),
    });
    ctx.status = duplicate ? 200 : 201;
    ctx.body = {
      id: entry.id,
      recorded: !duplicate,
      duplicate,
      model: entry.model,
      message_count: entry.message_count,
      characters: entry.characters,
      research_model: entry.research_model,
      key_id: entry.key_id,
      ...(entry.owner_type === 'user' ? { user_id: entry.owner_id } : { client_id: entry.owner_id }),
      created_at: entry.created_at.toISOString(),
    };
  });

  return router;
}
