/**
 * Hostile input against /v2, by class: every secured operation without a token, with garbage, a
 * malformed header, a revoked token and a token lacking its scope; bodies that are too large, not
 * UTF-8, not JSON or of another media type; invisible and control characters in e-mails and names;
 * reserved and unsafe metadata keys; loose numbers and unknown query parameters; injection-shaped
 * filters; forged cursors; traversal-shaped ids; oversized bulk requests. Every case asserts the exact
 * status and error code, that a refused write changed nothing (writeWitness), and that /v2 answers
 * carry the rate-limit headers even when the body was refused before it was read.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { AdminApi, adminApi, clientToken, registerServiceClient, uniqueEmail } from '../helpers/admin-api.js';
import type { TestApp } from '../helpers/test-app.js';
import {
  hostileApp,
  operations,
  outcome,
  oversizedPathOf,
  pathOf,
  rawRequest,
  writeWitness,
  type Operation,
} from './helpers.js';

interface Case {
  name: string;
  send: () => request.Test;
  status: number;
  code: string | undefined;
  /** Extra check on the response; returns a problem or undefined. */
  check?: (res: request.Response) => string | undefined;
  /**
   * False for the decision endpoints (/v1/authorize): they sit on applications' hot path and are not
   * counted against the management API's rate plans, so they carry no X-RateLimit-* headers.
   */
  counted?: boolean;
}

const counted = (op: Operation) => op.template.startsWith('/v2/');

/** Runs cases one by one; returns every mismatch (status, code, write, rate-limit headers). */
async function run(t: TestApp, cases: Case[], options: { v2Headers?: boolean } = {}) {
  const wrong: unknown[] = [];
  for (const c of cases) {
    const before = await writeWitness(t);
    const res = await c.send();
    const seen = outcome(res);
    const after = await writeWitness(t);
    const problems: string[] = [];
    if (seen.status !== c.status) problems.push(`status ${seen.status}, expected ${c.status}`);
    if (seen.code !== c.code) problems.push(`code ${String(seen.code)}, expected ${String(c.code)}`);
    if (before !== after) problems.push('something was written');
    if (options.v2Headers !== false && c.counted !== false && !seen.rateLimited)
      problems.push('no X-RateLimit-* headers');
    const extra = c.check?.(res);
    if (extra) problems.push(extra);
    if (problems.length > 0) wrong.push({ case: c.name, problems, body: res.body });
  }
  return wrong;
}

export const CASE_COUNTS: Record<string, number> = {};

