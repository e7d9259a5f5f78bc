/**
 * /v1/authorize and /v1/authorize/batch: policy decisions for applications (shared/API.md, "Policy
 * decision"). The caller presents a bearer access token: one holding `policy:evaluate` may ask about
 * any principal, a user's own token only about that user. Answers are decisions, never 5xx for a
 * policy's fault: an evaluation error is a Deny carrying the error in its diagnostics.
 *
 * Who a token stands for is kept for POLICY_DECISION_CACHE_TTL_S (never past the token's expiry) by
 * the token's SHA-256, as forward auth does; tokens minted from an API key are checked every time. A
 * revoked token or grant and a changed user (their status, roles or linked roles) are announced on
 * the event bus and dropped on every instance; a changed role's permissions drop every user's
 * entry; a changed or deleted client drops its tokens' entries on the instance that changed it (other
 * instances read clients from their own cache for CLIENT_CACHE_TTL_S, 5 s, in any case).
 */
import Router from '@koa/router';
import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import type { z } from 'zod';

import { validationError } from '../admin/api-router.js';
import type { Authenticated, BearerAuthenticator } from '../admin/bearer-auth.js';
import type { Principal } from '../admin/principal.js';
import type { RouteSpec } from '../admin/api-router.js';
import {
  AuthorizeBatchRequest,
  AuthorizeBatchResponse,
  AuthorizeDecision,
  AuthorizeRequest,
} from '../admin/schemas.js';
import { requestFacts } from '../admin/users-routes.js';
import { AppError } from '../errors/app-error.js';
import {
  dpopChallenge,
  DPoPRefusal,
  presentedToken,
  usesDPoPScheme,
  type DPoPPresentation,
} from '../http/dpop.js';
import { jsonBody } from '../http/json-body.js';
import {
  EVALUATE_SCOPE,
  POLICY_INPUTS_CHANNEL,
  type AuthorizeCheck,
  type PolicyService,
} from '../services/policies.js';
import type { EventBus } from '../store/ports.js';
import { TOKEN_REVOCATIONS_CHANNEL, type Revoked } from './forward-auth.js';

export interface AuthorizeRouterDeps {
  policies: PolicyService;
  authenticator: Pick<BearerAuthenticator, 'authenticateToken'>;
  /** Checks how a token is presented: a DPoP-bound one only with its proof. */
  dpop: DPoPPresentation;
  issuer: string;
  /** Where revocations and changed users and roles are heard (to drop kept callers). */
  events?: EventBus;
  /** POLICY_DECISION_CACHE_TTL_S in milliseconds: how long a token's caller is kept (0: not). */
  cacheTtlMs?: number;
  now?: () => number;
}

/** What drops kept callers: a revocation, a changed client, or a change of every user's roles. */
export type CallerChange = Revoked & { client?: string; everyUser?: boolean };

const MAX_CALLERS = 50_000;

/** The callers of recently seen tokens, by token digest. */
class CallerCache {
  private readonly entries = new Map<string, Authenticated & { until: number }>();
  /** Bumped by every drop; a check stores its result only if none came while it ran. */
  private drops = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  mark(): number {
    return this.drops;
  }

  get(digest: string): Authenticated | undefined {
    const entry = this.entries.get(digest);
    if (!entry) return undefined;
    if (entry.until <= this.now()) {
      this.entries.delete(digest);
      return undefined;
    }
    return entry;
  }

  set(digest: string, found: Authenticated, mark: number): void {
    if (this.ttlMs <= 0 || mark !== this.drops || found.principal.apiKeyId !== undefined) return;
    const until = Math.min(this.now() + this.ttlMs, found.expiresAt ?? Number.POSITIVE_INFINITY);
    if (this.entries.size >= MAX_CALLERS) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(digest, { ...found, until });
  }

  drop(change: CallerChange): void {
    this.drops += 1;
    for (const [digest, { principal, grantId }] of this.entries) {
      if (
        (change.jti !== undefined && principal.tokenId === change.jti) ||
        (change.grant !== undefined && grantId === change.grant) ||
        (change.user !== undefined && principal.userId === change.user) ||
        (change.client !== undefined && principal.clientId === change.client) ||
        (change.everyUser === true && principal.kind === 'user')
      ) {
        this.entries.delete(digest);
      }
    }
  }

  clear(): void {
    this.drops += 1;
    this.entries.clear();
  }
}

function parse<T extends z.ZodType>(schema: T, ctx: Context): z.output<T> {
  const body: unknown = ctx.request.body;
  if (!ctx.is('application/json')) throw new AppError('UNSUPPORTED_MEDIA_TYPE');
  if (body === undefined)
    throw new AppError('MISSING_REQUIRED_FIELD', { message: 'A JSON body is required' });
  const result = schema.safeParse(body);
  if (!result.success) throw validationError(result.error, body);
  return result.data;
}

