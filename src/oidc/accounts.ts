/**
 * How oidc-provider sees our users: findAccount returns only active, non-deleted users, so a
 * suspended or deleted user's sessions, refresh tokens and userinfo calls stop working at once;
 * claims follow the scopes granted (see scopes.ts).
 */
import type { Account, AccountClaims, FindAccount } from 'oidc-provider';

import type { DurableStore, User } from '../store/ports.js';

export function isActiveUser(user: User | null): user is User {
  return user !== null && user.status === 'active' && user.deleted_at === null;
}

export function createFindAccount(store: DurableStore): FindAccount {
  return async (_ctx, sub) => {
    const user = await store.users.findById(sub);
    if (!isActiveUser(user)) return undefined;
    const account: Account = {
      accountId: user.id,
      async claims(_use, scope): Promise<AccountClaims> {
        const scopes = new Set(scope.split(' '));
        const claims: AccountClaims = { sub: user.id };
        if (scopes.has('profile')) {
          Object.assign(claims, {
            name: [user.first_name, user.last_name].filter(Boolean).join(' '),
            given_name: user.first_name,
            family_name: user.last_name,
            updated_at: Math.floor(user.updated_at.getTime() / 1000),
          });
        }
        if (scopes.has('email'))
          Object.assign(claims, { email: user.email, email_verified: user.email_verified });
        if (scopes.has('roles')) {
          const linked = (await store.roles.listForUser(user.id)).map((r) => r.name);
          claims.roles = [...new Set([user.role, ...linked])];
        }
        return claims;
      },
    };
    return account;
  };
}
