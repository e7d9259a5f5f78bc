/**
 * Single sign-on connections: which upstream identity provider signs in the users of which e-mail
 * domains. The client secret of an OIDC connection is sealed with the key-encryption secret, bound
 * to the connection id, and never leaves the server; changes are audited.
 */
import { AppError } from '../errors/app-error.js';
import type { KeyCipher } from '../oidc/keys/key-cipher.js';
import type { AuditService } from '../services/audit.js';
import { requireGrantable } from '../services/authority.js';
import type { Context } from '../services/users.js';
import { StoreConflictError } from '../store/errors.js';
import { newId } from '../store/ids.js';
import type { DurableStore, SsoConnection, SsoConnectionPatch, SsoProvider } from '../store/ports.js';

export interface ConnectionInput {
  provider: SsoProvider;
  domain?: string;
  domains?: string[];
  issuer?: string | null;
  client_id?: string | null;
  client_secret?: string | null;
  scopes?: string[];
  metadata_url?: string | null;
  metadata_xml?: string | null;
  auto_provision?: boolean;
  default_role?: string | null;
  attribute_mapping?: Record<string, string>;
  enabled?: boolean;
}

export type ConnectionUpdate = Partial<ConnectionInput>;

/** Whether the connection speaks OpenID Connect to its IdP (it has an issuer), or SAML. */
export const protocolOf = (c: Pick<SsoConnection, 'provider' | 'issuer'>): 'oidc' | 'saml' =>
  c.provider === 'oidc' || (c.provider !== 'saml' && c.issuer) ? 'oidc' : 'saml';

export const DEFAULT_OIDC_SCOPES = ['openid', 'email', 'profile'];

const secretAad = (id: string) => `sso-connection:${id}`;

/** What the audit trail keeps of a connection (never the secret itself). */
function auditable(c: SsoConnection): Record<string, unknown> {
  const { client_secret_encrypted, metadata_xml, ...rest } = c;
  return {
    ...rest,
    has_client_secret: client_secret_encrypted !== null,
    has_metadata_xml: metadata_xml !== null,
  };
}

function domainsOf(input: Pick<ConnectionInput, 'domain' | 'domains'>): string[] | undefined {
  if (input.domain === undefined && input.domains === undefined) return undefined;
  const all = [...(input.domain !== undefined ? [input.domain] : []), ...(input.domains ?? [])];
  return [...new Set(all.map((d) => d.trim().toLowerCase()))].sort();
}

/** A rule over several fields (which a schema cannot state): 422, the request being schema-valid. */
function invalid(field: string, issue: string): AppError {
  return new AppError('BUSINESS_RULE_VIOLATION', { message: issue, details: [{ field, issue }] });
}

export class SsoConnections {
  constructor(
    private readonly store: DurableStore,
    private readonly cipher: KeyCipher,
    private readonly audit: AuditService,
  ) {}

  private check(c: SsoConnection): void {
    if (c.domains.length === 0) throw invalid('domain', 'A connection needs at least one e-mail domain');
    if (protocolOf(c) === 'oidc') {
      if (!c.issuer) throw invalid('issuer', 'An OpenID Connect connection needs `issuer`');
      if (!c.client_id) throw invalid('client_id', 'An OpenID Connect connection needs `client_id`');
    } else if (!c.metadata_url && !c.metadata_xml) {
      throw invalid(
        'metadata_url',
        'A SAML connection needs `metadata_url` or `metadata_xml` (or an `issuer` for OIDC)',
      );
    }
  }

  /**
   * The role must exist, and the caller must hold every management scope it carries: provisioning
   * hands it out, so a default role is a grant (as a role given to a user or a client is).
   */
  private async checkRole(role: string | null, context: Context): Promise<void> {
    if (role === null) return;
    const found = await this.store.roles.findByName(role);
    if (!found) {
      throw new AppError('INVALID_ROLE', {
        details: [{ field: 'default_role', issue: 'No such role', provided: role }],
      });
    }
    requireGrantable(context.grants, found.permissions, 'default_role');
  }

  /** The client secret of an OIDC connection, in clear (for the token request only). */
  clientSecret(c: SsoConnection): string | null {
    return c.client_secret_encrypted ? this.cipher.decrypt(c.client_secret_encrypted, secretAad(c.id)) : null;
  }

  async get(id: string): Promise<SsoConnection> {
    const found = await this.store.ssoConnections.findById(id);
    if (!found) throw new AppError('SSO_CONNECTION_NOT_FOUND');
    return found;
  }

  list(): Promise<SsoConnection[]> {
    return this.store.ssoConnections.list();
  }