describe('hostile input against /v2 (embedded)', () => {
  let t: TestApp;
  let admin: AdminApi;
  let ops: Operation[];
  let noScopes: AdminApi;
  let revoked: string;
  let userId: string;
  const all = () => `Bearer ${admin.token}`;

  beforeAll(async () => {
    t = await hostileApp('embedded', { PROTECTED_METADATA_KEYS: 'tenant' });
    admin = await adminApi(t);
    const bare = await registerServiceClient(t);
    noScopes = new AdminApi(t, await clientToken(t, bare, { scope: '' }), bare);
    const victim = await adminApi(t);
    revoked = victim.token;
    const res = await request(t.callback)
      .post('/oauth/revoke')
      .auth(victim.client!.clientId, victim.client!.clientSecret)
      .type('form')
      .send({ token: revoked });
    expect(res.status).toBe(200);
    ops = await operations(t);
    userId = (await admin.createUser({ metadata: { team: 'a' } })).id;
  });
  afterAll(() => t.close());

  const secured = () => ops.filter((op) => op.scope !== undefined);
  const send = (op: Operation, authorization: string | undefined, path = pathOf(op)) => {
    let req = request(t.callback)[op.method](path);
    if (authorization !== undefined) req = req.set('Authorization', authorization);
    return op.hasBody ? req.send({}) : req;
  };

  it('refuses every secured operation without a valid token or scope (5 cases per operation)', async () => {
    const cases: Case[] = secured().flatMap((op) => [
      {
        name: `${op.operationId} no token`,
        counted: counted(op),
        send: () => send(op, undefined),
        status: 401,
        code: 'AUTH_TOKEN_MISSING',
      },
      {
        name: `${op.operationId} garbage token`,
        counted: counted(op),
        send: () => send(op, 'Bearer garbage'),
        status: 401,
        code: 'AUTH_TOKEN_INVALID',
      },
      {
        name: `${op.operationId} Basic header`,
        counted: counted(op),
        send: () => send(op, 'Basic YWRtaW46YWRtaW4='),
        status: 401,
        code: 'AUTH_TOKEN_INVALID',
      },
      {
        name: `${op.operationId} revoked token`,
        counted: counted(op),
        send: () => send(op, `Bearer ${revoked}`),
        status: 401,
        code: 'AUTH_TOKEN_INVALID',
      },
      {
        name: `${op.operationId} token without scopes`,
        counted: counted(op),
        send: () => send(op, `Bearer ${noScopes.token}`),
        status: 403,
        code: 'AUTH_INSUFFICIENT_SCOPE',
        check: (res) =>
          res.headers['www-authenticate']?.includes(`scope="${op.scope}"`)
            ? undefined
            : `challenge ${String(res.headers['www-authenticate'])}`,
      },
    ]);
    CASE_COUNTS.auth = cases.length;
    expect(cases.length).toBeGreaterThan(200);
    expect(await run(t, cases)).toEqual([]);
  });

  it('refuses bodies that are too large, not UTF-8, not JSON or not JSON at all, before any work (5 per body)', async () => {
    const big = Buffer.alloc(1024 * 1024 + 1, 0x20);
    const bodyOps = secured().filter((op) => op.hasBody);
    const cases: Case[] = bodyOps.flatMap((op) => {
      const path = pathOf(op);
      const json = { Authorization: all(), 'Content-Type': 'application/json' };
      return [
        {
          name: `${op.operationId} invalid UTF-8`,
          counted: counted(op),
          send: () =>
            rawRequest(
              t,
              op.method,
              path,
              json,
              Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
            ),
          status: 400,
          code: 'INVALID_ENCODING',
        },
        {
          name: `${op.operationId} overlong UTF-8 of "/"`,
          counted: counted(op),
          send: () => rawRequest(t, op.method, path, json, Buffer.from([0x22, 0xc0, 0xaf, 0x22])),
          status: 400,
          code: 'INVALID_ENCODING',
        },
        {
          name: `${op.operationId} broken JSON`,
          counted: counted(op),
          send: () => rawRequest(t, op.method, path, json, '{"email": '),
          status: 400,
          code: 'MALFORMED_JSON',
        },
        {
          name: `${op.operationId} over 1 MiB`,
          counted: counted(op),
          send: () => rawRequest(t, op.method, path, json, big),
          status: 413,
          code: 'PAYLOAD_TOO_LARGE',
        },
        {
          name: `${op.operationId} JSON in Latin-1`,
          counted: counted(op),
          send: () =>
            rawRequest(
              t,
              op.method,
              path,
              { ...json, 'Content-Type': 'application/json; charset=iso-8859-1' },
              '{}',
            ),
          status: 415,
          code: 'UNSUPPORTED_MEDIA_TYPE',
        },
      ];
    });
    CASE_COUNTS.bodies = cases.length;
    expect(cases.length).toBeGreaterThan(80);
    expect(await run(t, cases)).toEqual([]);
  });

  it('refuses a form or text body where JSON is expected with 415, after counting the request', async () => {
    const bodyOps = secured().filter(
      (op) => op.hasBody && op.method === 'post' && !op.template.includes('{'),
    );
    const cases: Case[] = bodyOps.flatMap((op) => [
      {
        name: `${op.operationId} text/plain`,
        counted: counted(op),
        send: () =>
          rawRequest(t, op.method, pathOf(op), { Authorization: all(), 'Content-Type': 'text/plain' }, '{}'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: `${op.operationId} form`,
        counted: counted(op),
        send: () =>
          rawRequest(
            t,
            op.method,
            pathOf(op),
            { Authorization: all(), 'Content-Type': 'application/x-www-form-urlencoded' },
            'email=a@b.c',
          ),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
    ]);
    CASE_COUNTS.mediaTypes = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  const EMAILS: [string, string][] = [
    ['zero-width space', 'ad\u200ba@example.com'],
    ['zero-width joiner', 'ad\u200da@example.com'],
    ['NUL', 'ada\u0000@example.com'],
    ['bell', 'ada\u0007@example.com'],
    ['escape', 'ada\u001b[31m@example.com'],
    ['DEL', 'ada\u007f@example.com'],
    ['right-to-left override', 'ada\u202e@example.com'],
    ['left-to-right isolate', 'ada\u2066@example.com'],
    ['soft hyphen', 'ad\u00ada@example.com'],
    ['byte-order mark', 'ad\ufeffa@example.com'],
    ['word joiner', 'ada\u2060@example.com'],
    ['line separator', 'ada\u2028@example.com'],
    ['paragraph separator', 'ada\u2029@example.com'],
    ['Mongolian vowel separator', 'ada\u180e@example.com'],
    ['variation selector', 'ada\ufe0f@example.com'],
    ['lone high surrogate', 'ada\ud800@example.com'],
    ['lone low surrogate', 'ada\udc00@example.com'],
    ['private use', 'ada\ue000@example.com'],
    ['tag character', 'ada\u{e0041}@example.com'],
    ['Hangul filler', 'ada\u3164@example.com'],
  ];
  const NAMES: [string, string][] = [
    ['NUL', 'Ada\u0000'],
    ['escape sequence', 'Ada\u001b[2J'],
    ['newline', 'Ada\nLovelace'],
    ['carriage return', 'Ada\rLovelace'],
    ['tab', 'Ada\tLovelace'],
    ['DEL', 'Ada\u007f'],
    ['C1 control', 'Ada\u0085'],
    ['right-to-left override', '\u202eadA'],
    ['first-strong isolate', 'Ada\u2068'],
    ['line separator', 'Ada\u2028Lovelace'],
    ['lone surrogate', 'Ada\ud83d'],
    ['only spaces', '   '],
  ];

  it('refuses e-mails with invisible or control characters and names with controls, bidi overrides or lone surrogates', async () => {
    const body = (over: Record<string, unknown>) => ({
      email: uniqueEmail(),
      first_name: 'Ada',
      last_name: 'Lovelace',
      ...over,
    });
    const post = (payload: unknown) =>
      request(t.callback)
        .post('/v2/users')
        .set('Authorization', all())
        .send(payload as object);
    const put = (payload: unknown) =>
      request(t.callback)
        .put(`/v2/users/${userId}`)
        .set('Authorization', all())
        .send(payload as object);
    const field = (name: string) => (res: request.Response) =>
      (res.body.error?.details ?? []).some((d: { field: string }) => d.field === name)
        ? undefined
        : `details do not name ${name}`;
    const cases: Case[] = [
      ...EMAILS.flatMap(([label, email]) => [
        {
          name: `create email ${label}`,
          send: () => post(body({ email })),
          status: 400,
          code: 'VALIDATION_ERROR',
          check: field('email'),
        },
        {
          name: `update email ${label}`,
          send: () => put({ email }),
          status: 400,
          code: 'VALIDATION_ERROR',
          check: field('email'),
        },
        {
          name: `bulk email ${label}`,
          send: () =>
            request(t.callback)
              .post('/v2/users/bulk')
              .set('Authorization', all())
              .send({ users: [body({ email })] }),
          status: 200,
          code: undefined,
          check: (res: request.Response) =>
            res.body.results?.[0]?.success === false && res.body.summary?.successful === 0
              ? undefined
              : 'bulk item was not refused',
        },
      ]),
      ...NAMES.flatMap(([label, name]) =>
        (['first_name', 'last_name'] as const).flatMap((f) => [
          {
            name: `create ${f} ${label}`,
            send: () => post(body({ [f]: name })),
            status: 400,
            code: 'VALIDATION_ERROR',
            check: field(f),
          },
          {
            name: `update ${f} ${label}`,
            send: () => put({ [f]: name }),
            status: 400,
            code: 'VALIDATION_ERROR',
            check: field(f),
          },
        ]),
      ),
      ...NAMES.map(([label, name]) => ({
        name: `role display_name ${label}`,
        send: () =>
          request(t.callback)
            .post('/v2/roles')
            .set('Authorization', all())
            .send({ name: 'role-x', display_name: name }),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: field('display_name'),
      })),
      ...NAMES.map(([label, name]) => ({
        name: `client_name ${label}`,
        send: () =>
          request(t.callback)
            .post('/v2/clients')
            .set('Authorization', all())
            .send({ kind: 'service', client_name: name }),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: field('client_name'),
      })),
    ];
    CASE_COUNTS.text = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  it('refuses reserved and unsafe keys in metadata and preferences by name, never as malformed JSON', async () => {
    const raw = (method: 'post' | 'put', path: string, text: string) =>
      rawRequest(t, method, path, { Authorization: all(), 'Content-Type': 'application/json' }, text);
    const userJson = (metadata: string) =>
      `{"email":"${uniqueEmail()}","first_name":"A","last_name":"B","metadata":${metadata}}`;
    const objects = [
      ['__proto__', '{"__proto__":{"role":"admin"}}', 'Key "__proto__" is reserved'],
      ['__proto__ scalar', '{"__proto__":1}', 'Key "__proto__" is reserved'],
      ['constructor', '{"constructor":{"prototype":{}}}', 'Key "constructor" is reserved'],
      ['prototype', '{"prototype":1}', 'Key "prototype" is reserved'],
      ['nested __proto__', '{"a":{"__proto__":{"x":1}}}', 'Key "__proto__" is reserved'],
      ['__proto__ in array', '{"a":[{"__proto__":1}]}', 'Key "__proto__" is reserved'],
      ['$where', '{"$where":"1"}', 'Key "$where" must be 1 to 64 letters, digits, "-" or "_"'],
      ['$ne nested', '{"a":{"$ne":null}}', 'Key "$ne" must be 1 to 64 letters, digits, "-" or "_"'],
      ['dotted', '{"a.b":1}', 'Key "a.b" must be 1 to 64 letters, digits, "-" or "_"'],
      ['empty key', '{"":1}', 'Key "" must be 1 to 64 letters, digits, "-" or "_"'],
      ['space key', '{"a b":1}', 'Key "a b" must be 1 to 64 letters, digits, "-" or "_"'],
      ['NUL key', '{"a\\u0000":1}', undefined],
      ['long key', `{"${'k'.repeat(65)}":1}`, undefined],
      ['too deep', '{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}', 'Nested deeper than 5 levels'],
      ['too big', `{"big":"${'x'.repeat(17_000)}"}`, 'At most 16384 bytes of JSON'],
    ] as const;
    const issueIs = (issue: string | undefined) => (res: request.Response) =>
      res.body.error?.details?.some((d: { issue: string }) => (issue ? d.issue === issue : true))
        ? undefined
        : `details ${JSON.stringify(res.body.error?.details)}`;
    const cases: Case[] = objects.flatMap(([label, json, issue]) => [
      {
        name: `create metadata ${label}`,
        send: () => raw('post', '/v2/users', userJson(json)),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: issueIs(issue),
      },
      {
        name: `update metadata ${label}`,
        send: () => raw('put', `/v2/users/${userId}`, `{"metadata":${json}}`),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: issueIs(issue),
      },
      {
        name: `preferences ${label}`,
        send: () => raw('put', `/v2/users/${userId}/preferences`, json),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: issueIs(issue),
      },
    ]);
    // A __proto__ key where a strict object is expected is an unknown field, named as such.
    for (const path of ['/v2/users', `/v2/users/${userId}`, '/v2/roles']) {
      const method = path === `/v2/users/${userId}` ? 'put' : 'post';
      cases.push({
        name: `${method} ${path} top-level __proto__`,
        send: () =>
          raw(
            method,
            path,
            '{"__proto__":{"x":1},"name":"r","email":"a@b.co","first_name":"a","last_name":"b"}',
          ),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: (res) =>
          res.body.error?.details?.some((d: { field: string }) => d.field === '__proto__')
            ? undefined
            : `details ${JSON.stringify(res.body.error?.details)}`,
      });
    }
    CASE_COUNTS.metadata = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  it('reads integers in queries as decimal only and refuses unknown query parameters by name', async () => {
    const getOps = ops.filter((op) => op.method === 'get' && op.scope !== undefined);
    const get = (op: Operation, query: string) =>
      request(t.callback)
        .get(`${pathOf(op, userId)}?${query}`)
        .set('Authorization', all());
    const names = (expected: string) => (res: request.Response) =>
      res.body.error?.details?.some((d: { field: string }) => d.field === expected)
        ? undefined
        : `details ${JSON.stringify(res.body.error?.details)}`;
    const cases: Case[] = getOps.flatMap((op) => [
      {
        name: `${op.operationId} unknown parameter`,
        send: () => get(op, 'foo=1'),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: names('foo'),
      },
      {
        name: `${op.operationId} operator-shaped parameter`,
        send: () => get(op, 'email%5B%24ne%5D=x'),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: names('email[$ne]'),
      },
      {
        name: `${op.operationId} prototype-shaped parameter`,
        send: () => get(op, '__proto__=1'),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: names('__proto__'),
      },
    ]);
    for (const op of getOps.filter((o) => o.query.includes('limit'))) {
      for (const value of [
        '0x10',
        '1e1',
        '%2B5',
        '5.0',
        '%205',
        '5%20',
        'Infinity',
        'NaN',
        '-0x1',
        '1_0',
        '０５',
      ]) {
        cases.push({
          name: `${op.operationId} limit=${value}`,
          send: () => get(op, `limit=${value}`),
          status: 400,
          code: 'VALIDATION_ERROR',
          check: names('limit'),
        });
      }
      cases.push({
        name: `${op.operationId} limit given twice`,
        send: () => get(op, 'limit=1&limit=2'),
        status: 400,
        code: 'VALIDATION_ERROR',
        check: names('limit'),
      });
    }
    CASE_COUNTS.query = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  it('refuses injection-shaped search filters, sorts and projections, and forged cursors', async () => {
    const search = (params: Record<string, string>) =>
      request(t.callback).get('/v2/users/search').query(params).set('Authorization', all());
    const filters = [
      '{"$where":"sleep(1000)"}',
      '{"email":{"$ne":null}}',
      '{"email":{"$regex":".*"}}',
      '{"password_hash":{"ne":null}}',
      '{"role":{"$in":["admin"]}}',
      '{"metadata.$where":1}',
      '{"metadata.a.b":{"$gt":""}}',
      '{"metadata.__proto__":1}',
      '{"__proto__":{"eq":1}}',
      '{"constructor":1}',
      '{"email":{"eq":{"$ne":1}}}',
      '{"login_count":{"gt":"5"}}',
      '{"created_at":{"gte":"yesterday"}}',
      '{"status":{"in":[]}}',
      '{"role":{}}',
      '{"email":["a"]}',
      '[1]',
      '"role"',
      'null',
      '{"email":',
      '{"role":{"like":"%"}}',
      '{"role":{"contains":{"$gt":""}}}',
    ];
    const cases: Case[] = filters.map((f) => ({
      name: `filters ${f}`,
      send: () => search({ filters: f }),
      status: 400,
      code: 'VALIDATION_ERROR',
    }));
    for (const s of [
      '["password_hash:asc"]',
      '["email:sideways"]',
      '"email"',
      '[{"$natural":1}]',
      '["email:asc;drop"]',
    ]) {
      cases.push({
        name: `sort ${s}`,
        send: () => search({ sort: s }),
        status: 400,
        code: 'VALIDATION_ERROR',
      });
    }
    for (const f of ['["password_hash"]', '["preferences"]', '"email"', '[1]', '["__proto__"]']) {
      cases.push({
        name: `fields ${f}`,
        send: () => search({ fields: f }),
        status: 400,
        code: 'VALIDATION_ERROR',
      });
    }
    const cursors = [
      'garbage',
      Buffer.from('["created_at:desc","2026-01-01",""]').toString('base64url'),
      Buffer.from('{"$ne":null}').toString('base64url'),
      Buffer.from('["email:asc"]').toString('base64url'),
      'eyJ9',
      '%00',
      'A'.repeat(2049),
      Buffer.from(JSON.stringify(['created_at:asc,id:asc', { $gt: '' }, 'x'])).toString('base64url'),
    ];
    for (const cursor of cursors) {
      // base64url text that this list did not issue is well-formed (422); anything else is not (400).
      const wellFormed = /^[A-Za-z0-9_-]{0,2048}$/.test(cursor);
      cases.push({
        name: `cursor ${cursor.slice(0, 20)}`,
        send: () => request(t.callback).get('/v2/users').query({ cursor }).set('Authorization', all()),
        status: wellFormed ? 422 : 400,
        code: wellFormed ? 'INVALID_CURSOR' : 'VALIDATION_ERROR',
      });
    }
    CASE_COUNTS.filters = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  it('answers traversal-shaped and oversized ids with 404 or 400, never another resource', async () => {
    const idOps = ops.filter((op) => op.scope !== undefined && op.template.includes('{'));
    const get = (path: string, op: Operation) => {
      const req = request(t.callback)[op.method](path).set('Authorization', all());
      return op.hasBody ? req.send({}) : req;
    };
    const cases: Case[] = [];
    for (const op of idOps) {
      const segments = [
        ['two segments', op.template.replace(/\{\w+\}/, '..%2F..%2Fetc')],
        ['dot-dot', op.template.replace(/\{\w+\}/, '..')],
      ] as const;
      for (const [label, template] of segments) {
        const path = template.replace(/\{\w+\}/g, 'x');
        cases.push({
          name: `${op.operationId} ${label}`,
          send: () => get(path, op),
          // Either no route matches, or the id names nothing; a body of {} may also fail validation
          // first. What matters: no other resource is reached and nothing is written.
          status: -1,
          code: undefined,
        });
      }
      // Every path parameter declares its maximum length; one more character is refused.
      for (const [name, max] of Object.entries(op.pathMaxLength)) {
        expect([op.operationId, name, typeof max]).toEqual([op.operationId, name, 'number']);
      }
      cases.push({
        name: `${op.operationId} oversized id`,
        send: () => get(oversizedPathOf(op), op),
        status: 400,
        code: 'VALIDATION_ERROR',
      });
    }
    const wrong: unknown[] = [];
    for (const c of cases) {
      const before = await writeWitness(t);
      const res = await c.send();
      const after = await writeWitness(t);
      const ok =
        c.status === -1
          ? ([400, 404, 405].includes(res.status) &&
              ['NOT_FOUND', 'VALIDATION_ERROR', 'METHOD_NOT_ALLOWED', 'MISSING_REQUIRED_FIELD'].includes(
                res.body.error?.code,
              )) ||
            /_NOT_FOUND$/.test(String(res.body.error?.code))
          : res.status === c.status && res.body.error?.code === c.code;
      if (!ok || before !== after) wrong.push({ case: c.name, status: res.status, body: res.body });
    }
    CASE_COUNTS.ids = cases.length;
    expect(wrong).toEqual([]);
  });

  it('refuses oversized and malformed bulk requests as a whole', async () => {
    const user = () => ({ email: uniqueEmail(), first_name: 'A', last_name: 'B' });
    const bulk = (payload: unknown) =>
      request(t.callback)
        .post('/v2/users/bulk')
        .set('Authorization', all())
        .send(payload as object);
    const cases: Case[] = [
      {
        name: '101 users',
        send: () => bulk({ users: Array.from({ length: 101 }, user) }),
        status: 400,
        code: 'VALIDATION_ERROR',
      },
      { name: 'no users', send: () => bulk({ users: [] }), status: 400, code: 'VALIDATION_ERROR' },
      {
        name: 'users not a list',
        send: () => bulk({ users: { 0: user() } }),
        status: 400,
        code: 'VALIDATION_ERROR',
      },
      {
        name: 'options not an object',
        send: () => bulk({ users: [user()], options: 'x' }),
        status: 400,
        code: 'VALIDATION_ERROR',
      },
      {
        name: 'fail_on_error a string',
        send: () => bulk({ users: [user()], options: { fail_on_error: 'yes' } }),
        status: 400,
        code: 'VALIDATION_ERROR',
      },
      {
        name: 'all or nothing with one bad item',
        send: () =>
          bulk({
            users: [user(), { ...user(), email: 'x\u200b@example.com' }],
            options: { fail_on_error: true },
          }),
        status: 200,
        code: undefined,
        check: (res) => (res.body.summary?.successful === 0 ? undefined : 'something was created'),
      },
    ];
    CASE_COUNTS.bulk = cases.length;
    expect(await run(t, cases)).toEqual([]);
  });

  it('counts requests whose bodies are refused: a flood of 1 MiB bodies meets the rate limit', async () => {
    const small = await hostileApp('embedded', {
      RATE_LIMIT_ANONYMOUS_BURST: '5',
      RATE_LIMIT_ANONYMOUS_PER_HOUR: '100',
    });
    try {
      const big = Buffer.alloc(1024 * 1024 + 10, 0x20);
      const statuses: number[] = [];
      for (let i = 0; i < 8; i += 1) {
        const res = await rawRequest(small, 'post', '/v2/users', { 'Content-Type': 'application/json' }, big);
        expect(res.headers['x-ratelimit-limit']).toBe('100');
        statuses.push(res.status);
      }
      // Each is counted before its body is refused: five 413s, then the burst allowance is used up.
      expect(statuses.slice(0, 5)).toEqual([413, 413, 413, 413, 413]);
      expect(statuses.slice(5)).toEqual([429, 429, 429]);
    } finally {
      await small.close();
    }
  });

  afterAll(() => {
    const total = Object.values(CASE_COUNTS).reduce((a, b) => a + b, 0);
    process.stderr.write(`hostile /v2 cases: ${total} ${JSON.stringify(CASE_COUNTS)}\n`);
  });
});
