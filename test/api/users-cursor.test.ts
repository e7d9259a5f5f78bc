/**
 * Cursor pages of GET /v2/users stay consistent while users are being added: walking a list with
 * next_cursor while other requests insert users that sort before and after the cursor position
 * returns every user that existed at the start exactly once, in order, never repeating a user.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, randomTag, type AdminApi, type ApiUser } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const pad = (n: number) => String(n).padStart(2, '0');

describe.each(availableBackends())(
  'GET /v2/users cursors with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    /**
     * Walks role's users with `query`, running `during(page)` concurrently with each page request
     * and `between(last)` after each page, before the next one is asked for.
     */
    async function walk(
      query: Record<string, string>,
      during: (page: number) => Promise<unknown>,
      between: (last: ApiUser) => Promise<unknown> = async () => undefined,
    ): Promise<ApiUser[]> {
      const seen: ApiUser[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 50; page += 1) {
        const [res] = await Promise.all([
          api.get('/v2/users', { ...query, limit: 3, ...(cursor ? { cursor } : {}) }),
          during(page),
        ]);
        expect(res.status).toBe(200);
        seen.push(...(res.body.data as ApiUser[]));
        cursor = res.body.pagination.next_cursor ?? undefined;
        if (!cursor) return seen;
        await between(seen.at(-1)!);
      }
      throw new Error('the walk did not end');
    }

    it('GET /v2/users with a cursor returns every existing user once, in order, while users sorting before and after the cursor are inserted', async () => {
      const role = (await api.createRole()).name;
      const tag = randomTag();
      const existing: ApiUser[] = [];
      for (let i = 0; i < 12; i += 1) {
        existing.push(await api.createUser({ email: `m${pad(i)}0-${tag}@cursor.example`, role }));
      }
      const insertedBefore: string[] = [];
      const insertedJustAfter: string[] = [];
      let counter = 0;
      const seen = await walk(
        { role, sort: 'email:asc' },
        async (page) => {
          if (page === 0) return;
          counter += 1;
          // While the page is being read: a user sorting before everything, and one after everything.
          const before = `a${pad(counter)}-${tag}@cursor.example`;
          insertedBefore.push(before);
          await Promise.all([
            api.createUser({ email: before, role }),
            api.createUser({ email: `z${pad(counter)}-${tag}@cursor.example`, role }),
          ]);
        },
        async (last) => {
          // Between pages: a user sorting right after the cursor position belongs on the next page.
          if (!last.email.startsWith('m')) return;
          const email = `${last.email.slice(0, 4)}5${pad(counter)}-${tag}@cursor.example`;
          insertedJustAfter.push(email);
          await api.createUser({ email, role });
        },
      );

      const ids = seen.map((u) => u.id);
      expect(new Set(ids).size).toBe(ids.length); // no user twice
      for (const user of existing) expect(ids.filter((id) => id === user.id)).toHaveLength(1);
      const emails = seen.map((u) => u.email);
      expect(emails).toEqual([...emails].sort()); // never a step back
      // Users inserted before the cursor position never show up on later pages.
      expect(emails.filter((e) => insertedBefore.includes(e))).toEqual([]);
      expect(counter).toBeGreaterThanOrEqual(3);
      // Users inserted right after the cursor are on the next page, each once.
      expect(insertedJustAfter.length).toBeGreaterThanOrEqual(3);
      for (const email of insertedJustAfter) expect(emails.filter((e) => e === email)).toHaveLength(1);
    });

    it('GET /v2/users with a cursor in the default newest-first order skips users created during the walk and repeats none', async () => {
      const role = (await api.createRole()).name;
      const existing: ApiUser[] = [];
      for (let i = 0; i < 10; i += 1) existing.push(await api.createUser({ role }));
      const added: string[] = [];
      const seen = await walk({ role }, async (page) => {
        if (page === 0) return;
        const created = await Promise.all([api.createUser({ role }), api.createUser({ role })]);
        added.push(...created.map((u) => u.id));
      });
      expect(seen.map((u) => u.id)).toEqual(existing.map((u) => u.id).reverse());
      expect(added.length).toBeGreaterThanOrEqual(6);
    });

    it('GET /v2/users with a cursor keeps multi-field orders consistent across pages', async () => {
      const role = (await api.createRole()).name;
      const existing: ApiUser[] = [];
      for (let i = 0; i < 9; i += 1) {
        existing.push(await api.createUser({ role, first_name: ['Kim', 'Lee', 'Max'][i % 3]! }));
      }
      const seen = await walk({ role, sort: 'first_name:desc,created_at:asc' }, async (page) => {
        if (page > 0) await api.createUser({ role, first_name: 'Aaron' });
      });
      const old = seen.filter((u) => existing.some((e) => e.id === u.id));
      expect(old.map((u) => u.first_name)).toEqual([
        'Max',
        'Max',
        'Max',
        'Lee',
        'Lee',
        'Lee',
        'Kim',
        'Kim',
        'Kim',
      ]);
      const byName = (name: string) => existing.filter((u) => u.first_name === name).map((u) => u.id);
      expect(old.map((u) => u.id)).toEqual([...byName('Max'), ...byName('Lee'), ...byName('Kim')]);
      expect(new Set(seen.map((u) => u.id)).size).toBe(seen.length);
    });
  },
);