export function authorizeRouter(
  deps: AuthorizeRouterDeps,
): Router & { forget(change: CallerChange): void; close(): void } {
  const router = new Router({ prefix: '/v1/authorize' });
  const realm = `realm="${deps.issuer}"`;
  const callers = new CallerCache(deps.cacheTtlMs ?? 0, deps.now ?? Date.now);
  const unsubscribe =
    deps.events && (deps.cacheTtlMs ?? 0) > 0
      ? [
          deps.events.subscribe(TOKEN_REVOCATIONS_CHANNEL, (message) => {
            try {
              callers.drop(JSON.parse(message) as Revoked);
            } catch {
              // Not ours to read: forget everything rather than keep what it may have named.
              callers.clear();
            }
          }),
          // A user's roles changed (their id), or roles were created, changed or deleted (`*`).
          deps.events.subscribe(POLICY_INPUTS_CHANNEL, (message) =>
            callers.drop(message === '*' ? { everyUser: true } : { user: message }),
          ),
        ]
      : [];

  /** Who the token stands for: kept, or checked (and kept for the cache period). */
  async function authenticate(token: string): Promise<Authenticated> {
    const digest = createHash('sha256').update(token).digest('base64url');
    const kept = callers.get(digest);
    if (kept) return kept;
    const mark = callers.mark();
    const found = await deps.authenticator.authenticateToken(token);
    callers.set(digest, found, mark);
    return found;
  }

  /** The caller, or a 401 with its RFC 6750 (or RFC 9449) challenge. */
  async function caller(ctx: Context): Promise<Principal> {
    try {
      const presented = presentedToken(ctx);
      if (!presented) throw new AppError('AUTH_TOKEN_MISSING');
      const found = await authenticate(presented.token);
      // Every request's proof is checked, a kept caller's too: a proof is good for one request.
      await deps.dpop.check(presented, found.jkt, {
        proof: ctx.get('DPoP') || undefined,
        method: ctx.method,
        url: `${deps.issuer.replace(/\/+$/, '')}${ctx.path}`,
      });
      return found.principal;
    } catch (err) {
      if (err instanceof AppError && err.status === 401) {
        ctx.set(
          'WWW-Authenticate',
          err instanceof DPoPRefusal || usesDPoPScheme(ctx)
            ? dpopChallenge(deps.issuer, err)
            : err.code === 'AUTH_TOKEN_MISSING'
              ? `Bearer ${realm}`
              : `Bearer ${realm}, error="invalid_token", error_description="${err.message.replace(/"/g, "'")}"`,
        );
      }
      throw err;
    }
  }

  const insufficient = (ctx: Context, err: unknown) => {
    if (err instanceof AppError && err.code === 'AUTH_INSUFFICIENT_SCOPE') {
      ctx.set('WWW-Authenticate', `Bearer ${realm}, error="insufficient_scope", scope="${EVALUATE_SCOPE}"`);
    }
    return err;
  };

  /**
   * The caller, refused before its body is read when it can never ask: a client's token without
   * policy:evaluate (only a user's own token may ask without it, and only about that user).
   */
  async function asker(ctx: Context): Promise<Principal> {
    const principal = await caller(ctx);
    if (principal.kind !== 'user' && !principal.scopes.has(EVALUATE_SCOPE)) {
      throw insufficient(
        ctx,
        new AppError('AUTH_INSUFFICIENT_SCOPE', {
          message: `A client's token needs the scope "${EVALUATE_SCOPE}" to ask for decisions`,
          requiredScope: EVALUATE_SCOPE,
        }),
      );
    }
    return principal;
  }

  async function decide(ctx: Context, checks: AuthorizeCheck[], principal: Principal) {
    try {
      return await deps.policies.authorize(checks, principal, requestFacts(ctx));
    } catch (err) {
      throw insufficient(ctx, err);
    }
  }

  const body = jsonBody({ limit: 1024 * 1024 });

  router.post('/', body, async (ctx) => {
    const principal = await asker(ctx);
    const check = parse(AuthorizeRequest, ctx) as AuthorizeCheck;
    const [decision] = await decide(ctx, [check], principal);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = decision;
  });

  router.post('/batch', body, async (ctx) => {
    const principal = await asker(ctx);
    const { requests } = parse(AuthorizeBatchRequest, ctx);
    const results = await decide(ctx, requests as AuthorizeCheck[], principal);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { results };
  });

  return Object.assign(router, {
    forget: (change: CallerChange) => callers.drop(change),
    close: () => {
      for (const stop of unsubscribe) stop();
      callers.clear();
    },
  });
}

const servedAbove = async (): Promise<never> => {
  throw new Error('served by authorizeRouter, listed here for the OpenAPI document only');
};

const ASKING =
  'A bearer access token with `policy:evaluate` may ask about any principal; a user’s own token (no scope needed) only about that user, otherwise 403. Evaluation errors are a Deny with the error in diagnostics.errors, never a 5xx.';

/** The decision endpoints as the OpenAPI document shows them (served by authorizeRouter above). */
export const DECISION_ROUTES: RouteSpec[] = [
  {
    method: 'post',
    prefix: '/v1',
    path: '/authorize',
    operationId: 'authorize',
    summary: 'Ask for a policy decision',
    description: `May \`principal\` do \`action\` on \`resource\`? Decided by the Cedar policies of /v2/policies. ${ASKING}`,
    tag: 'Policy decisions',
    scope: 'policy:evaluate',
    body: AuthorizeRequest,
    responses: { 200: { description: 'The decision', schema: AuthorizeDecision } },
    errors: ['MISSING_REQUIRED_FIELD', 'UNSUPPORTED_MEDIA_TYPE'],
    handler: servedAbove,
  },
  {
    method: 'post',
    prefix: '/v1',
    path: '/authorize/batch',
    operationId: 'authorizeBatch',
    summary: 'Ask for up to 100 policy decisions',
    description: `The checks are decided in order; more than 100 is a 400. Refused as a whole (403) when the caller may not ask about one of the principals. ${ASKING}`,
    tag: 'Policy decisions',
    scope: 'policy:evaluate',
    body: AuthorizeBatchRequest,
    responses: {
      200: { description: 'The decisions, in the order of the checks', schema: AuthorizeBatchResponse },
    },
    errors: ['MISSING_REQUIRED_FIELD', 'UNSUPPORTED_MEDIA_TYPE'],
    handler: servedAbove,
  },
];
