/** Single sign-on connections, their domains and users' upstream identities in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  NewSsoConnection,
  SsoConnection,
  SsoConnectionPatch,
  SsoConnectionRepository,
  SsoIdentity,
} from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toConnection(row: Row, domains: string[]): SsoConnection {
  return {
    id: row.id as string,
    provider: row.provider as SsoConnection['provider'],
    domains,
    issuer: (row.issuer as string | null) ?? null,
    client_id: (row.client_id as string | null) ?? null,
    client_secret_encrypted: (row.client_secret_encrypted as string | null) ?? null,
    scopes: JSON.parse(row.scopes as string),
    metadata_url: (row.metadata_url as string | null) ?? null,
    metadata_xml: (row.metadata_xml as string | null) ?? null,
    auto_provision: row.auto_provision === 1,
    default_role: (row.default_role as string | null) ?? null,
    attribute_mapping: JSON.parse(row.attribute_mapping as string),
    enabled: row.enabled === 1,
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

function toIdentity(row: Row): SsoIdentity {
  return {
    connection_id: row.connection_id as string,
    subject: row.subject as string,
    user_id: row.user_id as string,
    created_at: fromIso(row.created_at)!,
  };
}

export class EmbeddedSsoConnectionRepository implements SsoConnectionRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  private domainsOf(id: string): string[] {
    return this.db
      .all<{ domain: string }>('SELECT domain FROM sso_domains WHERE connection_id = ? ORDER BY domain', id)
      .map((r) => r.domain);
  }

  private load(id: string): SsoConnection | null {
    const row = this.db.get('SELECT * FROM sso_connections WHERE id = ?', id);
    return row ? toConnection(row, this.domainsOf(id)) : null;
  }

  private setDomains(id: string, domains: readonly string[]): void {
    this.db.run('DELETE FROM sso_domains WHERE connection_id = ?', id);
    for (const domain of new Set(domains)) {
      try {
        this.db.run('INSERT INTO sso_domains (domain, connection_id) VALUES (?, ?)', domain, id);
      } catch (err) {
        if (uniqueViolation(err)) throw new StoreConflictError('domain');
        throw err;
      }
    }
  }

  async create(input: NewSsoConnection): Promise<SsoConnection> {
    const id = input.id ?? newId('sso');
    const now = toIso(new Date());
    return this.db.transaction(() => {
      try {
        this.db.run(
          `INSERT INTO sso_connections (id, provider, issuer, client_id, client_secret_encrypted, scopes,
             metadata_url, metadata_xml, auto_provision, default_role, attribute_mapping, enabled,
             created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          id,
          input.provider,
          input.issuer ?? null,
          input.client_id ?? null,
          input.client_secret_encrypted ?? null,
          JSON.stringify(input.scopes ?? []),
          input.metadata_url ?? null,
          input.metadata_xml ?? null,
          input.auto_provision ? 1 : 0,
          input.default_role ?? null,
          JSON.stringify(input.attribute_mapping ?? {}),
          input.enabled === false ? 0 : 1,
          now,
          now,
        );
      } catch (err) {
        if (uniqueViolation(err)) throw new StoreConflictError('id');
        throw err;
      }
      this.setDomains(id, input.domains);
      return this.load(id)!;
    });
  }

  async findById(id: string): Promise<SsoConnection | null> {
    return this.load(id);
  }

  async findByDomain(domain: string): Promise<SsoConnection | null> {
    const row = this.db.get<{ connection_id: string }>(
      'SELECT connection_id FROM sso_domains WHERE domain = ?',
      domain,
    );
    return row ? this.load(row.connection_id) : null;
  }

  async list(): Promise<SsoConnection[]> {
    return this.db
      .all('SELECT * FROM sso_connections ORDER BY created_at, id')
      .map((row) => toConnection(row, this.domainsOf(row.id as string)));
  }

  async update(id: string, patch: SsoConnectionPatch): Promise<SsoConnection | null> {
    return this.db.transaction(() => {
      const current = this.load(id);
      if (!current) return null;
      const next = { ...current, ...patch };
      this.db.run(
        `UPDATE sso_connections SET provider = ?, issuer = ?, client_id = ?, client_secret_encrypted = ?,
           scopes = ?, metadata_url = ?, metadata_xml = ?, auto_provision = ?, default_role = ?,
           attribute_mapping = ?, enabled = ?, updated_at = ?
         WHERE id = ?`,
        next.provider,
        next.issuer,
        next.client_id,
        next.client_secret_encrypted,
        JSON.stringify(next.scopes),
        next.metadata_url,
        next.metadata_xml,
        next.auto_provision ? 1 : 0,
        next.default_role,
        JSON.stringify(next.attribute_mapping),
        next.enabled ? 1 : 0,
        toIso(new Date()),
        id,
      );
      if (patch.domains) this.setDomains(id, patch.domains);
      return this.load(id);
    });
  }

  async remove(id: string): Promise<boolean> {
    // Domains and identities go with it (ON DELETE CASCADE).
    return this.db.run('DELETE FROM sso_connections WHERE id = ?', id).changes > 0;
  }

  async linkIdentity(identity: Omit<SsoIdentity, 'created_at'>): Promise<SsoIdentity> {
    try {
      const row = this.db.get(
        `INSERT INTO sso_identities (connection_id, subject, user_id, created_at) VALUES (?, ?, ?, ?)
         RETURNING *`,
        identity.connection_id,
        identity.subject,
        identity.user_id,
        toIso(new Date()),
      )!;
      return toIdentity(row);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('identity');
      throw err;
    }
  }

  async findIdentity(connectionId: string, subject: string): Promise<SsoIdentity | null> {
    const row = this.db.get(
      'SELECT * FROM sso_identities WHERE connection_id = ? AND subject = ?',
      connectionId,
      subject,
    );
    return row ? toIdentity(row) : null;
  }

  async listIdentities(userId: string): Promise<SsoIdentity[]> {
    return this.db
      .all(
        'SELECT * FROM sso_identities WHERE user_id = ? ORDER BY created_at, connection_id, subject',
        userId,
      )
      .map(toIdentity);
  }

  async listIdentitiesOf(userIds: readonly string[]): Promise<Map<string, SsoIdentity[]>> {
    const out = new Map<string, SsoIdentity[]>();
    if (userIds.length === 0) return out;
    const rows = this.db.all(
      `SELECT * FROM sso_identities WHERE user_id IN (SELECT value FROM json_each(?))
       ORDER BY created_at, connection_id, subject`,
      JSON.stringify(userIds),
    );
    for (const row of rows) {
      const identity = toIdentity(row);
      out.set(identity.user_id, [...(out.get(identity.user_id) ?? []), identity]);
    }
    return out;
  }

  async removeIdentitiesOfUser(userId: string): Promise<number> {
    return Number(this.db.run('DELETE FROM sso_identities WHERE user_id = ?', userId).changes);
  }
}