  /** The enabled connection of an e-mail address's domain, if any. */
  async forEmail(email: string): Promise<SsoConnection | null> {
    const at = email.lastIndexOf('@');
    if (at < 0) return null;
    const found = await this.store.ssoConnections.findByDomain(
      email
        .slice(at + 1)
        .trim()
        .toLowerCase(),
    );
    return found?.enabled ? found : null;
  }

  /** Whether any connection is enabled (the login page then offers home-realm discovery). */
  async anyEnabled(): Promise<boolean> {
    return (await this.store.ssoConnections.list()).some((c) => c.enabled);
  }

  async create(input: ConnectionInput, context: Context): Promise<SsoConnection> {
    const id = newId('sso');
    const draft: SsoConnection = {
      id,
      provider: input.provider,
      domains: domainsOf(input) ?? [],
      issuer: input.issuer ?? null,
      client_id: input.client_id ?? null,
      client_secret_encrypted: input.client_secret
        ? this.cipher.encrypt(input.client_secret, secretAad(id))
        : null,
      scopes: input.scopes ?? (input.issuer ? DEFAULT_OIDC_SCOPES : []),
      metadata_url: input.metadata_url ?? null,
      metadata_xml: input.metadata_xml ?? null,
      auto_provision: input.auto_provision ?? false,
      default_role: input.default_role ?? null,
      attribute_mapping: input.attribute_mapping ?? {},
      enabled: input.enabled ?? true,
      created_at: new Date(),
      updated_at: new Date(),
    };
    this.check(draft);
    await this.checkRole(draft.default_role, context);
    const { created_at: _c, updated_at: _u, ...fields } = draft;
    let created: SsoConnection;
    try {
      created = await this.store.ssoConnections.create(fields);
    } catch (err) {
      throw this.conflict(err);
    }
    await this.record('sso_connection.created', created.id, context, null, created);
    return created;
  }

  async update(id: string, input: ConnectionUpdate, context: Context): Promise<SsoConnection> {
    const before = await this.get(id);
    const patch: SsoConnectionPatch = {};
    const domains = domainsOf(input);
    if (domains) patch.domains = domains;
    for (const key of [
      'provider',
      'issuer',
      'client_id',
      'scopes',
      'metadata_url',
      'metadata_xml',
      'auto_provision',
      'default_role',
      'attribute_mapping',
      'enabled',
    ] as const) {
      if (input[key] !== undefined) (patch as Record<string, unknown>)[key] = input[key];
    }
    if (input.client_secret !== undefined) {
      patch.client_secret_encrypted = input.client_secret
        ? this.cipher.encrypt(input.client_secret, secretAad(id))
        : null;
    }
    this.check({ ...before, ...patch });
    if (patch.default_role !== undefined) await this.checkRole(patch.default_role, context);
    let after: SsoConnection | null;
    try {
      after = await this.store.ssoConnections.update(id, patch);
    } catch (err) {
      throw this.conflict(err);
    }
    if (!after) throw new AppError('SSO_CONNECTION_NOT_FOUND');
    await this.record('sso_connection.updated', id, context, before, after);
    return after;
  }

  /**
   * POST /v2/sso/configure: the connection of `domain` is replaced by this one (same id, every field
   * not given back to its default), or created when the domain has none.
   */
  async configure(
    input: ConnectionInput & { domain: string },
    context: Context,
  ): Promise<{ connection: SsoConnection; created: boolean }> {
    const existing = await this.store.ssoConnections.findByDomain(input.domain.trim().toLowerCase());
    if (!existing) return { connection: await this.create(input, context), created: true };
    const replacement: ConnectionUpdate = {
      issuer: null,
      client_id: null,
      client_secret: null,
      scopes: input.issuer ? DEFAULT_OIDC_SCOPES : [],
      metadata_url: null,
      metadata_xml: null,
      auto_provision: false,
      default_role: null,
      attribute_mapping: {},
      enabled: true,
      ...input,
      domains: [...existing.domains, input.domain],
    };
    return { connection: await this.update(existing.id, replacement, context), created: false };
  }

  async remove(id: string, context: Context): Promise<void> {
    const before = await this.get(id);
    if (!(await this.store.ssoConnections.remove(id))) throw new AppError('SSO_CONNECTION_NOT_FOUND');
    await this.record('sso_connection.deleted', id, context, before, null);
  }

  private conflict(err: unknown): unknown {
    if (err instanceof StoreConflictError && err.field === 'domain') {
      return new AppError('SSO_DOMAIN_TAKEN', {
        details: [{ field: 'domain', issue: 'Another connection has this domain' }],
      });
    }
    return err;
  }

  private async record(
    action: string,
    id: string,
    context: Context,
    before: SsoConnection | null,
    after: SsoConnection | null,
  ): Promise<void> {
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action,
      target_type: 'sso_connection',
      target_id: id,
      before: before ? auditable(before) : null,
      after: after ? auditable(after) : null,
    });
  }
}
