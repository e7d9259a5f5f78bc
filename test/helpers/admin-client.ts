/**
 * A management-API caller for tests of /v2 against a running test server: a service client with
 * the admin scopes (enterprise plan, so rate limits stay out of the way) gets a client-credentials
 * token from the real token endpoint, and requests go through supertest with that bearer token.
 * Also small helpers for the OAuth side that the /v2 effects are checked through.
 */
import request from 'supertest';

import { ADMIN_SCOPES } from '../../src/oidc/scopes.js';
import { registerClient } from './fixtures.js';
import type { TestServer } from './test-server.js';

export const ALL_ADMIN_SCOPES = ADMIN_SCOPES.join(' ');

export interface AdminClient {
  clientId: string;
  token: string;
  get(path: string): request.Test;
  post(path: string, body?: object): request.Test;
  put(path: string, body?: object): request.Test;
  del(path: string): request.Test;
}

export interface TokenResponse {
  status: number;
  body: Record<string, unknown>;
}

/** POST /oauth/token with client_secret_basic, as a service would; never throws on an error answer. */
export async function tokenRequest(
  issuer: string,
  client: { clientId: string; clientSecret?: string },
  params: Record<string, string>,
): Promise<TokenResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const form = new URLSearchParams(params);
  if (client.clientSecret !== undefined) {
    const basic = `${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`;
    headers.authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
  } else {
    form.set('client_id', client.clientId);
  }
  const res = await fetch(`${issuer}/oauth/token`, { method: 'POST', headers, body: form });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A client-credentials token request; the `scope` defaults to none (the client's allowed scope). */
export function clientCredentials(
  issuer: string,
  client: { clientId: string; clientSecret?: string },
  extra: Record<string, string> = {},
): Promise<TokenResponse> {
  return tokenRequest(issuer, client, { grant_type: 'client_credentials', ...extra });
}

/** A service client holding `scope` (all admin scopes by default) and a token for it. */
export async function adminClient(server: TestServer, scope = ALL_ADMIN_SCOPES): Promise<AdminClient> {
  const service = await registerClient(server.t, 'service', { metadata: { scope, plan: 'enterprise' } });
  const issued = await clientCredentials(server.url, service, { scope });
  if (issued.status !== 200) throw new Error(`admin token refused: ${JSON.stringify(issued.body)}`);
  const token = String(issued.body.access_token);
  const agent = request(server.url);
  const auth = (test: request.Test) => test.set('Authorization', `Bearer ${token}`);
  return {
    clientId: service.clientId,
    token,
    get: (path) => auth(agent.get(path)),
    post: (path, body) => (body === undefined ? auth(agent.post(path)) : auth(agent.post(path)).send(body)),
    put: (path, body) => (body === undefined ? auth(agent.put(path)) : auth(agent.put(path)).send(body)),
    del: (path) => auth(agent.delete(path)),
  };
}

/** The envelope of a /v2 error answer, without the parts that change per request. */
export function errorOf(body: unknown): { code: string; message: string; details?: unknown } {
  const error = (body as { error?: Record<string, unknown> }).error;
  if (!error) throw new Error(`not an error envelope: ${JSON.stringify(body)}`);
  return {
    code: error.code as string,
    message: error.message as string,
    ...(error.details !== undefined ? { details: error.details } : {}),
  };
}
