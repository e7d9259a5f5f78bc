/**
 * GET /v2/openapi.json is a valid OpenAPI 3.1 document listing exactly the routes the /v2 router
 * serves (compared with the router's own registered layers), and GET /v2/docs names every operation.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type Router from '@koa/router';
import { Validator } from '@seriousme/openapi-schema-validator';
import request from 'supertest';

import {
  CURSOR_MAX,
  CURSOR_PATTERN,
  EMAIL_MAX,
  EMAIL_PATTERN,
  METADATA_KEY_PATTERN,
  METADATA_MAX_DEPTH,
  RESERVED_KEYS,
  TEXT_PATTERN,
} from '../../src/admin/schemas.js';
import { METADATA_FIELD_PATTERN } from '../../src/store/query.js';
import { adminApi, uniqueEmail } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

type Json = Record<string, unknown>;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];

/** "METHOD /v2/path/{param}" for every route the app's /v2 router has registered. */
function registeredRoutes(t: TestApp): string[] {
  const routers = t.app.middleware
    .map((mw) => (mw as unknown as { router?: Router }).router)
    .filter((r): r is Router => r !== undefined && r.opts.prefix === '/v2');
  expect(routers).toHaveLength(1);
  const routes = new Set<string>();
  for (const layer of routers[0]!.stack) {
    for (const method of layer.methods) {
      if (method === 'HEAD') continue; // added by koa-router beside every GET
      routes.add(`${method} ${String(layer.path).replace(/:(\w+)/g, '{$1}')}`);
    }
  }
  return [...routes].sort();
}

function documentedRoutes(doc: Json): string[] {
  const routes: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    // The decision endpoints (/v1/authorize) are served outside /v2 and compared on their own.
    if (path.startsWith('/v1/')) continue;
    for (const method of Object.keys(item).filter((k) => METHODS.includes(k))) {
      routes.push(`${method.toUpperCase()} ${path}`);
    }
  }
  return routes.sort();
}

/** Routes served outside the document on purpose: the document itself and its reference page. */
const UNDOCUMENTED = ['GET /v2/docs', 'GET /v2/openapi.json'];

