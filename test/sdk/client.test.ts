/**
 * LatchkeyClient against the real Latchkey server on a loopback port: it gets its token through the
 * real token endpoint (client credentials), and the typed calls of the users and roles API return
 * what the server stores; iterate() follows next_cursor over more users than fit on a page; error
 * envelopes become LatchkeyErrors with the server's code, details and request id.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { LatchkeyClient, LatchkeyError, paginate } from '../../src/sdk/index.js';
import type { User } from '../../src/sdk/index.js';
import { ALL_ADMIN_SCOPES, registerServiceClient, type ServiceClient } from '../helpers/admin-api.js';
import { clientCredentials } from '../helpers/admin-client.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const tag = () => randomBytes(4).toString('hex');

async function failureOf(promise: Promise<unknown>): Promise<LatchkeyError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof LatchkeyError)) throw new Error(`expected a LatchkeyError, got ${String(err)}`);
  return err;
}

describe('LatchkeyClient against a Latchkey server', () => {
  let server: TestServer;
  let client: LatchkeyClient;
  let service: ServiceClient;
  beforeAll(async () => {
    server = await startTestServer();
    service = await registerServiceClient(server.t);
    client = new LatchkeyClient({
      baseUrl: server.url,
      clientCredentials: { ...service, scope: ALL_ADMIN_SCOPES },
    });
  });
  afterAll(() => server.close());

  it('creates, reads, updates, soft-deletes and restores a user', async () => {
    const email = `sdk-${tag()}@example.com`;
    const created = await client.users.create({
      email,
      first_name: 'Ada',
      last_name: 'Lovelace',
      metadata: { plan: 'pro' },
    });
    expect(created).toMatchObject({
      id: expect.any(String),
      email,
      first_name: 'Ada',
      last_name: 'Lovelace',
      role: 'user',
      status: 'active',
      metadata: { plan: 'pro' },
      last_login: null,
    });

    const got = await client.users.get(created.id, { include: ['roles', 'permissions'] });
    expect(got).toMatchObject({ ...created, roles: expect.any(Array), permissions: expect.any(Array) });

    const updated = await client.users.update(created.id, { last_name: 'King', status: 'suspended' });
    expect(updated).toMatchObject({ id: created.id, last_name: 'King', status: 'suspended' });

    const deleted = await client.users.delete(created.id, { softDelete: true });
    expect(deleted).toEqual({
      message: expect.any(String),
      deleted_at: expect.any(String),
      soft_delete: true,
    });
    expect(await failureOf(client.users.get(created.id))).toMatchObject({
      status: 404,
      code: 'USER_NOT_FOUND',
    });

    expect(await client.users.restore(created.id)).toMatchObject({ id: created.id, email });
    const erased = await client.users.delete(created.id);
    expect(erased.soft_delete).toBe(false);
  });

  it('iterate() walks every user of a query by cursor, across pages, each once', async () => {
    const role = await client.roles.create({ name: `sdk-${tag()}`, permissions: ['things:read'] });
    const emails = Array.from(
      { length: 27 },
      (_, i) => `it${String(i).padStart(2, '0')}-${tag()}@iterate.example`,
    );
    const bulk = await client.users.bulkCreate(
      emails.map((email) => ({ email, first_name: 'Iter', last_name: 'Ator', role: role.name })),
    );
    expect(bulk.summary).toEqual({ total: 27, successful: 27, failed: 0 });

    // Count the requests (getToken runs before each one): the walk must take three pages of 10.
    const issued = await clientCredentials(server.url, service, { scope: ALL_ADMIN_SCOPES });
    const pages: string[] = [];
    const counting = new LatchkeyClient({
      baseUrl: server.url,
      getToken: async () => {
        pages.push('page');
        return String(issued.body.access_token);
      },
    });
    const seen: User[] = [];
    for await (const user of counting.users.iterate({ role: role.name, limit: 10, sort: 'email:asc' })) {
      seen.push(user);
    }
    expect(seen.map((u) => u.email)).toEqual([...emails].sort());
    expect(pages).toHaveLength(3);

    // The first page says there is more, and hands out a cursor.
    const first = await client.users.list({ role: role.name, limit: 10 });
    expect(first.data).toHaveLength(10);
    expect(first.pagination).toMatchObject({
      total: 27,
      limit: 10,
      has_more: true,
      next_cursor: expect.any(String),
    });
  });

  it('paginate() walks any cursor list, here a search with filters and a projection', async () => {
    const t = tag();
    const made = await client.users.bulkCreate(
      Array.from({ length: 5 }, (_, i) => ({
        email: `s${i}-${t}@search.example`,
        first_name: `Search${t}`,
        last_name: 'Hit',
        metadata: { batch: t, n: i },
      })),
    );
    expect(made.summary.successful).toBe(5);
    const hits: Partial<User>[] = [];
    for await (const hit of paginate((cursor) =>
      client.users.search({
        filters: { 'metadata.batch': t, 'metadata.n': { gte: 1 } },
        sort: ['email:desc'],
        fields: ['email'],
        limit: 2,
        cursor,
      }),
    )) {
      hits.push(hit);
    }
    expect(hits.map((h) => Object.keys(h).sort())).toEqual(Array(4).fill(['email', 'id']));
    expect(hits.map((h) => h.email)).toEqual([4, 3, 2, 1].map((i) => `s${i}-${t}@search.example`));
  });

  it('assigns and removes roles', async () => {
    const role = await client.roles.create({ name: `sdk-${tag()}`, display_name: 'SDK role' });
    expect(await client.roles.list()).toContainEqual(role);
    const user = await client.users.create({
      email: `roles-${tag()}@example.com`,
      first_name: 'R',
      last_name: 'S',
    });
    const linked = await client.roles.assign(user.id, role.id);
    expect(linked.map((r) => r.name)).toEqual(expect.arrayContaining(['user', role.name]));
    expect((await client.roles.ofUser(user.id)).map((r) => r.name)).toContain(role.name);
    const after = await client.roles.remove(user.id, role.id);
    expect(after.map((r) => r.name)).not.toContain(role.name);
  });

  it('maps error envelopes to LatchkeyError: 404, 409 and 400 with details', async () => {
    const missing = await failureOf(client.users.get('usr_does_not_exist'));
    expect(missing).toMatchObject({
      name: 'LatchkeyError',
      status: 404,
      code: 'USER_NOT_FOUND',
      message: 'User not found',
      requestId: expect.stringMatching(/\S/),
    });

    const email = `dup-${tag()}@example.com`;
    await client.users.create({ email, first_name: 'D', last_name: 'U' });
    const duplicate = await failureOf(
      client.users.create({ email: email.toUpperCase(), first_name: 'D', last_name: 'U' }),
    );
    expect(duplicate).toMatchObject({ status: 409, code: 'USER_ALREADY_EXISTS' });

    const invalid = await failureOf(
      client.users.create({ email: 'not-an-email', first_name: 'I', last_name: 'V' }),
    );
    expect(invalid).toMatchObject({
      status: 400,
      code: 'VALIDATION_ERROR',
      details: [{ field: 'email', issue: 'Invalid email format', provided: 'not-an-email' }],
    });
  });

  it('reports a refused client secret as the token endpoint’s invalid_client', async () => {
    const wrong = new LatchkeyClient({
      baseUrl: server.url,
      clientCredentials: { clientId: service.clientId, clientSecret: 'not-the-secret' },
    });
    expect(await failureOf(wrong.users.list())).toMatchObject({ status: 401, code: 'invalid_client' });
  });

  it('reports an unknown bearer token as 401 AUTH_TOKEN_INVALID', async () => {
    const stranger = new LatchkeyClient({ baseUrl: server.url, token: 'not-a-token' });
    expect(await failureOf(stranger.users.list())).toMatchObject({ status: 401, code: 'AUTH_TOKEN_INVALID' });
  });
});
