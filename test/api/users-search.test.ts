/**
 * GET /v2/users/search: full text `q`, typed `filters` with every operator on typed fields and on
 * metadata.*, `sort` arrays and `fields` projection — and hostile input, which must be refused with a
 * 400 naming the offending field, never passed to a backend, never a 500 or a wider result.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, uniqueEmail, uniqueWord, type AdminApi, type ApiUser } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const FILTERABLE_HINT =
  'Not a filterable field; use one of email, first_name, last_name, role, status, email_verified, mfa_enabled, login_count, last_login, created_at, updated_at or metadata.<key>';
const OPERATOR_HINT = 'Unknown operator; use one of eq, ne, gt, gte, lt, lte, in, contains';

describe.each(availableBackends())(
  'GET /v2/users/search with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    /** The tag every user of this suite carries in metadata.suite, and their last name. */
    let tag: string;
    let role: string;
    const people: Record<string, ApiUser> = {};

    const logins: Record<string, { count: number; last: string | null }> = {
      ada: { count: 0, last: null },
      bob: { count: 2, last: '2026-01-10T10:00:00.000Z' },
      cyd: { count: 5, last: '2026-02-20T10:00:00.000Z' },
      dee: { count: 9, last: '2026-03-30T10:00:00.000Z' },
    };

    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
      tag = uniqueWord('Srch');
      role = (await api.createRole()).name;
      const specs: Record<string, Record<string, unknown>> = {
        ada: {
          first_name: 'Ada',
          email: uniqueEmail('ada.lovelace', 'analytical.example'),
          metadata: { suite: tag, plan: 'pro', seats: 3, beta: true, team: { name: 'core' } },
        },
        bob: {
          first_name: 'Bob',
          email: uniqueEmail('bob_50%off', 'example.org'),
          role,
          metadata: { suite: tag, plan: 'free', seats: 1, beta: false },
        },
        cyd: {
          first_name: 'Cyd',
          email: uniqueEmail('cyd', 'example.org'),
          status: 'suspended',
          metadata: { suite: tag, plan: 'pro', seats: 10, team: { name: 'edge' } },
        },
        dee: {
          first_name: 'Dee',
          email: uniqueEmail('dee', 'analytical.example'),
          role,
          email_verified: true,
          metadata: { suite: tag, plan: 'enterprise', seats: 25, note: 'a.*b' },
        },
      };
      for (const [key, spec] of Object.entries(specs)) {
        people[key] = await api.createUser({ last_name: tag, ...spec });
        const { count, last } = logins[key]!;
        for (let i = 0; i < count; i += 1) {
          // Only the last sign-in's time matters: recordLogin sets last_login each time.
          await t.stores.durable.users.recordLogin(people[key]!.id, new Date(last!));
        }
      }
    });
    afterAll(() => t.close());

    /** Searches within this suite's users; returns the first names found, in order. */
    async function names(filters: Record<string, unknown>, extra: Record<string, string> = {}) {
      const res = await api.get('/v2/users/search', {
        filters: JSON.stringify({ 'metadata.suite': tag, ...filters }),
        sort: JSON.stringify(['first_name:asc']),
        ...extra,
      });
      expect({ filters, status: res.status, error: res.body.error }).toEqual({
        filters,
        status: 200,
        error: undefined,
      });
      return (res.body.data as ApiUser[]).map((u) => u.first_name);
    }

    it('GET /v2/users/search finds users by the start of words of their names and email with q', async () => {
      const res = await api.get('/v2/users/search', { q: `${tag} ada` });
      expect(res.status).toBe(200);
      expect(res.body.data.map((u: ApiUser) => u.id)).toEqual([people.ada!.id]);
      const byEmailWord = await api.get('/v2/users/search', { q: `${tag} analytic` });
      expect(new Set(byEmailWord.body.data.map((u: ApiUser) => u.first_name))).toEqual(
        new Set(['Ada', 'Dee']),
      );
      const all = await api.get('/v2/users/search', { q: tag });
      expect(all.body.pagination.total).toBe(4);
      // Words match from their start only.
      expect((await api.get('/v2/users/search', { q: `${tag} velace` })).body.data).toEqual([]);
    });

    it('GET /v2/users/search filters with eq and ne on text, enum and boolean fields', async () => {
      expect(await names({ status: 'suspended' })).toEqual(['Cyd']);
      expect(await names({ status: { eq: 'active' } })).toEqual(['Ada', 'Bob', 'Dee']);
      expect(await names({ status: { ne: 'active' } })).toEqual(['Cyd']);
      expect(await names({ role })).toEqual(['Bob', 'Dee']);
      expect(await names({ role: { ne: role } })).toEqual(['Ada', 'Cyd']);
      expect(await names({ email_verified: true })).toEqual(['Dee']);
      expect(await names({ email_verified: { ne: true } })).toEqual(['Ada', 'Bob', 'Cyd']);
      // Emails compare case-insensitively, as they are unique.
      expect(await names({ email: people.bob!.email.toUpperCase() })).toEqual(['Bob']);
      expect(await names({ first_name: { eq: 'ada' } })).toEqual([]);
    });

    it('GET /v2/users/search filters with gt, gte, lt and lte on numbers and timestamps', async () => {
      expect(await names({ login_count: { gt: 2 } })).toEqual(['Cyd', 'Dee']);
      expect(await names({ login_count: { gte: 2 } })).toEqual(['Bob', 'Cyd', 'Dee']);
      expect(await names({ login_count: { lt: 5 } })).toEqual(['Ada', 'Bob']);
      expect(await names({ login_count: { lte: 5 } })).toEqual(['Ada', 'Bob', 'Cyd']);
      expect(await names({ login_count: { gte: 2, lt: 9 } })).toEqual(['Bob', 'Cyd']);
      expect(await names({ login_count: 0 })).toEqual(['Ada']);

      expect(await names({ last_login: { gt: '2026-01-10T10:00:00Z' } })).toEqual(['Cyd', 'Dee']);
      expect(await names({ last_login: { gte: '2026-01-10T10:00:00Z' } })).toEqual(['Bob', 'Cyd', 'Dee']);
      expect(await names({ last_login: { lt: '2026-03-30T10:00:00Z' } })).toEqual(['Bob', 'Cyd']);
      expect(await names({ last_login: { lte: '2026-03-30T10:00:00+00:00' } })).toEqual([
        'Bob',
        'Cyd',
        'Dee',
      ]);
      expect(await names({ last_login: null })).toEqual(['Ada']);
      expect(await names({ last_login: { ne: null } })).toEqual(['Bob', 'Cyd', 'Dee']);

      const created = Object.values(people)
        .map((u) => u.created_at)
        .sort();
      expect(await names({ created_at: { gte: created[0], lte: created[3] } })).toEqual([
        'Ada',
        'Bob',
        'Cyd',
        'Dee',
      ]);
      expect(await names({ created_at: { gt: created[3] } })).toEqual([]);
      expect(await names({ created_at: { lt: created[0] } })).toEqual([]);
      expect(await names({ updated_at: { gte: '2000-01-01T00:00:00Z' } })).toHaveLength(4);
    });

    it('GET /v2/users/search filters with in and contains', async () => {
      expect(await names({ first_name: { in: ['Ada', 'Dee', 'Nobody'] } })).toEqual(['Ada', 'Dee']);
      expect(await names({ status: { in: ['suspended', 'inactive'] } })).toEqual(['Cyd']);
      expect(await names({ login_count: { in: [2, 9] } })).toEqual(['Bob', 'Dee']);
      expect(await names({ email: { contains: 'analytical' } })).toEqual(['Ada', 'Dee']);
      expect(await names({ email: { contains: 'ANALYTICAL' } })).toEqual(['Ada', 'Dee']);
      expect(await names({ first_name: { contains: 'y' } })).toEqual(['Cyd']);
    });

    it('GET /v2/users/search treats contains as literal text, never as a pattern', async () => {
      // Characters that mean "anything" in LIKE or a regular expression match only themselves.
      expect(await names({ email: { contains: '%' } })).toEqual(['Bob']);
      expect(await names({ email: { contains: '50%off' } })).toEqual(['Bob']);
      expect(await names({ email: { contains: '_' } })).toEqual(['Bob']);
      expect(await names({ email: { contains: '.*' } })).toEqual([]);
      expect(await names({ email: { contains: '^' } })).toEqual([]);
      expect(await names({ first_name: { contains: '(' } })).toEqual([]);
      expect(await names({ 'metadata.note': { contains: 'a.*b' } })).toEqual(['Dee']);
      expect(await names({ 'metadata.note': { contains: '.+' } })).toEqual([]);
      expect(await names({ last_name: { contains: '\\' } })).toEqual([]);
    });

    it('GET /v2/users/search filters on metadata.* with every operator', async () => {
      expect(await names({ 'metadata.plan': 'pro' })).toEqual(['Ada', 'Cyd']);
      expect(await names({ 'metadata.plan': { ne: 'pro' } })).toEqual(['Bob', 'Dee']);
      expect(await names({ 'metadata.plan': { in: ['free', 'enterprise'] } })).toEqual(['Bob', 'Dee']);
      expect(await names({ 'metadata.plan': { contains: 'ter' } })).toEqual(['Dee']);
      expect(await names({ 'metadata.seats': { gt: 3 } })).toEqual(['Cyd', 'Dee']);
      expect(await names({ 'metadata.seats': { gte: 3 } })).toEqual(['Ada', 'Cyd', 'Dee']);
      expect(await names({ 'metadata.seats': { lt: 10 } })).toEqual(['Ada', 'Bob']);
      expect(await names({ 'metadata.seats': { lte: 10 } })).toEqual(['Ada', 'Bob', 'Cyd']);
      expect(await names({ 'metadata.beta': true })).toEqual(['Ada']);
      expect(await names({ 'metadata.beta': false })).toEqual(['Bob']);
      expect(await names({ 'metadata.team.name': 'edge' })).toEqual(['Cyd']);
      expect(await names({ 'metadata.missing': 'x' })).toEqual([]);
      // A number and its text are different values.
      expect(await names({ 'metadata.seats': '3' })).toEqual([]);
    });

    it('GET /v2/users/search combines q, filters, sort arrays and paging', async () => {
      const res = await api.get('/v2/users/search', {
        q: tag,
        filters: JSON.stringify({ 'metadata.plan': { in: ['pro', 'enterprise'] } }),
        sort: JSON.stringify(['metadata_missing_is_not_sortable:asc']),
      });
      expect(res.status).toBe(400);

      const sorted = await api.get('/v2/users/search', {
        q: tag,
        sort: JSON.stringify(['login_count:desc']),
        limit: '2',
      });
      expect(sorted.status).toBe(200);
      expect(sorted.body.data.map((u: ApiUser) => u.first_name)).toEqual(['Dee', 'Cyd']);
      expect(sorted.body.pagination).toMatchObject({ total: 4, limit: 2, has_more: true });
      const next = await api.get('/v2/users/search', {
        q: tag,
        sort: JSON.stringify(['login_count:desc']),
        limit: '2',
        cursor: sorted.body.pagination.next_cursor,
      });
      expect(next.body.data.map((u: ApiUser) => u.first_name)).toEqual(['Bob', 'Ada']);
      expect(next.body.pagination.next_cursor).toBeNull();

      const twoKeys = await api.get('/v2/users/search', {
        q: tag,
        sort: JSON.stringify(['role:asc', 'email:desc']),
      });
      const expected = Object.values(people)
        .sort((a, b) => (a.role === b.role ? (a.email < b.email ? 1 : -1) : a.role < b.role ? -1 : 1))
        .map((u) => u.id);
      expect(twoKeys.body.data.map((u: ApiUser) => u.id)).toEqual(expected);
      // A direction is optional and means ascending.
      const plain = await api.get('/v2/users/search', { q: tag, sort: JSON.stringify(['first_name']) });
      expect(plain.body.data.map((u: ApiUser) => u.first_name)).toEqual(['Ada', 'Bob', 'Cyd', 'Dee']);
    });

    it('GET /v2/users/search returns only the id and the requested fields with fields', async () => {
      const res = await api.get('/v2/users/search', {
        q: `${tag} ada`,
        fields: JSON.stringify(['email', 'metadata']),
      });
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual([
        { id: people.ada!.id, email: people.ada!.email, metadata: people.ada!.metadata },
      ]);
      const withId = await api.get('/v2/users/search', {
        q: `${tag} ada`,
        fields: JSON.stringify(['id', 'status']),
      });
      expect(withId.body.data).toEqual([{ id: people.ada!.id, status: 'active' }]);
    });

    describe('hostile input', () => {
      const cases: [string, Record<string, string>, { field: string; issue: string }][] = [
        [
          'an operator as a field',
          { filters: '{"$where":"1"}' },
          { field: 'filters.$where', issue: FILTERABLE_HINT },
        ],
        [
          'a backend operator as an operator',
          { filters: '{"role":{"$ne":null}}' },
          { field: 'filters.role.$ne', issue: OPERATOR_HINT },
        ],
        [
          'an operator inside a metadata path',
          { filters: '{"metadata.$gt":1}' },
          { field: 'filters.metadata.$gt', issue: FILTERABLE_HINT },
        ],
        [
          'a dotted path through metadata with an operator',
          { filters: '{"metadata.a.$where":"1"}' },
          { field: 'filters.metadata.a.$where', issue: FILTERABLE_HINT },
        ],
        [
          'an empty metadata path',
          { filters: '{"metadata.":1}' },
          { field: 'filters.metadata.', issue: FILTERABLE_HINT },
        ],
        [
          'a secret field',
          { filters: '{"password_hash":{"ne":null}}' },
          { field: 'filters.password_hash', issue: FILTERABLE_HINT },
        ],
        [
          'an internal field',
          { filters: '{"deleted_at":{"ne":null}}' },
          { field: 'filters.deleted_at', issue: FILTERABLE_HINT },
        ],
        [
          '__proto__',
          { filters: '{"__proto__":{"eq":1}}' },
          { field: 'filters.__proto__', issue: FILTERABLE_HINT },
        ],
        [
          'constructor',
          { filters: '{"constructor":"x"}' },
          { field: 'filters.constructor', issue: FILTERABLE_HINT },
        ],
        [
          'toString',
          { filters: '{"toString":{"in":["x"]}}' },
          { field: 'filters.toString', issue: FILTERABLE_HINT },
        ],
        [
          'an unknown field',
          { filters: '{"nickname":"x"}' },
          { field: 'filters.nickname', issue: FILTERABLE_HINT },
        ],
        [
          'an unknown operator',
          { filters: '{"role":{"like":"%"}}' },
          { field: 'filters.role.like', issue: OPERATOR_HINT },
        ],
        [
          'a regex operator',
          { filters: '{"email":{"$regex":".*"}}' },
          { field: 'filters.email.$regex', issue: OPERATOR_HINT },
        ],
        ['text that is not JSON', { filters: '{role:admin}' }, { field: 'filters', issue: 'Not valid JSON' }],
        [
          'an array where the filters object belongs',
          { filters: '[{"role":"admin"}]' },
          { field: 'filters', issue: 'Must be a JSON object of field → value or { op: value }' },
        ],
        [
          'a string where the filters object belongs',
          { filters: '"role=admin"' },
          { field: 'filters', issue: 'Must be a JSON object of field → value or { op: value }' },
        ],
        [
          'null where the filters object belongs',
          { filters: 'null' },
          { field: 'filters', issue: 'Must be a JSON object of field → value or { op: value }' },
        ],
        [
          'an array where a value belongs',
          { filters: '{"role":["admin","user"]}' },
          { field: 'filters.role.eq', issue: 'Must be a string of at most 256 characters' },
        ],
        [
          'an object where a value belongs',
          { filters: '{"role":{"eq":{"$gt":""}}}' },
          { field: 'filters.role.eq', issue: 'Must be a string of at most 256 characters' },
        ],
        [
          'an object as a metadata value',
          { filters: '{"metadata.plan":{"eq":{"$ne":null}}}' },
          { field: 'filters.metadata.plan.eq', issue: 'Must be a string, number, boolean or null' },
        ],
        [
          'an object inside in',
          { filters: '{"metadata.plan":{"in":[{"$ne":null}]}}' },
          { field: 'filters.metadata.plan.in[0]', issue: 'Must be a string, number, boolean or null' },
        ],
        [
          'in without a list',
          { filters: '{"role":{"in":"admin"}}' },
          { field: 'filters.role.in', issue: 'Must be a list of 1 to 100 values' },
        ],
        [
          'an empty in list',
          { filters: '{"role":{"in":[]}}' },
          { field: 'filters.role.in', issue: 'Must be a list of 1 to 100 values' },
        ],
        [
          'a too long in list',
          { filters: JSON.stringify({ role: { in: Array.from({ length: 101 }, (_, i) => `r${i}`) } }) },
          { field: 'filters.role.in', issue: 'Must be a list of 1 to 100 values' },
        ],
        [
          'no operator',
          { filters: '{"role":{}}' },
          { field: 'filters.role', issue: 'Needs at least one operator' },
        ],
        [
          'text for a number',
          { filters: '{"login_count":{"gt":"5"}}' },
          { field: 'filters.login_count.gt', issue: 'Must be a number' },
        ],
        [
          'a date that is not one',
          { filters: '{"created_at":{"gt":"yesterday"}}' },
          { field: 'filters.created_at.gt', issue: 'Must be an RFC 3339 timestamp' },
        ],
        [
          'text for a boolean',
          { filters: '{"email_verified":"true"}' },
          { field: 'filters.email_verified.eq', issue: 'Must be true or false' },
        ],
        [
          'contains on a number',
          { filters: '{"login_count":{"contains":"1"}}' },
          { field: 'filters.login_count.contains', issue: 'contains works on text fields only' },
        ],
        [
          'contains with an object',
          { filters: '{"email":{"contains":{"$regex":"."}}}' },
          { field: 'filters.email.contains', issue: 'Must be a string of at most 256 characters' },
        ],
        [
          'gt with null',
          { filters: '{"login_count":{"gt":null}}' },
          { field: 'filters.login_count.gt', issue: 'Must be a number' },
        ],
        ['sort that is not JSON', { sort: 'email:asc' }, { field: 'sort', issue: 'Not valid JSON' }],
        [
          'sort as an object',
          { sort: '{"email":1}' },
          { field: 'sort', issue: 'Must be a JSON array of "field:dir"' },
        ],
        [
          'sort by a secret',
          { sort: '["password_hash:asc"]' },
          {
            field: 'sort[0]',
            issue:
              'Use "field:asc" or "field:desc" with a field of email, first_name, last_name, role, status, login_count, last_login, created_at, updated_at',
          },
        ],
        [
          'sort with an object inside',
          { sort: '[{"$natural":-1}]' },
          {
            field: 'sort[0]',
            issue:
              'Use "field:asc" or "field:desc" with a field of email, first_name, last_name, role, status, login_count, last_login, created_at, updated_at',
          },
        ],
        [
          'fields naming a secret',
          { fields: '["email","password_hash"]' },
          {
            field: 'fields',
            issue:
              'Must be a JSON array of id, email, first_name, last_name, role, status, email_verified, mfa_enabled, created_at, updated_at, last_login, metadata, plan, identities',
          },
        ],
        [
          'fields as an object',
          { fields: '{"email":1}' },
          {
            field: 'fields',
            issue:
              'Must be a JSON array of id, email, first_name, last_name, role, status, email_verified, mfa_enabled, created_at, updated_at, last_login, metadata, plan, identities',
          },
        ],
        ['fields that are not JSON', { fields: 'email' }, { field: 'fields', issue: 'Not valid JSON' }],
      ];

      it.each(cases)(
        'GET /v2/users/search refuses %s with 400 VALIDATION_ERROR',
        async (_name, query, detail) => {
          const res = await api.get('/v2/users/search', query);
          expect(res.status).toBe(400);
          expect(res.body.error.code).toBe('VALIDATION_ERROR');
          expect(res.body.error.details).toEqual([expect.objectContaining(detail)]);
          expect(res.body.data).toBeUndefined();
        },
      );

      it('GET /v2/users/search treats operator-like text in values as plain values', async () => {
        expect(await names({ first_name: '$where' })).toEqual([]);
        expect(await names({ first_name: { eq: "' OR 1=1 --" } })).toEqual([]);
        expect(await names({ 'metadata.plan': { in: ['$ne', 'pro'] } })).toEqual(['Ada', 'Cyd']);
        const q = await api.get('/v2/users/search', { q: `${tag} $where` });
        expect(q.status).toBe(200);
        expect(q.body.data).toEqual([]);
        const quoted = await api.get('/v2/users/search', { q: `${tag} ") OR 1=1 --` });
        expect(quoted.status).toBe(200);
        expect(quoted.body.data).toEqual([]);
        // Wildcards of LIKE or of a regular expression match only themselves in q, too; word
        // separators ("_", ".", "\\") are not terms at all, so they leave just the tag.
        for (const [term, found] of [
          ['%', 0],
          ['.*', 0],
          ['*', 0],
          ['[a-z]', 0],
          ['^', 0],
          ['_', 4],
          ['.', 4],
          ['\\', 4],
        ] as const) {
          const res = await api.get('/v2/users/search', { q: `${tag} ${term}` });
          expect({ term, status: res.status, found: res.body.data.length }).toEqual({
            term,
            status: 200,
            found,
          });
        }
      });

      it('GET /v2/users/search refuses an over-long filter value with 400 naming it', async () => {
        // The JSON text itself is bounded by the request-head limit (431); its values by the schema.
        const res = await api.get('/v2/users/search', {
          filters: JSON.stringify({ first_name: 'x'.repeat(5000) }),
        });
        expect(res.status).toBe(400);
        expect(res.body.error.details).toEqual([
          expect.objectContaining({
            field: 'filters.first_name.eq',
            issue: 'Must be a string of at most 256 characters',
          }),
        ]);
      });

      it('GET /v2/users/search refuses null for operators other than eq and ne, and an empty contains, with 400 (they reached the store as a 500)', async () => {
        for (const [filters, field, issue] of [
          [{ 'metadata.team': { lte: null } }, 'filters.metadata.team.lte', 'Only eq and ne take null'],
          [
            { 'metadata.team': { in: ['a', null] } },
            'filters.metadata.team.in[1]',
            'Only eq and ne take null',
          ],
          [{ first_name: { contains: '' } }, 'filters.first_name.contains', 'Must not be empty'],
        ] as const) {
          const res = await api.get('/v2/users/search', { filters: JSON.stringify(filters) });
          expect({ filters, status: res.status }).toEqual({ filters, status: 400 });
          expect(res.body.error).toMatchObject({ code: 'VALIDATION_ERROR', details: [{ field, issue }] });
        }
        const eqNull = await api.get('/v2/users/search', {
          filters: JSON.stringify({ 'metadata.team': { ne: null } }),
        });
        expect(eqNull.status).toBe(200);
      });
    });
  },
);
