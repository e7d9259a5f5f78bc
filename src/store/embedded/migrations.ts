/**
 * Versioned schema of the embedded SQLite file. PRAGMA user_version records the last applied step;
 * steps are append-only: never edit one that has shipped, add the next.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'users, roles, clients, signing keys, oidc artifacts, counters',
    sql: `
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        email_normalized TEXT NOT NULL UNIQUE,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        email_verified INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        password_reset_required INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL DEFAULT '{}',
        preferences TEXT NOT NULL DEFAULT '{}',
        login_count INTEGER NOT NULL DEFAULT 0,
        last_login TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
      ) STRICT;
      CREATE INDEX users_created_at ON users (created_at, id);
      CREATE INDEX users_status ON users (status, created_at);
      CREATE INDEX users_role ON users (role, created_at);
      CREATE INDEX users_last_name ON users (last_name, id);

      CREATE TABLE user_search_terms (
        term TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        PRIMARY KEY (term, user_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX user_search_terms_user ON user_search_terms (user_id);

      CREATE TABLE roles (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        description TEXT,
        permissions TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE user_roles (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, role_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX user_roles_role ON user_roles (role_id);

      CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        client_secret_hash TEXT,
        metadata TEXT NOT NULL,
        first_party INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX clients_created_at ON clients (created_at, client_id);

      CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        use TEXT NOT NULL,
        status TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        private_jwk_encrypted TEXT NOT NULL,
        created_at TEXT NOT NULL,
        activates_at TEXT NOT NULL,
        retired_at TEXT,
        expires_at TEXT
      ) STRICT;

      CREATE TABLE oidc_artifacts (
        model TEXT NOT NULL,
        id TEXT NOT NULL,
        payload TEXT NOT NULL,
        grant_id TEXT,
        user_code TEXT,
        uid TEXT,
        expires_at INTEGER NOT NULL,
        consumed_at INTEGER,
        PRIMARY KEY (model, id)
      ) STRICT;
      CREATE INDEX oidc_artifacts_grant ON oidc_artifacts (grant_id) WHERE grant_id IS NOT NULL;
      CREATE INDEX oidc_artifacts_uid ON oidc_artifacts (model, uid) WHERE uid IS NOT NULL;
      CREATE INDEX oidc_artifacts_user_code ON oidc_artifacts (model, user_code) WHERE user_code IS NOT NULL;
      CREATE INDEX oidc_artifacts_expires_at ON oidc_artifacts (expires_at);

      CREATE TABLE counters (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX counters_expires_at ON counters (expires_at);
    `,
  },
  {
    version: 2,
    description: 'resource servers',
    sql: `
      CREATE TABLE resource_servers (
        id TEXT PRIMARY KEY,
        identifier TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '[]',
        access_token_format TEXT NOT NULL,
        access_token_ttl INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    description: 'audit trail',
    // Append-only: rows are inserted and read, never updated. The indexes serve the usual questions:
    // the newest entries (keyset pages on timestamp, id), one record's history, one actor's doings,
    // and one kind of event.
    sql: `
      CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        timestamp TEXT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor_client_id TEXT,
        action TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT,
        request_id TEXT,
        ip_address TEXT,
        user_agent TEXT,
        changes TEXT,
        details TEXT
      ) STRICT;
      CREATE INDEX audit_log_timestamp ON audit_log (timestamp, id);
      CREATE INDEX audit_log_target ON audit_log (target_type, target_id, timestamp);
      CREATE INDEX audit_log_actor ON audit_log (actor_id, timestamp);
      CREATE INDEX audit_log_action ON audit_log (action, timestamp);
    `,
  },
  {
    version: 4,
    description: 'account index of oidc artifacts',
    // Rows written before this step carry their account only inside the payload: copy it out, so
    // revoking an account also finds artifacts issued before the upgrade.
    sql: `
      ALTER TABLE oidc_artifacts ADD COLUMN account_id TEXT;
      UPDATE oidc_artifacts SET account_id = json_extract(payload, '$.accountId')
        WHERE json_type(payload, '$.accountId') = 'text' AND json_extract(payload, '$.accountId') <> '';
      CREATE INDEX oidc_artifacts_account ON oidc_artifacts (account_id) WHERE account_id IS NOT NULL;
    `,
  },
  {
    version: 5,
    description: 'indexes of live (not soft-deleted) users',
    // Lists and counts almost always exclude soft-deleted users; partial indexes over live rows let
    // them be answered from the index alone instead of visiting every row to test deleted_at.
    sql: `
      CREATE INDEX users_live_created_at ON users (created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_status ON users (status, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_role ON users (role, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_last_name ON users (last_name, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_email ON users (email_normalized) WHERE deleted_at IS NULL;
    `,
  },
  {
    version: 6,
    description: 'users get a stable integer key; search terms point at it',
    // Text searches fetch every matching user; reaching a row by its integer key takes one b-tree
    // descent instead of two (the id index, then the row). The key must be declared (INTEGER
    // PRIMARY KEY): an implicit rowid may be renumbered by VACUUM. SQLite cannot add a primary key
    // to a table, so users is rebuilt (foreign keys are off while migrations run, see database.ts).
    sql: `
      CREATE TABLE users_rebuilt (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_normalized TEXT NOT NULL UNIQUE,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        email_verified INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        password_reset_required INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL DEFAULT '{}',
        preferences TEXT NOT NULL DEFAULT '{}',
        login_count INTEGER NOT NULL DEFAULT 0,
        last_login TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
      ) STRICT;
      INSERT INTO users_rebuilt (id, email, email_normalized, first_name, last_name, role, status,
          email_verified, password_hash, password_reset_required, metadata, preferences, login_count,
          last_login, created_at, updated_at, deleted_at)
        SELECT id, email, email_normalized, first_name, last_name, role, status, email_verified,
          password_hash, password_reset_required, metadata, preferences, login_count, last_login,
          created_at, updated_at, deleted_at
        FROM users ORDER BY created_at, id;

      CREATE TABLE user_search_index (
        term TEXT NOT NULL,
        user_seq INTEGER NOT NULL REFERENCES users (seq) ON DELETE CASCADE,
        PRIMARY KEY (term, user_seq)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO user_search_index (term, user_seq)
        SELECT t.term, u.seq FROM user_search_terms t JOIN users_rebuilt u ON u.id = t.user_id;
      DROP TABLE user_search_terms;

      DROP TABLE users;
      ALTER TABLE users_rebuilt RENAME TO users;
      CREATE INDEX user_search_index_user ON user_search_index (user_seq);
      CREATE INDEX users_created_at ON users (created_at, id);
      CREATE INDEX users_status ON users (status, created_at);
      CREATE INDEX users_role ON users (role, created_at);
      CREATE INDEX users_last_name ON users (last_name, id);
      CREATE INDEX users_live_created_at ON users (created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_status ON users (status, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_role ON users (role, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_last_name ON users (last_name, id) WHERE deleted_at IS NULL;
      CREATE INDEX users_live_email ON users (email_normalized) WHERE deleted_at IS NULL;
    `,
  },
  {
    version: 7,
    description: 'plans, API keys, usage, quotas; users get a plan',
    // Quotas live beside the counters (same file) and are changed only by single statements.
    sql: `
      ALTER TABLE users ADD COLUMN plan TEXT;

      CREATE TABLE plans (
        name TEXT PRIMARY KEY,
        requests_per_hour INTEGER NOT NULL,
        burst INTEGER NOT NULL,
        quota INTEGER NOT NULL,
        quota_period TEXT NOT NULL,
        credits INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        owner_type TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        environment TEXT NOT NULL,
        lookup_id TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '[]',
        allowed_ips TEXT NOT NULL DEFAULT '[]',
        expires_at TEXT,
        last_used_at TEXT,
        revoked_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX api_keys_owner ON api_keys (owner_type, owner_id, created_at);

      CREATE TABLE usage_entries (
        id TEXT PRIMARY KEY,
        owner_type TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        key_id TEXT,
        model TEXT NOT NULL,
        message_count INTEGER NOT NULL,
        characters INTEGER NOT NULL,
        research_model INTEGER NOT NULL,
        messages TEXT,
        idempotency_key TEXT,
        day TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX usage_entries_owner ON usage_entries (owner_type, owner_id, created_at);

      CREATE TABLE quotas (
        key TEXT PRIMARY KEY,
        remaining INTEGER NOT NULL,
        used INTEGER NOT NULL,
        credits INTEGER NOT NULL,
        period_end INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 8,
    description: 'users: the UTS #39 skeleton of each e-mail, to find look-alike addresses',
    sql: `
      ALTER TABLE users ADD COLUMN email_skeleton TEXT NOT NULL DEFAULT '';
      UPDATE users SET email_skeleton = latchkey_email_skeleton(email_normalized);
      CREATE INDEX users_email_skeleton ON users (email_skeleton);
    `,
  },
  {
    version: 9,
    description: 'the event outbox: domain events and their deliveries, with an index for claiming due ones',
    sql: `
      CREATE TABLE outbox_events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
      ) STRICT;
      CREATE INDEX outbox_events_timestamp ON outbox_events (timestamp, id);
      CREATE INDEX outbox_events_type ON outbox_events (type, timestamp, id);

      CREATE TABLE outbox_deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        lease_owner TEXT,
        lease_expires_at TEXT,
        last_status INTEGER,
        last_error TEXT,
        latency_ms INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (event_id, endpoint_id)
      ) STRICT;
      CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at, id)
        WHERE status IN ('pending', 'failed');
      CREATE INDEX outbox_deliveries_endpoint ON outbox_deliveries (endpoint_id, created_at, id);
      CREATE INDEX outbox_deliveries_created ON outbox_deliveries (created_at, id);
      CREATE INDEX outbox_deliveries_finished ON outbox_deliveries (finished_at)
        WHERE status IN ('succeeded', 'dead');
    `,
  },
  {
    version: 10,
    description: 'webhook endpoints',
    sql: `
      CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '[]',
        description TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_secret_expires_at TEXT,
        disabled_reason TEXT,
        failing_since TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX webhooks_created ON webhooks (created_at, id);
    `,
  },
  {
    // The runner applies any step above the file's version in array order: keep the array sorted.
    version: 11,
    description: 'analytics rollups: exact distinct-count sets and label sets, each with an expiry',
    sql: `
      CREATE TABLE distinct_sets (
        key TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX distinct_sets_expiry ON distinct_sets (expires_at);

      CREATE TABLE distinct_members (
        key TEXT NOT NULL,
        member TEXT NOT NULL,
        PRIMARY KEY (key, member)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 12,
    description: 'Cedar policies (every version kept), the policy schema, registered policy entities',
    sql: `
      CREATE TABLE policy_versions (
        policy_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        description TEXT,
        policy TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        PRIMARY KEY (policy_id, version)
      ) STRICT;
      CREATE INDEX policy_versions_created ON policy_versions (created_at);

      CREATE TABLE policy_schemas (
        version INTEGER PRIMARY KEY,
        schema TEXT,
        created_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE policy_entities (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        attrs TEXT NOT NULL DEFAULT '{}',
        parents TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (type, id)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 13,
    description: 'Second factors (authenticator apps, passkeys) and recovery codes; users.mfa_enabled',
    sql: `
      ALTER TABLE users ADD COLUMN mfa_enabled INTEGER NOT NULL DEFAULT 0;

      CREATE TABLE mfa_factors (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        secret TEXT,
        credential_id TEXT UNIQUE,
        public_key TEXT,
        counter INTEGER NOT NULL DEFAULT 0,
        transports TEXT NOT NULL DEFAULT '[]',
        device_type TEXT,
        backed_up INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        last_used_at TEXT
      ) STRICT;
      CREATE INDEX mfa_factors_user ON mfa_factors (user_id, created_at);

      CREATE TABLE mfa_recovery_codes (
        user_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        used_at TEXT,
        PRIMARY KEY (user_id, hash)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 14,
    description: "Single sign-on: upstream connections, their e-mail domains, users' upstream identities",
    sql: `
      CREATE TABLE sso_connections (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        issuer TEXT,
        client_id TEXT,
        client_secret_encrypted TEXT,
        scopes TEXT NOT NULL DEFAULT '[]',
        metadata_url TEXT,
        metadata_xml TEXT,
        auto_provision INTEGER NOT NULL DEFAULT 0,
        default_role TEXT,
        attribute_mapping TEXT NOT NULL DEFAULT '{}',
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE sso_domains (
        domain TEXT PRIMARY KEY,
        connection_id TEXT NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE
      ) STRICT;
      CREATE INDEX sso_domains_connection ON sso_domains (connection_id);

      CREATE TABLE sso_identities (
        connection_id TEXT NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (connection_id, subject)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX sso_identities_user ON sso_identities (user_id, created_at);
    `,
  },
  {
    version: 15,
    description: 'Dynamic client registration: initial and registration access tokens (digests only)',
    sql: `
      CREATE TABLE registration_tokens (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        client_id TEXT,
        description TEXT,
        created_by TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        last_used_at TEXT,
        use_count INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      CREATE INDEX registration_tokens_kind ON registration_tokens (kind, created_at, id);
      CREATE INDEX registration_tokens_client ON registration_tokens (client_id);
    `,
  },
];
