/**
 * First-start provisioning from configuration, the way Keycloak's bootstrap admin works: an admin
 * role, a confidential client-credentials client allowed every admin scope, and an admin user.
 * Only what is missing is created; existing records are changed in one way only: the built-in admin
 * role and the bootstrap client gain management scopes a newer version added (so an upgrade's new
 * features are usable by the administrators it already has). Safe to run from several instances at
 * once (a lost creation race is simply ignored).
 */
import type { Logger } from 'pino';

import { hashClientSecret } from '../oidc/client-secrets.js';
import { ADMIN_SCOPES } from '../oidc/scopes.js';
import { StoreConflictError } from '../store/errors.js';
import type { DurableStore } from '../store/ports.js';
import type { PasswordHasher } from './passwords.js';
import { ADMIN_ROLE, DEFAULT_ROLE as USER_ROLE } from './users.js';

export interface BootstrapSettings {
  clientId?: string;
  clientSecret?: string;
  adminEmail?: string;
  adminPassword?: string;
}

async function ignoringConflicts<T>(work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StoreConflictError) return undefined;
    throw err;
  }
}

/** The roles every installation has: `user` (the default primary role) and `admin`. */
export async function ensureDefaultRoles(store: DurableStore): Promise<void> {
  for (const role of [
    { name: USER_ROLE, display_name: 'User', description: 'Signs in to applications', permissions: [] },
    {
      name: ADMIN_ROLE,
      display_name: 'Administrator',
      description: 'Full access to the management API',
      permissions: [...ADMIN_SCOPES],
    },
  ]) {
    const existing = await store.roles.findByName(role.name);
    if (!existing) {
      await ignoringConflicts(() => store.roles.create(role));
      continue;
    }
    const missing = role.permissions.filter((p) => !existing.permissions.includes(p));
    if (missing.length > 0) {
      await store.roles.update(existing.id, { permissions: [...existing.permissions, ...missing] });
    }
  }
}

export async function bootstrap(
  store: DurableStore,
  passwords: PasswordHasher,
  settings: BootstrapSettings,
  log: Logger,
): Promise<void> {
  await ensureDefaultRoles(store);
  const existingClient = settings.clientId ? await store.clients.find(settings.clientId) : null;
  if (existingClient) {
    const scopes = String(existingClient.metadata.scope ?? '')
      .split(' ')
      .filter(Boolean);
    const missing = ADMIN_SCOPES.filter((s) => !scopes.includes(s));
    if (missing.length > 0) {
      await store.clients.update(existingClient.client_id, {
        metadata: { ...existingClient.metadata, scope: [...scopes, ...missing].join(' ') },
      });
      log.info(
        { client_id: existingClient.client_id, added: missing },
        'bootstrap admin client gains new management scopes',
      );
    }
  }
  if (settings.clientId && settings.clientSecret && !existingClient) {
    const created = await ignoringConflicts(() =>
      store.clients.create({
        client_id: settings.clientId!,
        client_secret_hash: hashClientSecret(settings.clientSecret!),
        first_party: true,
        metadata: {
          client_name: 'Bootstrap administrator',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
          scope: ADMIN_SCOPES.join(' '),
          plan: 'enterprise',
        },
      }),
    );
    if (created) log.info({ client_id: settings.clientId }, 'created bootstrap admin client');
  }

  if (settings.adminEmail && settings.adminPassword) {
    const role = await store.roles.findByName(ADMIN_ROLE);
    if (!(await store.users.findByEmail(settings.adminEmail, 'include'))) {
      const user = await ignoringConflicts(async () =>
        store.users.create({
          email: settings.adminEmail!,
          first_name: 'Admin',
          last_name: '',
          role: ADMIN_ROLE,
          email_verified: true,
          password_hash: await passwords.hash(settings.adminPassword!),
        }),
      );
      if (user) {
        if (role) await store.roles.assign(user.id, role.id);
        log.info({ user_id: user.id }, 'created bootstrap admin user');
      }
    }
  }
}
