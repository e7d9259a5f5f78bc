/**
 * Authorization of fields and targets, inside the services: a route's scope says who may call an
 * operation at all; these rules say which values the caller may set and on whom. Three rules:
 *
 *  1. Privileged fields need their own scope (PRIVILEGED_FIELDS; the README has the table).
 *  2. Nobody grants what they do not hold: a role, a client's `scope` or an API key carrying a
 *     management scope can be given only by a caller holding that scope itself.
 *  3. Nobody acts on someone more privileged: changing a user (password, e-mail, status, keys,
 *     roles, deletion) needs every management scope that user holds.
 *
 * The system itself (start-up, the CLI) holds everything.
 */
import { AppError } from '../errors/app-error.js';
import { ADMIN_SCOPES } from '../oidc/scopes.js';

/** The management scopes a caller holds; `all` for the system itself. */
export type Grants = ReadonlySet<string> | 'all';

/** Fields whose value changes what someone may do, with the scope each needs beyond the route's. */
export const PRIVILEGED_FIELDS = {
  'user.role': 'role:manage',
  'user.roles': 'role:manage',
  'user.plan': 'plan:manage',
  'user.status (reactivating)': 'user:security',
  'user.email_verified': 'user:security',
  'user.metadata (protected keys)': 'user:security',
  'client.plan': 'plan:manage',
} as const;

const ADMIN = new Set<string>(ADMIN_SCOPES);

export function holds(grants: Grants, scope: string): boolean {
  return grants === 'all' || grants.has(scope);
}

/** The management scopes among a list of permissions or scope tokens. */
export function managementScopes(scopes: Iterable<string>): string[] {
  return [...new Set([...scopes].filter((s) => ADMIN.has(s)))].sort();
}

/** Throws 403 AUTH_INSUFFICIENT_SCOPE naming `field` unless the caller holds every one of `scopes`. */
export function requireScopes(grants: Grants, scopes: Iterable<string>, field: string, reason: string): void {
  const missing = [...scopes].filter((s) => !holds(grants, s));
  if (missing.length === 0) return;
  throw new AppError('AUTH_INSUFFICIENT_SCOPE', {
    message: `${reason} needs the scope${missing.length > 1 ? 's' : ''} ${missing.map((s) => `"${s}"`).join(', ')}`,
    details: missing.map((scope) => ({ field, issue: `Required: ${scope}` })),
    requiredScope: missing.join(' '),
  });
}

/** Rule 2: handing out `scopes` (a role's permissions, a client's or a key's scopes). */
export function requireGrantable(grants: Grants, scopes: Iterable<string>, field: string): void {
  requireScopes(grants, managementScopes(scopes), field, 'Granting these management scopes');
}

/** Rule 3: acting on a user who holds `targetScopes` (the permissions of their roles). */
export function requireDominance(grants: Grants, targetScopes: Iterable<string>, field = 'id'): void {
  requireScopes(grants, managementScopes(targetScopes), field, 'Changing a user who holds management scopes');
}
