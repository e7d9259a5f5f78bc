/**
 * Shared pieces of the hostile-input suites: the operations of the OpenAPI document, a witness of
 * every durable write (so a refused request is shown to have changed nothing), raw requests with
 * exact bytes, and an app configured so that rate limits never answer before the check under test.
 */
import { expect } from '@jest/globals';
import request from 'supertest';

import { createTestApp, type DurableBackend, type TestApp } from '../helpers/test-app.js';

export interface Operation {
  method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI template, for example /v2/users/{id}. */
  template: string;
  operationId: string;
  scope: string | undefined;
  hasBody: boolean;
  query: string[];
  /** Each path parameter's declared maxLength (undefined when the document declares none). */
  pathMaxLength: Record<string, number | undefined>;
}

export async function operations(t: TestApp): Promise<Operation[]> {
  const res = await request(t.callback).get('/v2/openapi.json');
  expect(res.status).toBe(200);
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(res.body.paths as Record<string, Record<string, never>>)) {
    for (const [method, raw] of Object.entries(methods)) {
      const op = raw as {
        operationId: string;
        'x-required-scope'?: string;
        requestBody?: unknown;
        parameters?: { in: string; name: string; schema?: { maxLength?: number } }[];
      };
      ops.push({
        method: method as Operation['method'],
        template: path,
        operationId: op.operationId,
        scope: op['x-required-scope'],
        hasBody: op.requestBody !== undefined,
        query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
        pathMaxLength: Object.fromEntries(
          (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, p.schema?.maxLength]),
        ),
      });
    }
  }
  return ops.sort((a, b) => a.operationId.localeCompare(b.operationId));
}

/** The operation's path with every parameter set to `value` (URL-encoded). */
export function pathOf(op: Operation, value = 'no-such-id'): string {
  return op.template.replace(/\{\w+\}/g, encodeURIComponent(value));
}

/** The operation's path with every parameter one character longer than its declared maximum. */
export function oversizedPathOf(op: Operation): string {
  return op.template.replace(/\{(\w+)\}/g, (_, name: string) => 'a'.repeat(op.pathMaxLength[name]! + 1));
}

/**
 * Counts that every accepted mutation changes: each one writes an audit entry, and entity counts
 * catch a write that skipped the audit trail.
 */
export async function writeWitness(t: TestApp): Promise<string> {
  const d = t.stores.durable;
  const [users, roles, clients, audit, plans, resources] = await Promise.all([
    d.users.count({ deleted: 'include' }),
    d.roles.list(),
    d.clients.count(),
    d.audit.count({}),
    d.plans.list(),
    d.resourceServers.list(),
  ]);
  return JSON.stringify({
    users,
    roles: roles.map((r) => [r.id, r.permissions, r.updated_at]),
    clients,
    audit,
    plans: plans.length,
    resources: resources.length,
  });
}

/** An app whose rate limits are far above what a suite sends, so every check under test is reached. */
export function hostileApp(durable: DurableBackend = 'embedded', env: Record<string, string> = {}) {
  return createTestApp({
    durable,
    env: {
      RATE_LIMIT_ANONYMOUS_PER_HOUR: '100000000',
      RATE_LIMIT_ANONYMOUS_BURST: '1000000',
      RATE_LIMIT_ENTERPRISE_PER_HOUR: '100000000',
      RATE_LIMIT_ENTERPRISE_BURST: '1000000',
      ...env,
    },
  });
}

export interface Expected {
  status: number;
  code: string;
}

/** The parts of an answer a case asserts: status, error code, and the rate-limit headers' presence. */
export function outcome(res: request.Response) {
  return {
    status: res.status,
    code: (res.body as { error?: { code?: string } } | undefined)?.error?.code,
    rateLimited: res.headers['x-ratelimit-limit'] !== undefined,
  };
}

/** Sends exact bytes (superagent would otherwise serialize a Buffer as JSON). */
export function rawRequest(
  t: TestApp,
  method: Operation['method'],
  path: string,
  headers: Record<string, string>,
  body?: Buffer | string,
) {
  let req = request(t.callback)[method](path);
  for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
  return body === undefined ? req : req.serialize((data: unknown) => data as string).send(body as never);
}
