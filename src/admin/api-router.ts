/**
 * How a management-API route is declared: one object carries its path, scope, zod schemas for path
 * parameters, query, body and every response, the error codes it may answer, and the handler. The
 * same declaration registers the Koa route (validating input, checking the scope, and shaping the
 * output through the response schema, so nothing undeclared ever leaves) and produces the route's
 * OpenAPI operation (openapi.ts).
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';

import { AppError, type ErrorDetail } from '../errors/app-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { requireScope } from './bearer-auth.js';
import type { Principal } from './principal.js';

export interface ResponseSpec {
  description: string;
  schema?: z.ZodType;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

type AnyObject = z.ZodType<Record<string, unknown>>;

export interface RouteSpec<
  P extends AnyObject = AnyObject,
  Q extends AnyObject = AnyObject,
  B extends z.ZodType = z.ZodType,
> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI-style path below /v2, for example `/users/{id}`. */
  path: string;
  /** Where the path is mounted in the document, when not below /v2 (documented-only routes). */
  prefix?: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** The scope the caller's token must hold; undefined for a public route. */
  scope?: string;
  /**
   * The user named by the `{id}` path parameter may call the route with their own token, without
   * the scope (their own API keys, usage).
   */
  allowSelf?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** The body may be left out altogether (no bytes at all): it is then read as `{}`. */
  bodyOptional?: boolean;
  responses: Record<number, ResponseSpec>;
  /** Error codes this route answers besides the ones every authenticated route may. */
  errors: ErrorCode[];
  handler(input: {
    params: z.output<P>;
    query: z.output<Q>;
    body: z.output<B>;
    principal: Principal | undefined;
    ctx: Context;
  }): Promise<Reply>;
}

/** The input a Koa request gives, for a zod issue path, so a detail can say what was provided. */
function provided(input: unknown, path: PropertyKey[]): unknown {
  let value: unknown = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

const SECRET_FIELD = /password|secret|token|key$/i;

/** Turns zod issues into the envelope's details, never echoing secrets. */
export function detailsOf(error: z.ZodError, input: unknown, prefix = ''): ErrorDetail[] {
  return error.issues.flatMap((issue) => {
    // A strict object names every unknown key in one issue at the object's own path; a client needs
    // to know which of its fields was refused, so each key becomes a detail of its own.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        field: [prefix, ...issue.path.map(String), key].filter(Boolean).join('.'),
        issue: 'Unknown field',
      }));
    }
    const field = [prefix, ...issue.path.map(String)].filter(Boolean).join('.') || '(body)';
    const value = provided(input, issue.path);
    const detail: ErrorDetail = { field, issue: issue.message };
    if (value !== undefined && !SECRET_FIELD.test(field) && (typeof value !== 'object' || value === null)) {
      detail.provided = value;
    }
    return detail;
  });
}

function isMissing(error: z.ZodError, input: unknown): boolean {
  return error.issues.every(
    (issue) => issue.code === 'invalid_type' && provided(input, issue.path) === undefined,
  );
}

export function validationError(error: z.ZodError, input: unknown, prefix = ''): AppError {
  const details = detailsOf(error, input, prefix);
  return isMissing(error, input)
    ? new AppError('MISSING_REQUIRED_FIELD', { details })
    : new AppError('VALIDATION_ERROR', { details });
}

function parse<T extends z.ZodType>(schema: T | undefined, input: unknown, prefix: string): z.output<T> {
  if (!schema) return undefined as z.output<T>;
  const result = schema.safeParse(input);
  if (!result.success) throw validationError(result.error, input, prefix);
  return result.data;
}

/**
 * Query parameters a route does not declare are refused, by name: a misspelt or injection-shaped
 * parameter (`email[$ne]=x`) silently ignored would return more than its sender meant to ask for.
 */
