/**
 * Users and clients for tests, created in the app's real stores the way the admin API will: clients
 * of each kind the server supports, with secrets stored only as hashes.
 */
import { randomBytes } from 'node:crypto';

import { generateClientSecret, hashClientSecret } from '../../src/oidc/client-secrets.js';
import type { JsonObject, User } from '../../src/store/ports.js';
import type { TestApp } from './test-app.js';

export const TEST_PASSWORD = 'correct horse battery staple';

export async function createUser(
  t: TestApp,
  over: { email?: string; password?: string | null; status?: User['status']; first_name?: string } = {},
): Promise<{ user: User; email: string; password: string }> {
  const email = over.email ?? `user-${randomBytes(5).toString('hex')}@example.com`;
  const password = over.password === undefined ? TEST_PASSWORD : over.password;
  const user = await t.stores.durable.users.create({
    email,
    first_name: over.first_name ?? 'Test',
    last_name: 'User',
    status: over.status,
    email_verified: true,
    password_hash: password === null ? null : await t.services.passwords.hash(password),
  });
  return { user, email, password: password ?? '' };
}

export type ClientKind = 'spa' | 'web' | 'native' | 'service';

export interface TestClient {
  clientId: string;
  clientSecret?: string;
  redirectUri: string;
  metadata: JsonObject;
}

/**
 * - spa: public, `none` + PKCE, browser redirect URI
 * - web: confidential (client_secret_basic), code + refresh
 * - native: public, RFC 8252 loopback redirect (any port) and a private-use scheme
 * - service: confidential, client credentials only, limited scope
 */
export async function registerClient(
  t: TestApp,
  kind: ClientKind,
  over: { redirectUri?: string; metadata?: JsonObject; firstParty?: boolean } = {},
): Promise<TestClient> {
  const clientId = `${kind}-${randomBytes(5).toString('hex')}`;
  const confidential = kind === 'web' || kind === 'service';
  const clientSecret = confidential ? generateClientSecret() : undefined;
  const redirectUri =
    over.redirectUri ??
    (kind === 'native'
      ? 'http://127.0.0.1/callback'
      : kind === 'service'
        ? ''
        : `https://${clientId}.example.com/callback`);
  const base: Record<ClientKind, JsonObject> = {
    spa: {
      client_name: 'Test SPA',
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [redirectUri.replace(/callback$/, 'signed-out')],
    },
    web: {
      client_name: 'Test Web App',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [redirectUri.replace(/callback$/, 'signed-out')],
    },
    native: {
      client_name: 'Test Native App',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri, 'com.example.app:/oauth2redirect'],
    },
    service: {
      client_name: 'Test Service',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'user:read',
    },
  };
  const metadata = { ...base[kind], ...over.metadata };
  await t.stores.durable.clients.create({
    client_id: clientId,
    client_secret_hash: clientSecret ? hashClientSecret(clientSecret) : null,
    first_party: over.firstParty ?? false,
    metadata,
  });
  return { clientId, clientSecret, redirectUri, metadata };
}
