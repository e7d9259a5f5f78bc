/**
 * /v2/users: listing (offset and cursor pages, filters, multi-field sort, search), creation with
 * every documented refusal, reading with includes, partial updates, soft and hard deletion,
 * restore, preferences, activity, role links and password handling — on every backend.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  adminApi,
  RFC3339,
  uniqueEmail,
  uniqueWord,
  type AdminApi,
  type ApiUser,
} from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const STRONG_PASSWORD = 'violet-anchor-glacier-91-trombone';

describe.each(availableBackends())(
  '/v2/users with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    /** Users sharing a last name no other test uses, so `search` finds exactly them. */
    async function family(count: number, over: (i: number) => Record<string, unknown> = () => ({})) {
      const word = uniqueWord();
      const users: ApiUser[] = [];
      for (let i = 0; i < count; i += 1) users.push(await api.createUser({ last_name: word, ...over(i) }));
      return { word, users };
    }

    describe('GET /v2/users', () => {
      it('GET /v2/users pages with limit and offset and reports total, has_more and next_cursor', async () => {
        const { word, users } = await family(5);
        const first = await api.get('/v2/users', { search: word, limit: 2 });
        expect(first.status).toBe(200);
        expect(first.body.pagination).toEqual({
          total: 5,
          limit: 2,
          offset: 0,
          has_more: true,
          next_cursor: expect.any(String),
        });
        expect(first.body.data).toHaveLength(2);

        const last = await api.get('/v2/users', { search: word, limit: 2, offset: 4 });
        expect(last.status).toBe(200);
        expect(last.body.pagination).toEqual({
          total: 5,
          limit: 2,
          offset: 4,
          has_more: false,
          next_cursor: null,
        });
        expect(last.body.data).toHaveLength(1);

        // Default order: newest first, and the offset pages together hold every user once.
        const all = await api.get('/v2/users', { search: word, limit: 100 });
        const ids = all.body.data.map((u: ApiUser) => u.id);
        expect(new Set(ids)).toEqual(new Set(users.map((u) => u.id)));
        const created = all.body.data.map((u: ApiUser) => u.created_at);
        expect([...created].sort().reverse()).toEqual(created);
        const middle = await api.get('/v2/users', { search: word, limit: 2, offset: 2 });
        expect(
          [...first.body.data, ...middle.body.data, ...last.body.data].map((u: ApiUser) => u.id),
        ).toEqual(ids);
      });

      it('GET /v2/users defaults to 25 per page', async () => {
        const res = await api.get('/v2/users');
        expect(res.status).toBe(200);
        expect(res.body.pagination.limit).toBe(25);
        expect(res.body.pagination.offset).toBe(0);
      });

      it('GET /v2/users walks every page with next_cursor', async () => {
        const { word, users } = await family(5);
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let page = 0; page < 10; page += 1) {
          const res = await api.get('/v2/users', { search: word, limit: 2, ...(cursor ? { cursor } : {}) });
          expect(res.status).toBe(200);
          seen.push(...res.body.data.map((u: ApiUser) => u.id));
          cursor = res.body.pagination.next_cursor ?? undefined;
          expect(res.body.pagination.has_more).toBe(cursor !== undefined);
          if (!cursor) break;
        }
        expect(seen).toHaveLength(5);
        expect(new Set(seen)).toEqual(new Set(users.map((u) => u.id)));
      });

      it('GET /v2/users filters by role and by status', async () => {
        const role = await api.createRole();
        const { word } = await family(3, (i) => ({
          role: role.name,
          status: i === 0 ? 'suspended' : 'active',
        }));
        await family(1); // someone else, with the default role
        const byRole = await api.get('/v2/users', { role: role.name });
        expect(byRole.status).toBe(200);
        expect(byRole.body.pagination.total).toBe(3);
        expect(byRole.body.data.every((u: ApiUser) => u.role === role.name && u.last_name === word)).toBe(
          true,
        );

        const suspended = await api.get('/v2/users', { role: role.name, status: 'suspended' });
        expect(suspended.body.pagination.total).toBe(1);
        expect(suspended.body.data[0].status).toBe('suspended');
        const active = await api.get('/v2/users', { role: role.name, status: 'active' });
        expect(active.body.pagination.total).toBe(2);
      });

      it('GET /v2/users sorts by several fields with field:dir,field:dir', async () => {
        const word = uniqueWord();
        const names = [
          ['Bea', 'Adams'],
          ['Abe', 'Baker'],
          ['Cal', 'Adams'],
          ['Abe', 'Adams'],
        ] as const;
        for (const [first, last] of names) {
          await api.createUser({ first_name: first, last_name: last, metadata: { family: word } });
        }
        // Tagged through metadata, so a filter finds exactly these four whatever their names.
        const res = await api.get('/v2/users/search', {
          filters: JSON.stringify({ 'metadata.family': word }),
          sort: JSON.stringify(['last_name:asc', 'first_name:desc']),
        });
        expect(res.status).toBe(200);
        expect(res.body.data.map((u: ApiUser) => `${u.first_name} ${u.last_name}`)).toEqual([
          'Cal Adams',
          'Bea Adams',
          'Abe Adams',
          'Abe Baker',
        ]);

        const { word: w2 } = await family(4, (i) => ({ first_name: ['Dee', 'Ann', 'Dee', 'Ann'][i] }));
        const listed = await api.get('/v2/users', { search: w2, sort: 'first_name:asc,created_at:desc' });
        expect(listed.status).toBe(200);
        const rows = listed.body.data as ApiUser[];
        expect(rows.map((u) => u.first_name)).toEqual(['Ann', 'Ann', 'Dee', 'Dee']);
        expect(rows[0]!.created_at >= rows[1]!.created_at).toBe(true);
        expect(rows[2]!.created_at >= rows[3]!.created_at).toBe(true);
      });

      it('GET /v2/users finds users by the start of a name or of an email part with search', async () => {
        const word = uniqueWord('Qx');
        const email = uniqueEmail(word.toLowerCase());
        const a = await api.createUser({ first_name: word, last_name: 'Person' });
        const b = await api.createUser({ email });
        const res = await api.get('/v2/users', { search: word.slice(0, 7) });
        expect(res.status).toBe(200);
        expect(new Set(res.body.data.map((u: ApiUser) => u.id))).toEqual(new Set([a.id, b.id]));
        const both = await api.get('/v2/users', { search: `${word} person` });
        expect(both.body.data.map((u: ApiUser) => u.id)).toEqual([a.id]);
      });

      it('GET /v2/users rejects out-of-range paging and unknown filters with 400 VALIDATION_ERROR', async () => {
        const cases: [Record<string, string>, { field: string; issue: string; provided?: unknown }][] = [
          [{ limit: '0' }, { field: 'limit', issue: 'At least 1', provided: '0' }],
          [{ limit: '101' }, { field: 'limit', issue: 'At most 100', provided: '101' }],
          [{ offset: '-1' }, { field: 'offset', issue: 'At least 0', provided: '-1' }],
          [{ limit: 'ten' }, { field: 'limit', issue: 'Must be a decimal integer', provided: 'ten' }],
          [{ limit: '0x10' }, { field: 'limit', issue: 'Must be a decimal integer', provided: '0x10' }],
          [{ limit: '1e1' }, { field: 'limit', issue: 'Must be a decimal integer', provided: '1e1' }],
          [
            { status: 'deleted' },
            { field: 'status', issue: 'One of active, suspended, inactive', provided: 'deleted' },
          ],
          [
            { sort: 'password_hash:asc' },
            {
              field: 'sort[0]',
              issue:
                'Use "field:asc" or "field:desc" with a field of email, first_name, last_name, role, status, login_count, last_login, created_at, updated_at',
              provided: 'password_hash:asc',
            },
          ],
          [
            { sort: 'email:sideways' },
            expect.objectContaining({ field: 'sort[0]', provided: 'email:sideways' }) as never,
          ],
        ];
        for (const [query, detail] of cases) {
          const res = await api.get('/v2/users', query);
          expect({ query, status: res.status, code: res.body.error?.code }).toEqual({
            query,
            status: 400,
            code: 'VALIDATION_ERROR',
          });
          expect(res.body.error.details).toEqual([detail]);
        }
        // A field named twice adds nothing to the order (the OpenAPI pattern cannot forbid it): its
        // first mention counts.
        const { word } = await family(3);
        const twice = await api.get('/v2/users', { search: word, sort: 'email:desc,email:asc' });
        const once = await api.get('/v2/users', { search: word, sort: 'email:desc' });
        expect(twice.status).toBe(200);
        expect(twice.body.data.map((u: { id: string }) => u.id)).toEqual(
          once.body.data.map((u: { id: string }) => u.id),
        );
      });

      it('GET /v2/users refuses a cursor replayed with another sort, or forged, with 422 INVALID_CURSOR, and one that is not base64url with 400', async () => {
        const { word } = await family(3);
        const first = await api.get('/v2/users', { search: word, limit: 1, sort: 'email:asc' });
        const cursor = first.body.pagination.next_cursor as string;
        expect(cursor).toEqual(expect.any(String));
        const same = await api.get('/v2/users', { search: word, limit: 1, sort: 'email:asc', cursor });
        expect(same.status).toBe(200);

        for (const query of [
          { search: word, limit: 1, sort: 'email:desc', cursor },
          { search: word, limit: 1, cursor },
          { search: word, limit: 1, sort: 'email:asc', cursor: 'not-a-cursor' },
          { search: word, limit: 1, sort: 'email:asc', cursor: `${cursor}x` },
        ]) {
          const res = await api.get('/v2/users', query);
          expect(res.status).toBe(422);
          expect(res.body.error).toMatchObject({
            code: 'INVALID_CURSOR',
            details: [{ field: 'cursor', issue: 'Not a cursor of this list and sort order' }],
          });
        }
        const notBase64url = await api.get('/v2/users', { cursor: `${cursor}=` });
        expect(notBase64url.status).toBe(400);
        expect(notBase64url.body.error).toMatchObject({
          code: 'VALIDATION_ERROR',
          details: [{ field: 'cursor', issue: 'Not a cursor (base64url text)' }],
        });
      });

      it('GET /v2/users never returns secrets or internal fields', async () => {
        const user = await api.createUser({ password: STRONG_PASSWORD });
        const res = await api.get('/v2/users', { search: user.email.split('@')[0]! });
        expect(res.body.data).toHaveLength(1);
        expect(Object.keys(res.body.data[0]).sort()).toEqual(
          [
            'id',
            'email',
            'first_name',
            'last_name',
            'role',
            'status',
            'email_verified',
            'mfa_enabled',
            'created_at',
            'updated_at',
            'last_login',
            'metadata',
            'plan',
            'identities',
          ].sort(),
        );
        expect(JSON.stringify(res.body)).not.toMatch(/argon2|password|preferences|deleted_at/);
      });
    });

    describe('POST /v2/users', () => {
      it('POST /v2/users creates a user and answers 201 with exactly the documented shape', async () => {
        const email = uniqueEmail('ada');
        const res = await api.post('/v2/users', {
          email: `  ${email}  `,
          first_name: 'Ada',
          last_name: 'Lovelace',
          metadata: { department: 'engineering', level: 3, tags: ['a', 'b'], nested: { ok: true } },
          send_welcome_email: true,
        });
        expect(res.status).toBe(201);
        expect(res.body).toEqual({
          id: expect.any(String),
          email,
          first_name: 'Ada',
          last_name: 'Lovelace',
          role: 'user',
          status: 'active',
          email_verified: false,
          mfa_enabled: false,
          created_at: expect.stringMatching(RFC3339),
          updated_at: expect.stringMatching(RFC3339),
          last_login: null,
          metadata: { department: 'engineering', level: 3, tags: ['a', 'b'], nested: { ok: true } },
          plan: null,
          identities: [],
        });
        expect(res.headers.location).toBe(`/v2/users/${res.body.id}`);
        expect(res.headers['x-request-id']).toMatch(/\S/);
        const got = await api.get(`/v2/users/${res.body.id}`);
        expect(got.body).toEqual(res.body);
      });

      it('POST /v2/users accepts a strong password and never returns it', async () => {
        const email = uniqueEmail();
        const res = await api.post('/v2/users', {
          email,
          first_name: 'Pat',
          last_name: 'Word',
          role: 'admin',
          status: 'suspended',
          email_verified: true,
          password: STRONG_PASSWORD,
        });
        expect(res.status).toBe(201);
        expect(res.body).toMatchObject({ role: 'admin', status: 'suspended', email_verified: true });
        expect(JSON.stringify(res.body)).not.toContain(STRONG_PASSWORD);
        expect(Object.keys(res.body)).not.toContain('password');
        expect(Object.keys(res.body)).not.toContain('password_hash');
        const stored = await t.stores.durable.users.findById(res.body.id);
        expect(stored!.password_hash).toMatch(/^\$argon2id\$/);
        const got = await api.get(`/v2/users/${res.body.id}`, { include: 'roles,permissions,preferences' });
        expect(JSON.stringify(got.body)).not.toMatch(/argon2|password/);
      });

      it('POST /v2/users rejects an invalid email with 400 VALIDATION_ERROR naming the field', async () => {
        const res = await api.post('/v2/users', {
          email: 'invalid-email',
          first_name: 'A',
          last_name: 'B',
        });
        expect(res.status).toBe(400);
        expect(res.body).toEqual({
          error: {
            code: 'VALIDATION_ERROR',
            message: 'The request contains invalid data',
            details: [{ field: 'email', issue: 'Invalid email format', provided: 'invalid-email' }],
            request_id: res.headers['x-request-id'],
            timestamp: expect.stringMatching(RFC3339),
          },
        });
        for (const email of ['a@', '@b.com', 'a b@c.com', 'a@b@c.com', 42]) {
          const bad = await api.post('/v2/users', { email, first_name: 'A', last_name: 'B' });
          expect(bad.status).toBe(400);
          expect(bad.body.error.code).toBe('VALIDATION_ERROR');
          expect(bad.body.error.details).toEqual([
            expect.objectContaining({ field: 'email', issue: 'Invalid email format' }),
          ]);
        }
      });

      it('POST /v2/users rejects missing required fields with 400 MISSING_REQUIRED_FIELD', async () => {
        const res = await api.post('/v2/users', { first_name: 'Only' });
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('MISSING_REQUIRED_FIELD');
        expect(res.body.error.details).toEqual([
          { field: 'email', issue: 'Required' },
          { field: 'last_name', issue: 'Required' },
        ]);
        const empty = await api.post('/v2/users', {});
        expect(empty.body.error.code).toBe('MISSING_REQUIRED_FIELD');
        expect(empty.body.error.details.map((d: { field: string }) => d.field)).toEqual([
          'email',
          'first_name',
          'last_name',
        ]);
        // Present but blank is invalid rather than missing.
        const blank = await api.post('/v2/users', { email: uniqueEmail(), first_name: ' ', last_name: 'B' });
        expect(blank.status).toBe(400);
        expect(blank.body.error.code).toBe('VALIDATION_ERROR');
        expect(blank.body.error.details).toEqual([
          { field: 'first_name', issue: 'Must not be empty', provided: ' ' },
        ]);
      });

      it('POST /v2/users rejects an unknown role with 400 INVALID_ROLE', async () => {
        const res = await api.post('/v2/users', {
          email: uniqueEmail(),
          first_name: 'A',
          last_name: 'B',
          role: 'wizard',
        });
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({
          code: 'INVALID_ROLE',
          message: 'The role "wizard" does not exist',
          details: [{ field: 'role', issue: 'Unknown role', provided: 'wizard' }],
        });
      });

      it('POST /v2/users rejects a short or weak password with 422 BUSINESS_RULE_VIOLATION on password (the policy is no schema rule)', async () => {
        const email = uniqueEmail();
        const short = await api.post('/v2/users', {
          email,
          first_name: 'A',
          last_name: 'B',
          password: 'Sh0rt!',
        });
        expect(short.status).toBe(422);
        expect(short.body.error).toMatchObject({
          code: 'BUSINESS_RULE_VIOLATION',
          message: 'The password does not meet the password policy',
          details: [{ field: 'password', issue: 'Use at least 12 characters' }],
        });
        expect(JSON.stringify(short.body)).not.toContain('Sh0rt!');
        // An empty password is refused, not taken for "no password".
        const empty = await api.post('/v2/users', { email, first_name: 'A', last_name: 'B', password: '' });
        expect(empty.status).toBe(422);
        expect(empty.body.error.details).toEqual([
          { field: 'password', issue: 'Use at least 12 characters' },
        ]);

        for (const password of ['passwordpassword', '123456789012', 'aaaaaaaaaaaaaaaa']) {
          const weak = await api.post('/v2/users', { email, first_name: 'A', last_name: 'B', password });
          expect(weak.status).toBe(422);
          expect(weak.body.error.code).toBe('BUSINESS_RULE_VIOLATION');
          expect(weak.body.error.details).toEqual([{ field: 'password', issue: expect.any(String) }]);
          expect(JSON.stringify(weak.body)).not.toContain(password);
        }
        // The user's own name makes a weak password too.
        const personal = await api.post('/v2/users', {
          email: uniqueEmail(),
          first_name: 'Bartholomew',
          last_name: 'Fitzgerald',
          password: 'BartholomewFitzgerald',
        });
        expect(personal.status).toBe(422);
        expect(personal.body.error.details).toEqual([{ field: 'password', issue: expect.any(String) }]);
        expect(await t.stores.durable.users.findByEmail(email)).toBeNull();
      });

      it('POST /v2/users rejects a duplicate email in another case with 409 USER_ALREADY_EXISTS', async () => {
        const email = uniqueEmail('Dup');
        await api.createUser({ email });
        for (const variant of [email.toUpperCase(), email.toLowerCase(), ` ${email} `]) {
          const res = await api.post('/v2/users', { email: variant, first_name: 'A', last_name: 'B' });
          expect(res.status).toBe(409);
          expect(res.body.error).toMatchObject({
            code: 'USER_ALREADY_EXISTS',
            message: 'A user with this email already exists',
          });
        }
      });

      it('POST /v2/users answers 20 parallel creations of one email with one 201 and nineteen 409', async () => {
        const email = uniqueEmail('race');
        const responses = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            api.post('/v2/users', {
              email: i % 2 ? email.toUpperCase() : email,
              first_name: `Racer${i}`,
              last_name: 'Parallel',
            }),
          ),
        );
        const statuses = responses.map((r) => r.status).sort();
        expect(statuses).toEqual([201, ...Array<number>(19).fill(409)]);
        for (const res of responses.filter((r) => r.status === 409)) {
          expect(res.body.error.code).toBe('USER_ALREADY_EXISTS');
        }
        const list = await api.get('/v2/users/search', {
          filters: JSON.stringify({ email: email.toLowerCase() }),
        });
        expect(list.body.pagination.total).toBe(1);
      });

      it('POST /v2/users refuses metadata keys with "$" or "." and other unsafe metadata', async () => {
        const cases: [unknown, string, string][] = [
          [{ $where: '1' }, 'Key "$where" must be 1 to 64 letters, digits, "-" or "_"', 'metadata'],
          [{ 'a.b': 1 }, 'Key "a.b" must be 1 to 64 letters, digits, "-" or "_"', 'metadata'],
          [{ ok: { $gt: 1 } }, 'Key "$gt" must be 1 to 64 letters, digits, "-" or "_"', 'metadata.ok'],
          [
            { list: [{ 'x.y': 1 }] },
            'Key "x.y" must be 1 to 64 letters, digits, "-" or "_"',
            'metadata.list.0',
          ],
          [{ '': 1 }, 'Key "" must be 1 to 64 letters, digits, "-" or "_"', 'metadata'],
          [
            { a: { b: { c: { d: { e: { f: 1 } } } } } },
            'Nested deeper than 5 levels',
            'metadata.a.b.c.d.e.f',
          ],
          [{ big: 'x'.repeat(17_000) }, 'At most 16384 bytes of JSON', 'metadata'],
          [{ constructor: 1 }, 'Key "constructor" is reserved', 'metadata'],
        ];
        for (const [metadata, issue, field] of cases) {
          const res = await api.post('/v2/users', {
            email: uniqueEmail(),
            first_name: 'A',
            last_name: 'B',
            metadata,
          });
          expect({ metadata, status: res.status }).toEqual({ metadata, status: 400 });
          expect(res.body.error.code).toBe('VALIDATION_ERROR');
          expect(res.body.error.details).toEqual([expect.objectContaining({ field, issue })]);
        }
        for (const metadata of [['a'], 'text', 5]) {
          const res = await api.post('/v2/users', {
            email: uniqueEmail(),
            first_name: 'A',
            last_name: 'B',
            metadata,
          });
          expect(res.status).toBe(400);
          expect(res.body.error.details).toEqual([
            expect.objectContaining({ field: 'metadata', issue: 'Must be a JSON object' }),
          ]);
        }
      });

      it('POST /v2/users answers a non-JSON body with 415 and broken JSON with 400 MALFORMED_JSON', async () => {
        const form = await api.post('/v2/users').type('form').send({ email: uniqueEmail() });
        expect(form.status).toBe(415);
        expect(form.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
        const broken = await api.post('/v2/users').set('Content-Type', 'application/json').send('{"email":');
        expect(broken.status).toBe(400);
        expect(broken.body.error.code).toBe('MALFORMED_JSON');
        const array = await api.post('/v2/users', [{ email: uniqueEmail() }]);
        expect(array.status).toBe(400);
        expect(array.body.error.code).toBe('VALIDATION_ERROR');
      });
    });

    describe('GET /v2/users/{id}', () => {
      it('GET /v2/users/{id} adds roles, permissions (the union of every role) and preferences with include', async () => {
        const primary = await api.createRole({ permissions: ['reports:read', 'shared:use'] });
        const linked = await api.createRole({ permissions: ['reports:write', 'shared:use'] });
        const user = await api.createUser({ role: primary.name });
        expect((await api.post(`/v2/users/${user.id}/roles/${linked.id}`)).status).toBe(200);
        await api.put(`/v2/users/${user.id}/preferences`, { theme: 'dark' });

        const res = await api.get(`/v2/users/${user.id}`, { include: 'roles,permissions,preferences' });
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          ...user,
          updated_at: expect.stringMatching(RFC3339),
          roles: [
            {
              id: primary.id,
              name: primary.name,
              display_name: primary.display_name,
              permissions: ['reports:read', 'shared:use'],
            },
            {
              id: linked.id,
              name: linked.name,
              display_name: linked.display_name,
              permissions: ['reports:write', 'shared:use'],
            },
          ],
          permissions: ['reports:read', 'reports:write', 'shared:use'],
          preferences: { theme: 'dark' },
        });

        const plain = await api.get(`/v2/users/${user.id}`);
        expect(Object.keys(plain.body)).not.toEqual(expect.arrayContaining(['roles']));
        expect(plain.body.permissions).toBeUndefined();
        expect(plain.body.preferences).toBeUndefined();

        const onlyPermissions = await api.get(`/v2/users/${user.id}`, { include: 'permissions' });
        expect(onlyPermissions.body.permissions).toEqual(['reports:read', 'reports:write', 'shared:use']);
        expect(onlyPermissions.body.roles).toBeUndefined();
      });

      it('GET /v2/users/{id} rejects an unknown include with 400 VALIDATION_ERROR', async () => {
        const user = await api.createUser();
        const res = await api.get(`/v2/users/${user.id}`, { include: 'roles,secrets' });
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({
          code: 'VALIDATION_ERROR',
          details: [
            {
              field: 'include',
              issue: 'Unknown include "secrets"; use roles, permissions, preferences',
              provided: 'roles,secrets',
            },
          ],
        });
      });

      it('GET /v2/users/{id} answers an unknown id with 404 USER_NOT_FOUND', async () => {
        for (const id of ['usr_does_not_exist', '000000000000000000000000', "1' OR '1'='1"]) {
          const res = await api.get(`/v2/users/${encodeURIComponent(id)}`);
          expect(res.status).toBe(404);
          expect(res.body.error).toMatchObject({ code: 'USER_NOT_FOUND', message: 'User not found' });
        }
      });
    });

    describe('PUT /v2/users/{id}', () => {
      it('PUT /v2/users/{id} changes only the fields present', async () => {
        const role = await api.createRole();
        const user = await api.createUser({ first_name: 'Old', last_name: 'Name', metadata: { keep: 1 } });
        const res = await api.put(`/v2/users/${user.id}`, { first_name: 'New' });
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ ...user, first_name: 'New', updated_at: expect.stringMatching(RFC3339) });
        expect(res.body.updated_at >= user.updated_at).toBe(true);

        const more = await api.put(`/v2/users/${user.id}`, {
          last_name: 'Other',
          role: role.name,
          status: 'inactive',
          email_verified: true,
          metadata: { replaced: true },
        });
        expect(more.status).toBe(200);
        expect(more.body).toMatchObject({
          first_name: 'New',
          last_name: 'Other',
          role: role.name,
          status: 'inactive',
          email_verified: true,
          metadata: { replaced: true },
        });
        expect((await api.get(`/v2/users/${user.id}`)).body).toEqual(more.body);

        const email = uniqueEmail('moved');
        const moved = await api.put(`/v2/users/${user.id}`, { email });
        expect(moved.status).toBe(200);
        expect(moved.body.email).toBe(email);
      });

      it('PUT /v2/users/{id} refuses an unknown field with 400 VALIDATION_ERROR naming it', async () => {
        const user = await api.createUser();
        for (const field of ['password', 'id', 'created_at', 'login_count', 'nickname']) {
          const res = await api.put(`/v2/users/${user.id}`, { first_name: 'X', [field]: 'value' });
          expect(res.status).toBe(400);
          expect(res.body.error).toMatchObject({
            code: 'VALIDATION_ERROR',
            details: [{ field, issue: 'Unknown field' }],
          });
        }
        expect((await api.get(`/v2/users/${user.id}`)).body.first_name).toBe('Test');
      });

      it('PUT /v2/users/{id} rejects invalid values with 400 and the field', async () => {
        const user = await api.createUser();
        const cases: [Record<string, unknown>, string, string][] = [
          [{ email: 'nope' }, 'email', 'Invalid email format'],
          [{ status: 'banned' }, 'status', 'One of active, suspended, inactive'],
          [{ first_name: '' }, 'first_name', 'Must not be empty'],
          [{ metadata: { $set: 1 } }, 'metadata', 'Key "$set" must be 1 to 64 letters, digits, "-" or "_"'],
        ];
        for (const [body, field, issue] of cases) {
          const res = await api.put(`/v2/users/${user.id}`, body);
          expect(res.status).toBe(400);
          expect(res.body.error.code).toBe('VALIDATION_ERROR');
          expect(res.body.error.details).toEqual([expect.objectContaining({ field, issue })]);
        }
        const role = await api.put(`/v2/users/${user.id}`, { role: 'ghost' });
        expect(role.status).toBe(400);
        expect(role.body.error).toMatchObject({
          code: 'INVALID_ROLE',
          details: [{ field: 'role', issue: 'Unknown role', provided: 'ghost' }],
        });
      });

      it('PUT /v2/users/{id} refuses an email another user holds with 409 USER_ALREADY_EXISTS', async () => {
        const other = await api.createUser();
        const user = await api.createUser();
        const res = await api.put(`/v2/users/${user.id}`, { email: other.email.toUpperCase() });
        expect(res.status).toBe(409);
        expect(res.body.error.code).toBe('USER_ALREADY_EXISTS');
        expect((await api.get(`/v2/users/${user.id}`)).body.email).toBe(user.email);
        // A soft-deleted user's email stays reserved against updates too.
        await api.delete(`/v2/users/${other.id}`, { soft_delete: true });
        const again = await api.put(`/v2/users/${user.id}`, { email: other.email });
        expect(again.status).toBe(409);
      });

      it('PUT /v2/users/{id} answers an unknown id with 404 USER_NOT_FOUND', async () => {
        const res = await api.put('/v2/users/usr_nobody', { first_name: 'X' });
        expect(res.status).toBe(404);
        expect(res.body.error.code).toBe('USER_NOT_FOUND');
      });
    });

    describe('DELETE /v2/users/{id} and POST /v2/users/{id}/restore', () => {
      it('DELETE /v2/users/{id}?soft_delete=true hides the user, keeps the email reserved, and restore brings them back', async () => {
        const word = uniqueWord();
        const user = await api.createUser({ last_name: word });
        const res = await api.delete(`/v2/users/${user.id}`, { soft_delete: true });
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          message: 'User deleted (restorable)',
          deleted_at: expect.stringMatching(RFC3339),
          soft_delete: true,
        });

        expect((await api.get(`/v2/users/${user.id}`)).body.error.code).toBe('USER_NOT_FOUND');
        const listed = await api.get('/v2/users', { search: word });
        expect(listed.body).toMatchObject({ data: [], pagination: { total: 0 } });
        const searched = await api.get('/v2/users/search', { q: word });
        expect(searched.body.data).toEqual([]);
        for (const path of ['preferences', 'activity', 'roles']) {
          expect((await api.get(`/v2/users/${user.id}/${path}`)).status).toBe(404);
        }
        expect((await api.put(`/v2/users/${user.id}`, { first_name: 'X' })).status).toBe(404);
        expect((await api.delete(`/v2/users/${user.id}`, { soft_delete: true })).status).toBe(404);

        const taken = await api.post('/v2/users', { email: user.email, first_name: 'A', last_name: 'B' });
        expect(taken.status).toBe(409);
        expect(taken.body.error.code).toBe('USER_ALREADY_EXISTS');

        const restored = await api.post(`/v2/users/${user.id}/restore`);
        expect(restored.status).toBe(200);
        expect(restored.body).toEqual({ ...user, updated_at: expect.stringMatching(RFC3339) });
        expect((await api.get(`/v2/users/${user.id}`)).status).toBe(200);
        expect((await api.get('/v2/users', { search: word })).body.pagination.total).toBe(1);
      });

      it('DELETE /v2/users/{id} erases the user and frees the email', async () => {
        const user = await api.createUser();
        const res = await api.delete(`/v2/users/${user.id}`);
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          message: 'User erased',
          deleted_at: expect.stringMatching(RFC3339),
          soft_delete: false,
        });
        expect((await api.get(`/v2/users/${user.id}`)).status).toBe(404);
        expect(await t.stores.durable.users.findById(user.id, 'include')).toBeNull();
        const again = await api.post('/v2/users', { email: user.email, first_name: 'A', last_name: 'B' });
        expect(again.status).toBe(201);
        expect(again.body.id).not.toBe(user.id);
        // Erased users cannot be restored.
        const restore = await api.post(`/v2/users/${user.id}/restore`);
        expect(restore.status).toBe(404);
        expect(restore.body.error.code).toBe('USER_NOT_FOUND');
      });

      it('DELETE /v2/users/{id} erases a soft-deleted user, which frees the email', async () => {
        const user = await api.createUser();
        await api.delete(`/v2/users/${user.id}`, { soft_delete: true });
        const res = await api.delete(`/v2/users/${user.id}`, { soft_delete: false });
        expect(res.status).toBe(200);
        expect(res.body.soft_delete).toBe(false);
        const again = await api.post('/v2/users', { email: user.email, first_name: 'A', last_name: 'B' });
        expect(again.status).toBe(201);
      });

      it('DELETE /v2/users/{id} answers an unknown id with 404 and a bad soft_delete with 400', async () => {
        const missing = await api.delete('/v2/users/usr_nobody');
        expect(missing.status).toBe(404);
        expect(missing.body.error.code).toBe('USER_NOT_FOUND');
        const user = await api.createUser();
        const bad = await api.delete(`/v2/users/${user.id}`, { soft_delete: 'yes' });
        expect(bad.status).toBe(400);
        expect(bad.body.error).toMatchObject({
          code: 'VALIDATION_ERROR',
          details: [{ field: 'soft_delete', issue: 'true or false', provided: 'yes' }],
        });
        expect((await api.get(`/v2/users/${user.id}`)).status).toBe(200);
      });

      it('POST /v2/users/{id}/restore answers 409 CONFLICT for a user who is not deleted, 404 for no user', async () => {
        const user = await api.createUser();
        const res = await api.post(`/v2/users/${user.id}/restore`);
        expect(res.status).toBe(409);
        expect(res.body.error).toMatchObject({
          code: 'CONFLICT',
          message: 'The user is not deleted',
          details: [{ field: 'id', issue: 'Not deleted' }],
        });
        const nobody = await api.post('/v2/users/usr_nobody/restore');
        expect(nobody.status).toBe(404);
        expect(nobody.body.error).toMatchObject({
          code: 'USER_NOT_FOUND',
          message: 'No deleted user with this id',
        });
      });
    });

    describe('preferences, activity, roles and passwords', () => {
      it('GET and PUT /v2/users/{id}/preferences replace and read a free-form object', async () => {
        const user = await api.createUser();
        expect((await api.get(`/v2/users/${user.id}/preferences`)).body).toEqual({});
        const prefs = { theme: 'dark', notifications: { email: true, sms: false }, langs: ['en', 'fr'] };
        const put = await api.put(`/v2/users/${user.id}/preferences`, prefs);
        expect(put.status).toBe(200);
        expect(put.body).toEqual(prefs);
        expect((await api.get(`/v2/users/${user.id}/preferences`)).body).toEqual(prefs);
        const replaced = await api.put(`/v2/users/${user.id}/preferences`, { theme: 'light' });
        expect(replaced.body).toEqual({ theme: 'light' });

        for (const [body, issue] of [
          [['dark'], 'Must be a JSON object'],
          [{ $set: { admin: true } }, 'Key "$set" must be 1 to 64 letters, digits, "-" or "_"'],
        ] as const) {
          const bad = await api.put(`/v2/users/${user.id}/preferences`, body);
          expect(bad.status).toBe(400);
          expect(bad.body.error.code).toBe('VALIDATION_ERROR');
          expect(bad.body.error.details).toEqual([expect.objectContaining({ issue })]);
        }
        // A body of whitespace alone is no JSON (it was read as {} and wiped the preferences).
        for (const blank of [' ', '\n', '\f', '\u00a0']) {
          const res = await api
            .call('put', `/v2/users/${user.id}/preferences`)
            .set('Content-Type', 'application/json')
            .send(blank);
          expect({ blank, status: res.status, code: res.body.error?.code }).toEqual({
            blank,
            status: 400,
            code: 'MALFORMED_JSON',
          });
        }
        expect((await api.get(`/v2/users/${user.id}/preferences`)).body).toEqual({ theme: 'light' });
        expect((await api.get('/v2/users/usr_nobody/preferences')).body.error.code).toBe('USER_NOT_FOUND');
        expect((await api.put('/v2/users/usr_nobody/preferences', {})).body.error.code).toBe(
          'USER_NOT_FOUND',
        );
      });

      it('GET /v2/users/{id}/activity summarizes sign-ins and lists recent events newest first', async () => {
        const user = await api.createUser();
        await api
          .put(`/v2/users/${user.id}`, { first_name: 'Changed' })
          .set('User-Agent', 'activity-test/1.0');
        await t.stores.durable.users.recordLogin(user.id, new Date('2026-01-02T03:04:05Z'));
        const res = await api.get(`/v2/users/${user.id}/activity`);
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          user_id: user.id,
          activity_summary: {
            total_logins: 1,
            last_login: '2026-01-02T03:04:05.000Z',
            failed_logins_last_30_days: 0,
            created_at: user.created_at,
            // No sign-in went through the sign-in pages (recordLogin above is the store's own), so
            // the rollups have nothing to say yet.
            average_session_duration: null,
            most_active_day: null,
            preferred_login_time: null,
          },
          pagination: { limit: 20, has_more: false, next_cursor: null },
          recent_activities: [
            {
              event: 'user.updated',
              timestamp: expect.stringMatching(RFC3339),
              ip_address: expect.any(String),
              user_agent: 'activity-test/1.0',
              actor: { type: 'client', id: api.client!.clientId },
              changes: ['first_name'],
              details: null,
            },
            {
              event: 'user.created',
              timestamp: expect.stringMatching(RFC3339),
              ip_address: expect.any(String),
              user_agent: null, // supertest sends none
              actor: { type: 'client', id: api.client!.clientId },
              details: { send_welcome_email: false },
            },
          ],
        });
        const limited = await api.get(`/v2/users/${user.id}/activity`, { limit: 1 });
        expect(limited.body.recent_activities.map((a: { event: string }) => a.event)).toEqual([
          'user.updated',
        ]);
        expect((await api.get('/v2/users/usr_nobody/activity')).body.error.code).toBe('USER_NOT_FOUND');
      });

      it('POST and DELETE /v2/users/{id}/roles/{role_id} link and unlink roles; GET lists them', async () => {
        const role = await api.createRole({ permissions: ['things:do'] });
        const user = await api.createUser();
        const builtIn = (await api.get(`/v2/users/${user.id}/roles`)).body.data;
        expect(builtIn).toEqual([
          { id: expect.any(String), name: 'user', display_name: 'User', permissions: [] },
        ]);

        const assigned = await api.post(`/v2/users/${user.id}/roles/${role.id}`);
        expect(assigned.status).toBe(200);
        expect(assigned.body.data.map((r: { name: string }) => r.name)).toEqual(['user', role.name]);
        // Assigning twice changes nothing.
        const twice = await api.post(`/v2/users/${user.id}/roles/${role.id}`);
        expect(twice.body).toEqual(assigned.body);
        expect((await api.get(`/v2/users/${user.id}/roles`)).body).toEqual(assigned.body);

        const removed = await api.delete(`/v2/users/${user.id}/roles/${role.id}`);
        expect(removed.status).toBe(200);
        expect(removed.body.data.map((r: { name: string }) => r.name)).toEqual(['user']);
        const notHeld = await api.delete(`/v2/users/${user.id}/roles/${role.id}`);
        expect(notHeld.status).toBe(404);
        expect(notHeld.body.error).toMatchObject({
          code: 'NOT_FOUND',
          message: 'The user does not have this role',
        });

        const unknownRole = await api.post(`/v2/users/${user.id}/roles/rol_nothing`);
        expect(unknownRole.status).toBe(404);
        expect(unknownRole.body.error.code).toBe('ROLE_NOT_FOUND');
        const unknownUser = await api.post(`/v2/users/usr_nobody/roles/${role.id}`);
        expect(unknownUser.status).toBe(404);
        expect(unknownUser.body.error.code).toBe('USER_NOT_FOUND');
        expect((await api.get('/v2/users/usr_nobody/roles')).body.error.code).toBe('USER_NOT_FOUND');
      });

      it('POST /v2/users/{id}/password-reset sets the reset flag and answers with the user', async () => {
        const user = await api.createUser();
        const res = await api.post(`/v2/users/${user.id}/password-reset`);
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          ...user,
          updated_at: expect.stringMatching(RFC3339),
          password_reset_required: true,
          // No body: only the flag, no e-mail.
          email_sent: false,
        });
        expect((await t.stores.durable.users.findById(user.id))!.password_reset_required).toBe(true);
        expect((await api.post('/v2/users/usr_nobody/password-reset')).body.error.code).toBe(
          'USER_NOT_FOUND',
        );
      });

      it('PUT /v2/users/{id}/password sets a policy-checked password and answers 204', async () => {
        const user = await api.createUser();
        const weak = await api.put(`/v2/users/${user.id}/password`, { password: 'short' });
        expect(weak.status).toBe(422);
        expect(weak.body.error).toMatchObject({
          code: 'BUSINESS_RULE_VIOLATION',
          details: [{ field: 'password', issue: 'Use at least 12 characters' }],
        });
        expect(JSON.stringify(weak.body)).not.toContain('"short"');
        const missing = await api.put(`/v2/users/${user.id}/password`, {});
        expect(missing.status).toBe(400);
        expect(missing.body.error).toMatchObject({
          code: 'MISSING_REQUIRED_FIELD',
          details: [{ field: 'password', issue: 'Required' }],
        });

        const res = await api.put(`/v2/users/${user.id}/password`, {
          password: STRONG_PASSWORD,
          require_reset: true,
        });
        expect(res.status).toBe(204);
        expect(res.text).toBe('');
        const stored = await t.stores.durable.users.findById(user.id);
        expect(stored!.password_hash).toMatch(/^\$argon2id\$/);
        expect(stored!.password_reset_required).toBe(true);
        expect(await t.services.passwords.verify(stored!.password_hash!, STRONG_PASSWORD)).toBe(true);
        const unknown = await api.put('/v2/users/usr_nobody/password', { password: STRONG_PASSWORD });
        expect(unknown.body.error.code).toBe('USER_NOT_FOUND');
      });
    });
  },
);
