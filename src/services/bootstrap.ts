/**
 * First-start provisioning from configuration, the way Keycloak's bootstrap admin works: an admin
 * role, a confidential client-credentials client allowed every admin scope, and an admin user.
 * Only what is missing is created; existing records are never changed. Safe to run from several
 * instances at once (a lost creation race is simply ignored).
 */
import type { Logger } from 'pino';

import { hashClientSecret } from '../oidc/client-secrets.js';
import { ADMIN_SCOPES } from '../oidc/scopes.js';
import { StoreConflictError } from '../store/errors.js';
import type { DurableStore } from '../store/ports.js';
import type { PasswordHasher } from './passwords.js';

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

export const ADMIN_ROLE = 'admin';
export const USER_ROLE = 'user';

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
    if (!(await store.roles.findByName(role.name))) await ignoringConflicts(() => store.roles.create(role));
  }
}

export async function bootstrap(
  store: DurableStore,
  passwords: PasswordHasher,
  settings: BootstrapSettings,
  log: Logger,
): Promise<void> {
  await ensureDefaultRoles(store);
  if (settings.clientId && settings.clientSecret && !(await store.clients.find(settings.clientId))) {
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