describe.each(availableBackends())(
  'GET /v2/openapi.json and /v2/docs with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let doc: Json;
    beforeAll(async () => {
      // Many requests without a token below: more than the small anonymous budget allows by default.
      t = await createTestApp({
        durable,
        shortLived,
        env: { RATE_LIMIT_ANONYMOUS_PER_HOUR: '100000', RATE_LIMIT_ANONYMOUS_BURST: '100000' },
      });
      const res = await request(t.callback).get('/v2/openapi.json');
      expect(res.status).toBe(200);
      doc = res.body as Json;
    });
    afterAll(() => t.close());

    it('GET /v2/openapi.json answers without a token, as cacheable JSON', async () => {
      const res = await request(t.callback).get('/v2/openapi.json');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.headers['cache-control']).toBe('public, max-age=300');
      expect(res.headers['x-request-id']).toMatch(/\S/);
      expect(res.headers['x-ratelimit-limit']).toBeDefined();
    });

    it('answers a wrong method or an unknown path under /v2 in the JSON envelope, never with a page', async () => {
      const wrong = await request(t.callback).delete('/v2/openapi.json');
      expect(wrong.status).toBe(405);
      expect(wrong.headers['content-type']).toMatch(/^application\/json/);
      expect(wrong.body.error.code).toBe('METHOD_NOT_ALLOWED');
      const unknown = await request(t.callback).get('/v2/no-such-thing');
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('NOT_FOUND');
    });

    it('answers TRACE (and any method a path lacks) 405 with Allow naming the path’s methods, OPTIONS 204', async () => {
      for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
        const documented = Object.keys(item)
          .filter((k) => METHODS.includes(k))
          .map((m) => m.toUpperCase());
        const expected = [...documented, ...(documented.includes('GET') ? ['HEAD'] : []), 'OPTIONS'].sort();
        const url = path.replace(/\{(\w+)\}/g, 'x1');
        const res = await request(t.callback).trace(url);
        expect({ path, status: res.status }).toEqual({ path, status: 405 });
        expect(String(res.headers.allow).split(', ').sort()).toEqual(expected);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        expect(res.body.error).toMatchObject({ code: 'METHOD_NOT_ALLOWED', request_id: expect.any(String) });
        expect(res.body.error.message).toContain('TRACE');
        const missing = ['PATCH', 'PUT', 'DELETE', 'POST'].find((m) => !documented.includes(m));
        if (missing) {
          const other = await request(t.callback)[missing.toLowerCase() as 'patch'](url);
          expect({ path, missing, status: other.status }).toEqual({ path, missing, status: 405 });
          expect(String(other.headers.allow).split(', ').sort()).toEqual(expected);
        }
        const options = await request(t.callback).options(url);
        expect({ path, status: options.status }).toEqual({ path, status: 204 });
        expect(String(options.headers.allow).split(', ').sort()).toEqual(expected);
      }
      // A path that does not exist stays a 404, whatever the method.
      const nowhere = await request(t.callback).trace('/v2/no-such-thing');
      expect(nowhere.status).toBe(404);
      expect(nowhere.body.error.code).toBe('NOT_FOUND');
      // Outside /v2 the same rule holds (TRACE used to reach koa-router's 501 and become a 500).
      const health = await request(t.callback).trace('/health/live');
      expect(health.status).toBe(405);
      expect(String(health.headers.allow).split(', ').sort()).toEqual(['GET', 'HEAD', 'OPTIONS']);
      expect(health.body.error.code).toBe('METHOD_NOT_ALLOWED');
    });

    it('states the limits and rules the validators apply, from the constants they use', () => {
      const paths = doc.paths as Record<
        string,
        Record<string, { parameters?: Json[]; requestBody?: Json; responses: Json }>
      >;
      const param = (path: string, name: string) =>
        paths[path]!.get!.parameters!.find((p) => p.name === name) as Json & {
          schema?: Json;
          content?: Json;
        };
      expect(param('/v2/users', 'limit').schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 100 });
      expect(param('/v2/users', 'offset').schema).toMatchObject({
        type: 'integer',
        minimum: 0,
        maximum: 1_000_000,
      });
      for (const path of ['/v2/users', '/v2/users/search', '/v2/audit']) {
        expect(param(path, 'cursor').schema).toMatchObject({
          type: 'string',
          maxLength: CURSOR_MAX,
          pattern: CURSOR_PATTERN,
        });
        // A well-formed cursor the list did not issue is a 422, documented where a cursor is taken.
        expect(String((paths[path]!.get!.responses['422'] as Json).description)).toContain('INVALID_CURSOR');
      }
      expect(param('/v2/users', 'search').schema).toMatchObject({ type: 'string', maxLength: 200 });
      expect(param('/v2/users/search', 'q').schema).toMatchObject({ type: 'string', maxLength: 200 });
      expect(param('/v2/users/{id}', 'include').schema).toMatchObject({
        maxLength: 100,
        pattern: expect.stringContaining('roles|permissions|preferences'),
      });
      // JSON query parameters are described by the schema of their parsed value.
      const filters = param('/v2/users/search', 'filters');
      expect(filters.schema).toBeUndefined();
      expect((filters.content as Record<string, { schema: Json }>)['application/json']!.schema).toMatchObject(
        {
          type: 'object',
          additionalProperties: false,
          patternProperties: { [METADATA_FIELD_PATTERN]: expect.any(Object) },
        },
      );
      const body = (
        paths['/v2/users']!.post!.requestBody as {
          content: Record<string, { schema: { properties: Record<string, Json> } }>;
        }
      ).content['application/json']!.schema.properties;
      expect(body.metadata).toMatchObject({
        type: 'object',
        propertyNames: { type: 'string', pattern: METADATA_KEY_PATTERN, not: { enum: [...RESERVED_KEYS] } },
        additionalProperties: { $ref: '#/components/schemas/MetadataValue1' },
      });
      const components = (doc.components as { schemas: Record<string, { anyOf: Json[] }> }).schemas;
      // Nested objects hold to the same key rule, and nothing sits deeper than METADATA_MAX_DEPTH.
      expect(components[`MetadataValue${METADATA_MAX_DEPTH}`]!.anyOf).toEqual(
        expect.arrayContaining([
          { type: 'array', items: false },
          { type: 'object', propertyNames: body.metadata!.propertyNames, additionalProperties: false },
        ]),
      );
      expect(components[`MetadataValue${METADATA_MAX_DEPTH + 1}`]).toBeUndefined();
      expect(body.first_name).toMatchObject({
        type: 'string',
        minLength: 1,
        maxLength: 100,
        pattern: TEXT_PATTERN,
      });
      expect(body.email).toMatchObject({ type: 'string', maxLength: EMAIL_MAX, pattern: EMAIL_PATTERN });
    });

    it('refuses exactly the metadata keys its schema forbids, naming them, at any depth', async () => {
      const api = await adminApi(t);
      const createBody = (paths: Json) =>
        (
          (paths['/v2/users'] as Record<string, Json>).post!.requestBody as {
            content: Record<
              string,
              {
                schema: {
                  properties: Record<string, { propertyNames: { pattern: string; not: { enum: string[] } } }>;
                };
              }
            >;
          }
        ).content['application/json']!.schema.properties.metadata!.propertyNames;
      const rule = createBody(doc.paths as Json);
      const allowedBySchema = (key: string) =>
        new RegExp(rule.pattern, 'u').test(key) && !rule.not.enum.includes(key);
      const keys = [
        'plan',
        'A-b_9',
        'x'.repeat(64),
        'x'.repeat(65),
        '',
        '__proto__',
        'constructor',
        'prototype',
        'toString',
        'a.b',
        '$where',
        'with space',
        'tab\tkey',
        'nul\u0000',
        'ключ',
        '🔑',
      ];
      for (const key of keys) {
        for (const [metadata, field] of [
          [JSON.parse(`{${JSON.stringify(key)}:1}`) as Json, 'metadata'],
          [JSON.parse(`{"outer":[{${JSON.stringify(key)}:1}]}`) as Json, 'metadata.outer.0'],
        ] as const) {
          const res = await api.post('/v2/users', {
            email: uniqueEmail(),
            first_name: 'K',
            last_name: 'Key',
            metadata,
          });
          if (allowedBySchema(key)) {
            expect({ key, status: res.status }).toEqual({ key, status: 201 });
          } else {
            expect({ key, status: res.status, code: res.body.error?.code }).toEqual({
              key,
              status: 400,
              code: 'VALIDATION_ERROR',
            });
            expect(res.body.error.details).toEqual([
              { field, issue: expect.stringContaining(`"${key.slice(0, 70)}"`) },
            ]);
          }
        }
      }
    });

    it('GET /v2/openapi.json validates as an OpenAPI 3.1 document', async () => {
      expect(doc.openapi).toBe('3.1.0');
      const validator = new Validator();
      const result = await validator.validate(structuredClone(doc));
      expect(result.errors ?? []).toEqual([]);
      expect(result.valid).toBe(true);
      expect(validator.version).toBe('3.1');
      // The validator does look inside: a broken copy fails.
      const broken = structuredClone(doc) as { paths: Record<string, Record<string, Json>> };
      broken.paths['/v2/users']!.get!.responses = { 200: { content: 'nope' } };
      expect((await new Validator().validate(broken)).valid).toBe(false);
    });

    it('GET /v2/openapi.json lists every route the /v2 router serves, and no other', () => {
      const served = registeredRoutes(t).filter((r) => !UNDOCUMENTED.includes(r));
      expect(documentedRoutes(doc)).toEqual(served);
      // Outside /v2 the document lists the policy decision endpoints, and they are served.
      const decisions = Object.entries(doc.paths as Record<string, Json>)
        .filter(([path]) => path.startsWith('/v1/'))
        .flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
      expect(decisions.sort()).toEqual(['POST /v1/authorize', 'POST /v1/authorize/batch']);
      expect(served).toEqual(
        expect.arrayContaining([
          'GET /v2/users',
          'POST /v2/users',
          'GET /v2/users/search',
          'POST /v2/users/bulk',
          'GET /v2/users/{id}',
          'PUT /v2/users/{id}',
          'DELETE /v2/users/{id}',
          'POST /v2/users/{id}/restore',
          'GET /v2/users/{id}/preferences',
          'PUT /v2/users/{id}/preferences',
          'GET /v2/users/{id}/activity',
          'GET /v2/users/{id}/roles',
          'POST /v2/users/{id}/roles/{role_id}',
          'DELETE /v2/users/{id}/roles/{role_id}',
          'POST /v2/users/{id}/password-reset',
          'PUT /v2/users/{id}/password',
          'GET /v2/roles',
          'POST /v2/roles',
          'GET /v2/roles/{id}',
          'PUT /v2/roles/{id}',
          'DELETE /v2/roles/{id}',
          'GET /v2/audit',
        ]),
      );
    });

    it('GET /v2/openapi.json gives every operation a unique id, its scope as security, and its error envelope', () => {
      const ids = new Set<string>();
      const scopes = Object.keys(
        (((doc.components as Json).securitySchemes as Json).oauth2 as { flows: { clientCredentials: Json } })
          .flows.clientCredentials.scopes as Json,
      );
      for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
        for (const [method, op] of Object.entries(item)) {
          const where = `${method.toUpperCase()} ${path}`;
          expect({ where, id: typeof op.operationId }).toEqual({ where, id: 'string' });
          expect(ids.has(op.operationId as string)).toBe(false);
          ids.add(op.operationId as string);
          const scope = op['x-required-scope'] as string | undefined;
          expect({ where, security: op.security }).toEqual({
            where,
            security: scope ? [{ oauth2: [scope] }] : [],
          });
          if (scope) {
            expect(scopes).toContain(scope);
            const responses = op.responses as Record<string, Json>;
            for (const status of ['401', '403', '429', '500']) {
              expect({ where, status, ref: responses[status]?.content }).toEqual({
                where,
                status,
                ref: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
              });
            }
          }
          // Every path parameter is declared.
          const declared = ((op.parameters as Json[] | undefined) ?? [])
            .filter((p) => p.in === 'path')
            .map((p) => p.name)
            .sort();
          expect({ where, declared }).toEqual({
            where,
            declared: [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort(),
          });
        }
      }
      expect(scopes).toEqual(
        expect.arrayContaining(['user:read', 'user:write', 'role:manage', 'client:manage', 'audit:read']),
      );
    });

    it('GET /v2/openapi.json documents the user shapes of the API contract', () => {
      const schemas = (doc.components as Json).schemas as Record<
        string,
        { properties?: Json; required?: string[] }
      >;
      expect(Object.keys(schemas.User!.properties!)).toEqual(
        expect.arrayContaining([
          'id',
          'email',
          'first_name',
          'last_name',
          'role',
          'status',
          'email_verified',
          'created_at',
          'updated_at',
          'last_login',
          'metadata',
        ]),
      );
      expect(schemas.User!.properties!.password).toBeUndefined();
      expect(Object.keys(schemas.Pagination!.properties!).sort()).toEqual(
        ['has_more', 'limit', 'next_cursor', 'offset', 'total'].sort(),
      );
      expect(Object.keys(schemas.DeleteResult!.properties!).sort()).toEqual([
        'deleted_at',
        'message',
        'soft_delete',
      ]);
      const create = ((doc.paths as Json)['/v2/users'] as Record<string, Json>).post!;
      const body = (create.requestBody as { content: Record<string, { schema: { required: string[] } }> })
        .content['application/json']!.schema;
      expect(body.required.sort()).toEqual(['email', 'first_name', 'last_name']);
    });

    it('GET /v2/docs renders an HTML page naming every operation', async () => {
      const res = await request(t.callback).get('/v2/docs');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['content-security-policy']).toContain("default-src 'none'");
      const html = res.text;
      expect(html).toMatch(/^<!DOCTYPE html>/);
      expect(html).not.toMatch(/<script/i);
      for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
        for (const [method, op] of Object.entries(item)) {
          expect(html).toContain(`id="${op.operationId as string}"`);
          expect(html).toContain(`<span class="method">${method.toUpperCase()}</span> <code>${path}</code>`);
          expect(html).toContain(String(op.summary).replace(/&/g, '&amp;').replace(/'/g, '&#39;'));
        }
      }
    });
  },
);
