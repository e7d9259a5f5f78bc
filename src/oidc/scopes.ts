/** The scopes and claims this server knows, shared by the provider, the admin API and the CLI. */

/** Scopes of the management API (/v2). */
export const ADMIN_SCOPES = [
  'user:read',
  'user:write',
  'user:security',
  'role:manage',
  'client:manage',
  'key:manage',
  'plan:manage',
  'audit:read',
  'webhook:manage',
  'analytics:read',
  'policy:manage',
  'policy:evaluate',
  'mail:read',
  'sso:manage',
] as const;
export type AdminScope = (typeof ADMIN_SCOPES)[number];

export const ADMIN_SCOPE_DESCRIPTIONS: Record<AdminScope, string> = {
  'user:read': 'Read users, their roles, preferences and activity',
  'user:write': 'Create, update, suspend, delete and restore users',
  'user:security':
    'Change security-relevant user state: reactivate suspended or inactive users, set email_verified, write protected metadata keys',
  'role:manage': 'Manage roles and assign them to users',
  'client:manage': 'Manage OAuth clients and APIs (resource servers)',
  'key:manage': 'Manage API keys of users and service clients',
  'plan:manage': 'Manage plans, users’ plans, and adjust quotas and credits',
  'audit:read': 'Read the audit trail',
  'webhook:manage': 'Manage webhook endpoints, their secrets and deliveries',
  'analytics:read': 'Read user analytics (registrations, active and returning users)',
  'policy:manage': 'Manage Cedar policies, their schema and registered policy entities',
  'policy:evaluate':
    'Ask /v1/authorize for decisions about any principal (a user’s own token may ask about that user)',
  'mail:read': 'See the e-mail messages the server sent or tries to send, and why sending failed',
  'sso:manage':
    'Manage single sign-on connections to upstream identity providers (their client secrets are never shown)',
};

/** Standard OpenID Connect scopes and the claims each releases (openid → sub only). */
export const OIDC_SCOPE_CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'given_name', 'family_name', 'updated_at'],
  email: ['email', 'email_verified'],
  roles: ['roles'],
} as const;

export const OIDC_SCOPES = [...Object.keys(OIDC_SCOPE_CLAIMS), 'offline_access'];