function refuseUnknownQuery(schema: z.ZodType | undefined, query: Record<string, unknown>): void {
  const known = schema instanceof z.ZodObject ? new Set(Object.keys(schema.shape)) : new Set<string>();
  const unknown = Object.keys(query).filter((name) => !known.has(name));
  if (unknown.length === 0) return;
  throw new AppError('VALIDATION_ERROR', {
    message: `Unknown query parameter${unknown.length > 1 ? 's' : ''}: ${unknown
      .map((n) => n.slice(0, 64))
      .join(', ')}`,
    details: unknown.map((name) => ({ field: name.slice(0, 64), issue: 'Unknown query parameter' })),
  });
}

/** `/users/{id}` → `/users/:id` */
export const koaPath = (path: string) => path.replace(/\{(\w+)\}/g, ':$1');

export class ApiRouter {
  readonly router = new Router();
  readonly routes: RouteSpec[] = [];

  constructor(private readonly log?: { error(obj: object, msg: string): void }) {}

  /** Whether another route has this URL with a literal segment where `spec` has a parameter. */
  private shadowed(spec: RouteSpec, params: Record<string, string>): boolean {
    const mine = spec.path.split('/');
    return this.routes.some((other) => {
      const theirs = other.path.split('/');
      if (other.path === spec.path || theirs.length !== mine.length) return false;
      let literalWhereParam = false;
      for (const [i, segment] of mine.entries()) {
        const param = /^\{(\w+)\}$/.exec(segment)?.[1];
        const theirsIsParam = /^\{\w+\}$/.test(theirs[i]!);
        if (param && !theirsIsParam) {
          if (params[param] !== theirs[i]) return false;
          literalWhereParam = true;
        } else if (theirsIsParam !== Boolean(param) || (!param && segment !== theirs[i])) {
          return false;
        }
      }
      return literalWhereParam;
    });
  }

  add<P extends AnyObject, Q extends AnyObject, B extends z.ZodType>(spec: RouteSpec<P, Q, B>): void {
    this.routes.push(spec as unknown as RouteSpec);
    this.router[spec.method](koaPath(spec.path), async (ctx, next) => {
      // `/users/search` is not the user "search": a URL that a route with fewer parameters has is
      // that route's, whatever the method (a wrong method there is a 405, see http/allowed-methods).
      if (this.shadowed(spec, ctx.params)) return next();
      const own = ctx.state.principal as Principal | undefined;
      const self =
        spec.allowSelf === true &&
        !ctx.state.authError &&
        own?.kind === 'user' &&
        own.userId === ctx.params.id;
      const principal = self ? own : requireScope(ctx, spec.scope);
      const params = parse(spec.params, ctx.params, '');
      refuseUnknownQuery(spec.query, ctx.query);
      const query = parse(spec.query, ctx.query, '');
      let body: z.output<B> = undefined as z.output<B>;
      if (spec.body) {
        const empty = !ctx.get('Content-Length') && !ctx.get('Transfer-Encoding');
        const absent = spec.bodyOptional === true && (empty || ctx.get('Content-Length') === '0');
        if (absent) body = parse(spec.body, {}, '');
        else {
          if (!ctx.is('application/json')) throw new AppError('UNSUPPORTED_MEDIA_TYPE');
          body = parse(spec.body, ctx.request.body, '');
        }
      }
      const reply = await spec.handler({ params, query, body, principal, ctx });
      const response = spec.responses[reply.status];
      if (!response) throw new Error(`${spec.operationId} answered undeclared status ${reply.status}`);
      for (const [name, value] of Object.entries(reply.headers ?? {})) ctx.set(name, value);
      ctx.status = reply.status;
      if (response.schema) {
        const shaped = response.schema.safeParse(reply.body);
        if (!shaped.success) {
          this.log?.error(
            { operation: spec.operationId, issues: shaped.error.issues },
            'response does not match its schema',
          );
          throw new AppError('INTERNAL_ERROR');
        }
        ctx.body = shaped.data;
      } else if (reply.body !== undefined) {
        ctx.body = reply.body;
      }
    });
  }
}
