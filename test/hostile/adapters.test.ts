/**
 * Hostile input whose handling is the durable adapter's own: search terms and `contains` filters full
 * of LIKE wildcards and regex metacharacters match literally, e-mail uniqueness holds for every
 * spelling of one address (case, spaces, NFC/NFD, compatibility forms) also under a race, and
 * look-alike addresses are found by skeleton. Runs on every durable backend this run has.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { AdminApi } from '../helpers/admin-api.js';
import { adminApi, randomTag, uniqueWord } from '../helpers/admin-api.js';
import { MONGODB_URI } from '../helpers/backends.js';
import type { DurableBackend, TestApp } from '../helpers/test-app.js';
import { hostileApp, writeWitness } from './helpers.js';

const durables: DurableBackend[] = ['embedded', ...(MONGODB_URI ? (['mongo'] as const) : [])];
if (!MONGODB_URI) process.stderr.write('SKIPPED hostile adapter cases on mongo: MONGODB_URI is not set\n');

/**
 * Words that start with a character LIKE, PCRE or RE2 would read as an operator (characters that
 * separate words in names, such as "(" or "_", cannot start a word and are tested as queries below).
 */
const SPECIAL_WORDS: Record<string, string> = {
  '%': '%off',
  '*': '*star',
  $: '$dollar',
  '^': '^caret',
  '[': '[bracket',
  ']': ']close',
  '|': '|pipe',
  '?': '?question',
  '{': '{brace',
  '}': '}close',
  '#': '#hash',
  '!': '!bang',
  '=': '=equals',
  '<': '<less',
  '&': '&amp',
  '~': '~tilde',
};

