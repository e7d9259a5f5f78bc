/**
 * POST /v2/users/bulk: up to 100 users with a result per item; duplicates inside the batch and
 * against stored users are reported per item while the rest are created; `fail_on_error: true`
 * stores nothing unless every item can be stored.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, RFC3339, uniqueEmail, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

interface BulkItem {
  index: number;
  success: boolean;
  user?: { id: string; email: string };
  error?: { code: string; message: string; field?: string };
}

describe.each(availableBackends())(
  'POST /v2/users/bulk with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    const person = (
      email = uniqueEmail('bulk'),
      over: Record<string, unknown> = {},
    ): { email: string; role?: string; metadata?: Record<string, unknown>; [field: string]: unknown } => ({
      email,
      first_name: 'Bulk',
      last_name: 'Person',
      ...over,
    });
    const stored = (email: string) => t.stores.durable.users.findByEmail(email, 'include');

    it('POST /v2/users/bulk creates every item and answers 201 with per-item results and a summary', async () => {
      const items = [
        person(),
        person(undefined, { role: 'admin', metadata: { source: 'import' } }),
        person(),
      ];
      const res = await api.post('/v2/users/bulk', { users: items });
      expect(res.status).toBe(201);
      expect(res.body.summary).toEqual({ total: 3, successful: 3, failed: 0 });
      expect(res.body.results).toEqual(
        items.map((item, index) => ({
          index,
          success: true,
          user: {
            id: expect.any(String),
            email: item.email,
            first_name: 'Bulk',
            last_name: 'Person',
            role: item.role ?? 'user',
            status: 'active',
            email_verified: false,
            mfa_enabled: false,
            created_at: expect.stringMatching(RFC3339),
            updated_at: expect.stringMatching(RFC3339),
            last_login: null,
            metadata: item.metadata ?? {},
            plan: null,
            identities: [],
          },
        })),
      );
      for (const item of items) expect(await stored(item.email)).not.toBeNull();
    });

    it('POST /v2/users/bulk reports a duplicate inside the batch and one already stored as DUPLICATE_EMAIL, creates the rest, and answers 200', async () => {
      const existing = await api.createUser();
      const repeated = uniqueEmail('twice');
      const fresh = [uniqueEmail(), uniqueEmail()];
      const res = await api.post('/v2/users/bulk', {
        users: [
          person(fresh[0]),
          person(repeated),
          person(existing.email.toUpperCase()),
          person(repeated.toUpperCase()),
          person(fresh[1]),
        ],
      });
      expect(res.status).toBe(200);
      expect(res.body.summary).toEqual({ total: 5, successful: 3, failed: 2 });
      const results = res.body.results as BulkItem[];
      expect(results.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
      expect(results.map((r) => r.success)).toEqual([true, true, false, false, true]);
      const duplicate = {
        code: 'DUPLICATE_EMAIL',
        message: 'A user with this email already exists',
        field: 'email',
      };
      expect(results[2]).toEqual({ index: 2, success: false, error: duplicate });
      expect(results[3]).toEqual({ index: 3, success: false, error: duplicate });
      expect(results[1]!.user!.email).toBe(repeated);
      for (const email of [...fresh, repeated]) expect(await stored(email)).not.toBeNull();
      // The stored user was left alone.
      expect((await api.get(`/v2/users/${existing.id}`)).body).toEqual(existing);
    });

    it('POST /v2/users/bulk reports an invalid email as INVALID_EMAIL_FORMAT for that item', async () => {
      const good = uniqueEmail();
      const res = await api.post('/v2/users/bulk', {
        users: [person('not-an-email'), person(good), person('also@bad@example.com')],
      });
      expect(res.status).toBe(200);
      expect(res.body.summary).toEqual({ total: 3, successful: 1, failed: 2 });
      const results = res.body.results as BulkItem[];
      for (const index of [0, 2]) {
        expect(results[index]).toEqual({
          index,
          success: false,
          error: { code: 'INVALID_EMAIL_FORMAT', message: 'email: Invalid email format', field: 'email' },
        });
      }
      expect(results[1]).toMatchObject({ index: 1, success: true, user: { email: good } });
    });

    it('POST /v2/users/bulk reports missing fields, unknown roles, weak passwords and bad items per item', async () => {
      const res = await api.post('/v2/users/bulk', {
        users: [
          { email: uniqueEmail(), first_name: 'No last name' },
          person(undefined, { role: 'ghost' }),
          person(undefined, { password: 'short' }),
          person(undefined, { password: '' }),
          person(undefined, { metadata: { $where: 1 } }),
          'not an object',
          person(),
        ],
      });
      expect(res.status).toBe(200);
      const results = res.body.results as BulkItem[];
      expect(results[0]).toEqual({
        index: 0,
        success: false,
        error: { code: 'MISSING_REQUIRED_FIELD', message: 'last_name: Required', field: 'last_name' },
      });
      expect(results[1]).toEqual({
        index: 1,
        success: false,
        error: { code: 'INVALID_ROLE', message: 'The role "ghost" does not exist', field: 'role' },
      });
      expect(results[2]).toEqual({
        index: 2,
        success: false,
        error: { code: 'VALIDATION_ERROR', message: 'Use at least 12 characters', field: 'password' },
      });
      expect(results[3]).toEqual({
        index: 3,
        success: false,
        error: { code: 'VALIDATION_ERROR', message: 'Use at least 12 characters', field: 'password' },
      });
      expect(results[4]).toMatchObject({
        index: 4,
        success: false,
        error: { code: 'VALIDATION_ERROR', field: 'metadata' },
      });
      expect(results[5]).toMatchObject({ index: 5, success: false, error: { code: 'VALIDATION_ERROR' } });
      expect(results[6]).toMatchObject({ index: 6, success: true });
      expect(res.body.summary).toEqual({ total: 7, successful: 1, failed: 6 });
      expect(JSON.stringify(res.body)).not.toContain('short');
    });

    it('POST /v2/users/bulk with fail_on_error: true creates nothing when one item is invalid, and fails every result', async () => {
      const emails = [uniqueEmail(), uniqueEmail(), uniqueEmail()];
      const res = await api.post('/v2/users/bulk', {
        users: [person(emails[0]), person('broken'), person(emails[1]), person(emails[2])],
        options: { fail_on_error: true },
      });
      expect(res.status).toBe(200);
      expect(res.body.summary).toEqual({ total: 4, successful: 0, failed: 4 });
      const results = res.body.results as BulkItem[];
      expect(results.every((r) => !r.success && !r.user)).toBe(true);
      expect(results[1]!.error!.code).toBe('INVALID_EMAIL_FORMAT');
      for (const index of [0, 2, 3]) {
        expect(results[index]).toEqual({
          index,
          success: false,
          error: {
            code: 'NOT_CREATED',
            message: 'Not created: another item of this all-or-nothing batch failed',
          },
        });
      }
      for (const email of emails) expect(await stored(email)).toBeNull();
    });

    it('POST /v2/users/bulk with fail_on_error: true creates nothing when one email is already stored', async () => {
      const existing = await api.createUser();
      const emails = [uniqueEmail(), uniqueEmail()];
      const before = (await api.get('/v2/users')).body.pagination.total;
      const res = await api.post('/v2/users/bulk', {
        users: [person(emails[0]), person(existing.email), person(emails[1])],
        options: { fail_on_error: true, send_welcome_emails: false },
      });
      expect(res.status).toBe(200);
      expect(res.body.summary).toEqual({ total: 3, successful: 0, failed: 3 });
      const results = res.body.results as BulkItem[];
      expect(results[1]!.error!.code).toBe('DUPLICATE_EMAIL');
      expect(results[0]!.error!.code).toBe('NOT_CREATED');
      expect(results[2]!.error!.code).toBe('NOT_CREATED');
      for (const email of emails) expect(await stored(email)).toBeNull();
      expect((await api.get('/v2/users')).body.pagination.total).toBe(before);
      // A duplicate inside an all-or-nothing batch aborts it as well.
      const twice = uniqueEmail();
      const inside = await api.post('/v2/users/bulk', {
        users: [person(twice), person(twice.toUpperCase())],
        options: { fail_on_error: true },
      });
      expect(inside.body.summary).toEqual({ total: 2, successful: 0, failed: 2 });
      expect(await stored(twice)).toBeNull();
    });

    it('POST /v2/users/bulk with fail_on_error: true creates every item when all are valid', async () => {
      const emails = [uniqueEmail(), uniqueEmail()];
      const res = await api.post('/v2/users/bulk', {
        users: emails.map((e) => person(e)),
        options: { fail_on_error: true },
      });
      expect(res.status).toBe(201);
      expect(res.body.summary).toEqual({ total: 2, successful: 2, failed: 0 });
      for (const email of emails) expect(await stored(email)).not.toBeNull();
    });

    it('POST /v2/users/bulk accepts 100 items and refuses 101 with 400 VALIDATION_ERROR', async () => {
      const hundred = Array.from({ length: 100 }, () => person());
      const ok = await api.post('/v2/users/bulk', { users: hundred });
      expect(ok.status).toBe(201);
      expect(ok.body.summary).toEqual({ total: 100, successful: 100, failed: 0 });

      const tooMany = Array.from({ length: 101 }, () => person());
      const res = await api.post('/v2/users/bulk', { users: tooMany });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'users', issue: 'At most 100 users per request' }],
      });
      expect(await stored(tooMany[0]!.email)).toBeNull();
    });

    it('POST /v2/users/bulk refuses a missing, empty or non-list users field with 400', async () => {
      const missing = await api.post('/v2/users/bulk', {});
      expect(missing.status).toBe(400);
      expect(missing.body.error).toMatchObject({
        code: 'MISSING_REQUIRED_FIELD',
        details: [{ field: 'users', issue: 'Must be a list of users' }],
      });
      const empty = await api.post('/v2/users/bulk', { users: [] });
      expect(empty.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'users', issue: 'At least one user' }],
      });
      const object = await api.post('/v2/users/bulk', { users: { 0: person() } });
      expect(object.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [{ field: 'users', issue: 'Must be a list of users' }],
      });
      const options = await api.post('/v2/users/bulk', {
        users: [person()],
        options: { fail_on_error: 'yes' },
      });
      expect(options.status).toBe(400);
      expect(options.body.error.details).toEqual([
        expect.objectContaining({ field: 'options.fail_on_error', provided: 'yes' }),
      ]);
    });
  },
);
