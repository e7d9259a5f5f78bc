/**
 * requirePermission: Express and Koa middleware asking Latchkey (`POST /v1/authorize`) whether the
 * request's caller may do `action` on the resource the request names, after one of the
 * authentication middleware (latchkeyExpress / latchkeyKoa) has put the caller in `latchkey`. An
 * Allow continues; a Deny is answered 403 here; a failed call is the app's error (fail closed).
 */
import type { LatchkeyIdentity } from '../authenticate.js';
import type { LatchkeyClient } from '../client.js';
import type { AuthorizeDecision, EntityRef } from '../types.js';

export interface PermissionOptions<R> {
  /** The principal to ask about; default `User::"<identity subject>"`. */
  principalFrom?: (req: R, identity: LatchkeyIdentity) => EntityRef;
  /** The Cedar context of the check (an address, the time, ...). */
  contextFrom?: (req: R) => Record<string, unknown>;
  /** Ask with the caller's own token instead of the client's (it may ask only about itself). */
  useCallerToken?: boolean;
}

export type ResourceFrom<R> = (req: R) => EntityRef;

const FORBIDDEN = (action: string) => ({
  error: { code: 'FORBIDDEN', message: `Not permitted: ${action}` },
});

async function ask<R>(
  client: LatchkeyClient,
  action: string,
  resourceFrom: ResourceFrom<R>,
  options: PermissionOptions<R>,
  req: R,
  identity: LatchkeyIdentity,
  authorization: string | undefined,
): Promise<AuthorizeDecision> {
  const principal = options.principalFrom?.(req, identity) ?? { type: 'User', id: identity.subject };
  const token = options.useCallerToken ? /^Bearer\s+(\S+)/i.exec(authorization ?? '')?.[1] : undefined;
  return client.authorize(
    {
      principal,
      action: { type: 'Action', id: action },
      resource: resourceFrom(req),
      ...(options.contextFrom ? { context: options.contextFrom(req) } : {}),
    },
    token ? { token } : {},
  );
}

/** The parts of Express's request and response used here. */
export interface PermissionExpressRequest {
  headers: Record<string, string | string[] | undefined>;
  latchkey?: LatchkeyIdentity;
  /** Set to the decision on Allow. */
  permission?: AuthorizeDecision;
}

export interface PermissionExpressResponse {
  status(code: number): unknown;
  json(body: unknown): unknown;
}

export function requirePermission<R extends PermissionExpressRequest>(
  client: LatchkeyClient,
  action: string,
  resourceFrom: ResourceFrom<R>,
  options: PermissionOptions<R> = {},
) {
  return (req: R, res: PermissionExpressResponse, next: (err?: unknown) => void): void => {
    const identity = req.latchkey;
    if (!identity) {
      res.status(401);
      res.json({ error: { code: 'AUTH_TOKEN_MISSING', message: 'Authenticate the request first' } });
      return;
    }
    const header = req.headers.authorization;
    ask(client, action, resourceFrom, options, req, identity, Array.isArray(header) ? header[0] : header)
      .then((decision) => {
        if (decision.decision !== 'Allow') {
          res.status(403);
          res.json(FORBIDDEN(action));
          return;
        }
        req.permission = decision;
        next();
      })
      .catch(next);
  };
}

/** The part of a Koa context used here. */
export interface PermissionKoaContext {
  get(field: string): string;
  status: number;
  body: unknown;
  state: { latchkey?: LatchkeyIdentity; permission?: AuthorizeDecision };
}

export function requirePermissionKoa<C extends PermissionKoaContext>(
  client: LatchkeyClient,
  action: string,
  resourceFrom: ResourceFrom<C>,
  options: PermissionOptions<C> = {},
) {
  return async (ctx: C, next: () => Promise<unknown>): Promise<void> => {
    const identity = ctx.state.latchkey;
    if (!identity) {
      ctx.status = 401;
      ctx.body = { error: { code: 'AUTH_TOKEN_MISSING', message: 'Authenticate the request first' } };
      return;
    }
    const decision = await ask(
      client,
      action,
      resourceFrom,
      options,
      ctx,
      identity,
      ctx.get('authorization'),
    );
    if (decision.decision !== 'Allow') {
      ctx.status = 403;
      ctx.body = FORBIDDEN(action);
      return;
    }
    ctx.state.permission = decision;
    await next();
  };
}