describe.each(durables)('hostile input the %s adapter handles', (durable) => {
  let t: TestApp;
  let strict: TestApp;
  let api: AdminApi;
  let tag: string;
  const ids: Record<string, string> = {};
  const notes: Record<string, string> = {};

  beforeAll(async () => {
    t = await hostileApp(durable);
    strict = await hostileApp(durable, { CONFUSABLE_EMAILS: 'refuse' });
    api = await adminApi(t);
    tag = uniqueWord('Hx');
    for (const [char, word] of Object.entries(SPECIAL_WORDS)) {
      ids[char] = (await api.createUser({ first_name: tag, last_name: word })).id;
    }
    for (const note of [
      'a%b',
      'a_b',
      'a.b',
      'a*b',
      'a\\b',
      'a[b]',
      'a(b)',
      'a^b',
      'a$b',
      'ab',
      'a+b',
      'a?b',
    ]) {
      notes[note] = (await api.createUser({ first_name: tag, last_name: 'Notes', metadata: { note } })).id;
    }
  });
  afterAll(async () => {
    await t.close();
    await strict.close();
  });

  const search = async (q: string) => {
    const res = await api.get('/v2/users/search', { q, limit: 100 });
    expect({ q, status: res.status }).toEqual({ q, status: 200 });
    return (res.body.data as { id: string }[]).map((u) => u.id).sort();
  };
  const filtered = async (filters: unknown) => {
    const res = await api.get('/v2/users/search', { filters: JSON.stringify(filters), limit: 100 });
    expect({ filters, status: res.status }).toEqual({ filters, status: 200 });
    return (res.body.data as { id: string }[]).map((u) => u.id).sort();
  };

  it('matches search terms literally: each wildcard or metacharacter finds only the word starting with it', async () => {
    const wrong: unknown[] = [];
    for (const [char, id] of Object.entries(SPECIAL_WORDS).map(([c]) => [c, ids[c]!] as const)) {
      const found = await search(`${tag} ${char}`);
      if (JSON.stringify(found) !== JSON.stringify([id])) wrong.push({ q: char, found });
    }
    // Queries an unescaped LIKE or regex would widen, with what literal prefix matching finds.
    const tagged = await search(tag);
    expect(tagged).toHaveLength(Object.keys(SPECIAL_WORDS).length + 12);
    const literal: [string, string[]][] = [
      ['%%', []],
      ['.*', [ids['*']!]],
      ['^.*$', []],
      ['(?i)', []],
      ['[a-z]', []],
      ['a|b', []],
      ['%_%', [ids['%']!]],
      ['*?', []],
      ['$dollar', [ids.$!]],
      ['{1,3}', []],
      // Separators only: the same as the tag alone.
      ['_', tagged],
      ['.', tagged],
      ['\\', tagged],
      ['(', tagged],
      ["'", tagged],
    ];
    for (const [q, expected] of literal) {
      const found = await search(`${tag} ${q}`);
      if (JSON.stringify(found) !== JSON.stringify([...expected].sort())) wrong.push({ q, found, expected });
    }
    // A query of separators only matches nobody (it used to list everyone).
    for (const q of ['_', '__', '.', '@', '-_-', '  _  ']) {
      const found = await search(q);
      if (found.length !== 0) wrong.push({ q, found: found.length });
    }
    expect(wrong).toEqual([]);
  });

  it('matches contains filters literally for LIKE wildcards, the escape character and regex metacharacters', async () => {
    const expectations: [string, string[]][] = [
      ['%', ['a%b']],
      ['_', ['a_b']],
      ['.', ['a.b']],
      ['*', ['a*b']],
      ['\\', ['a\\b']],
      ['[b]', ['a[b]']],
      ['(b)', ['a(b)']],
      ['^', ['a^b']],
      ['$', ['a$b']],
      ['+', ['a+b']],
      ['?', ['a?b']],
      ['.*', []],
      ['a.', ['a.b']],
      ['%b', ['a%b']],
      ['_b', ['a_b']],
      ['\\b', ['a\\b']],
    ];
    const wrong: unknown[] = [];
    for (const [needle, expectedNotes] of expectations) {
      const found = await filtered({ first_name: tag, 'metadata.note': { contains: needle } });
      const expected = expectedNotes.map((n) => notes[n]!).sort();
      if (JSON.stringify(found) !== JSON.stringify(expected)) wrong.push({ needle, found, expected });
      const onName = await filtered({ first_name: tag, last_name: { contains: needle } });
      const nameExpected = Object.entries(SPECIAL_WORDS)
        .filter(([, word]) => word.includes(needle))
        .map(([c]) => ids[c]!)
        .sort();
      if (JSON.stringify(onName) !== JSON.stringify(nameExpected))
        wrong.push({ needle, onName, nameExpected });
    }
    expect(wrong).toEqual([]);
  });

  it('keeps one user per address across case, spaces, NFC/NFD and compatibility spellings', async () => {
    const local = `r${randomTag(4)}é`;
    const created = await api.post('/v2/users', {
      email: `${local}@Example.com`,
      first_name: 'A',
      last_name: 'B',
    });
    expect(created.status).toBe(201);
    const spellings = [
      `${local}@example.com`,
      `${local.toUpperCase()}@EXAMPLE.COM`,
      `  ${local}@example.com  `,
      `${local.normalize('NFD')}@example.com`,
      `${local}@ｅｘａｍｐｌｅ.com`,
      `${local.slice(0, 1).toUpperCase()}${local.slice(1).normalize('NFD')}@Example.COM`,
    ];
    const wrong: unknown[] = [];
    for (const email of spellings) {
      const before = await writeWitness(t);
      const res = await api.post('/v2/users', { email, first_name: 'A', last_name: 'B' });
      if (
        res.status !== 409 ||
        res.body.error?.code !== 'USER_ALREADY_EXISTS' ||
        before !== (await writeWitness(t))
      )
        wrong.push({ email, status: res.status, code: res.body.error?.code });
    }
    expect(wrong).toEqual([]);
    const stored = await api.get(`/v2/users/${created.body.id}`);
    expect(stored.body.email).toBe(`${local}@Example.com`.normalize('NFC'));
  });

  it('lets exactly one of 20 racing creations of one address (in different spellings) through', async () => {
    const local = `race${randomTag(4)}`;
    const variants = Array.from({ length: 20 }, (_, i) =>
      i % 2 ? `${local.toUpperCase()}@example.com` : ` ${local}@Example.com `,
    );
    const results = await Promise.all(
      variants.map((email) => api.post('/v2/users', { email, first_name: 'A', last_name: 'B' })),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    expect(
      results.filter((r) => r.status === 409).every((r) => r.body.error.code === 'USER_ALREADY_EXISTS'),
    ).toBe(true);
  });

  it('finds look-alike addresses by skeleton: accepted with an audit warning, or refused by setting', async () => {
    const word = `paypal${randomTag(3)}`;
    const original = await api.createUser({ email: `${word}@example.com` });
    // Cyrillic "а" (U+0430) for the Latin "a", and "rn" for "m" in the domain.
    const lookalike = `p\u0430${word.slice(2)}@exarnple.com`;
    const warned = await api.post('/v2/users', { email: lookalike, first_name: 'A', last_name: 'B' });
    expect(warned.status).toBe(201);
    const audit = await api.get('/v2/audit', { target_id: warned.body.id, action: 'user.created' });
    expect(audit.body.data[0].details).toMatchObject({
      warning: 'confusable_email',
      confusable_with: original.id,
    });

    const strictApi = await adminApi(strict);
    await strictApi.createUser({ email: `${word}@example.com` });
    const before = await writeWitness(strict);
    const refused = await strictApi.post('/v2/users', { email: lookalike, first_name: 'A', last_name: 'B' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('CONFUSABLE_EMAIL');
    expect(await writeWitness(strict)).toBe(before);
    // A different address is not a look-alike.
    const other = await strictApi.post('/v2/users', {
      email: `${word}x@example.com`,
      first_name: 'A',
      last_name: 'B',
    });
    expect(other.status).toBe(201);
  });
});
