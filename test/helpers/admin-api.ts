/**
 * Calling the management API (/v2) in route tests: service clients registered in the app's store,
 * access tokens from the app's own token endpoint (client credentials, in process through supertest),
 * and a small request wrapper that sends the bearer token. Admin clients default to the enterprise
 * plan, whose allowance (RATE_LIMIT_ENTERPRISE_*) is large enough that busy suites never meet the
 * basic plan's burst limit by accident; rate-limit tests choose their plans themselves.
 */
import { expect } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import request from 'supertest';

import { ADMIN_SCOPES } from '../../src/oidc/scopes.js';
import { registerClient } from './fixtures.js';
import type { TestApp } from './test-app.js';

export const ALL_ADMIN_SCOPES = ADMIN_SCOPES.join(' ');

export interface ServiceClient {
  clientId: string;
  clientSecret: string;
}

/** A confidential client-credentials client allowed `scope`, on `plan`. */
export async function registerServiceClient(
  t: TestApp,
  options: { scope?: string; plan?: string } = {},
): Promise<ServiceClient> {
  const client = await registerClient(t, 'service', {
    metadata: { scope: options.scope ?? ALL_ADMIN_SCOPES, plan: options.plan ?? 'enterprise' },
  });
  return { clientId: client.clientId, clientSecret: client.clientSecret! };
}

/** POST /oauth/token with client credentials; the raw response. */
export function requestToken(
  t: TestApp,
  client: ServiceClient,
  params: { scope?: string; resource?: string } = {},
) {
  const form: Record<string, string> = { grant_type: 'client_credentials' };
  if (params.scope !== undefined) form.scope = params.scope;
  if (params.resource !== undefined) form.resource = params.resource;
  return request(t.callback)
    .post('/oauth/token')
    .auth(client.clientId, client.clientSecret)
    .type('form')
    .send(form);
}

/** An access token for `client` (opaque, or a JWT when `resource` names the management API). */
export async function clientToken(
  t: TestApp,
  client: ServiceClient,
  params: { scope?: string; resource?: string } = {},
): Promise<string> {
  const res = await requestToken(t, client, { scope: params.scope ?? ALL_ADMIN_SCOPES, ...params });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

type Method = 'get' | 'post' | 'put' | 'delete';
/** Query parameters; undefined ones are left out. */
type Query = Record<string, string | number | boolean | undefined>;
const defined = (query: Query) =>
  Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined)) as Record<
    string,
    string | number | boolean
  >;

/** Requests to /v2 with `Authorization: Bearer <token>`. */
export class AdminApi {
  constructor(
    readonly t: TestApp,
    readonly token: string,
    readonly client?: ServiceClient,
  ) {}

  call(method: Method, path: string, body?: unknown) {
    const req = request(this.t.callback)[method](path).set('Authorization', `Bearer ${this.token}`);
    return body === undefined ? req : req.send(body as object);
  }

  get(path: string, query?: Query) {
    const req = this.call('get', path);
    return query ? req.query(defined(query)) : req;
  }

  post(path: string, body?: unknown) {
    return this.call('post', path, body);
  }

  put(path: string, body?: unknown) {
    return this.call('put', path, body);
  }

  delete(path: string, query?: Query) {
    const req = this.call('delete', path);
    return query ? req.query(defined(query)) : req;
  }

  /** POST /v2/users, expecting 201; returns the user. */
  async createUser(over: Record<string, unknown> = {}): Promise<ApiUser> {
    const res = await this.post('/v2/users', {
      email: uniqueEmail(),
      first_name: 'Test',
      last_name: 'User',
      ...over,
    });
    expect(res.status).toBe(201);
    return res.body as ApiUser;
  }

  /** POST /v2/roles, expecting 201; returns the role. */
  async createRole(over: Record<string, unknown> = {}): Promise<ApiRole> {
    const res = await this.post('/v2/roles', { name: uniqueRoleName(), ...over });
    expect(res.status).toBe(201);
    return res.body as ApiRole;
  }
}

/** A service client with every admin scope (or `scope`) and an API wrapper holding its token. */
export async function adminApi(
  t: TestApp,
  options: { scope?: string; plan?: string; resource?: string } = {},
): Promise<AdminApi> {
  const client = await registerServiceClient(t, options);
  const token = await clientToken(t, client, {
    scope: options.scope ?? ALL_ADMIN_SCOPES,
    ...(options.resource ? { resource: options.resource } : {}),
  });
  return new AdminApi(t, token, client);
}

export interface ApiUser {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string;
  status: 'active' | 'suspended' | 'inactive';
  email_verified: boolean;
  created_at: string;
  updated_at: string;
  last_login: string | null;
  metadata: Record<string, unknown>;
  [more: string]: unknown;
}

export interface ApiRole {
  id: string;
  name: string;
  display_name: string;
  description: string | null;
  permissions: string[];
  created_at: string;
  updated_at: string;
}

export const randomTag = (bytes = 4) => randomBytes(bytes).toString('hex');

export function uniqueEmail(prefix = 'user', domain = 'example.com'): string {
  return `${prefix}-${randomTag(5)}@${domain}`;
}

export function uniqueRoleName(prefix = 'role'): string {
  return `${prefix}-${randomTag(5)}`;
}

/** A word no other user has, to use as a name and find again with `search`. */
export function uniqueWord(prefix = 'Zz'): string {
  return `${prefix}${randomTag(5)}`;
}

export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** A user's own access token (opaque), through an API key of theirs exchanged at /v2/auth/token. */
export async function userToken(t: TestApp, api: AdminApi, userId: string): Promise<string> {
  const key = await api.post(`/v2/users/${userId}/api-keys`, { name: 'test' });
  expect(key.status).toBe(201);
  const token = await request(t.callback).post('/v2/auth/token').send({ api_key: key.body.key });
  expect(token.status).toBe(200);
  return token.body.access_token as string;
}
