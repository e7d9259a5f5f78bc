/**
 * How oidc-provider sees our users: findAccount returns only active, non-deleted users, so a
 * suspended or deleted user's sessions, refresh tokens and userinfo calls stop working at once;
 * claims follow the scopes granted (see scopes.ts).
 */
import type { Account, AccountClaims, FindAccount } from 'oidc-provider';

import { lastIdp } from '../sso/last-idp.js';
import type { ArtifactStore, DurableStore, User } from '../store/ports.js';

export function isActiveUser(user: User | null): user is User {
  return user !== null && user.status === 'active' && user.deleted_at === null;
}

/** The amr of the sign-in a token or the current session came from (RFC 8176 values). */
function amrOf(ctx: unknown, token: unknown): string[] {
  const fromToken = (token as { amr?: unknown } | undefined)?.amr;
  const fromSession = (ctx as { oidc?: { session?: { amr?: unknown } } } | undefined)?.oidc?.session?.amr;
  const amr = Array.isArray(fromToken) ? fromToken : Array.isArray(fromSession) ? fromSession : [];
  return amr.filter((m): m is string => typeof m === 'string');
}

/**
 * `idp` (the connection of a single sign-on): oidc-provider keeps no custom fields of a login
 * result, so a token from a federated sign-in (amr `fed`) names the connection of the user's
 * latest upstream sign-in (kept for SESSION_TTL_S, see sso/federation.ts).
 */
export function createFindAccount(store: DurableStore, artifacts?: ArtifactStore): FindAccount {
  return async (ctx, sub, token) => {
    const federated = artifacts !== undefined && amrOf(ctx, token).includes('fed');
    const user = await store.users.findById(sub);
    if (!isActiveUser(user)) return undefined;
    const account: Account = {
      accountId: user.id,
      async claims(_use, scope): Promise<AccountClaims> {
        const scopes = new Set(scope.split(' '));
        const claims: AccountClaims = { sub: user.id };
        if (federated) {
          const idp = await lastIdp(artifacts!, user.id);
          if (idp) claims.idp = idp;
        }
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
