/**
 * oidc-provider artifacts in the embedded SQLite file. Expiry is enforced on every read, and expired
 * rows are swept periodically; consumption is sticky (an upsert never un-consumes). Lookup keys (grant,
 * uid, user code, account) are columns of the artifact's own row, so they live and die with it.
 * Writes share commits with the others of the same event-loop turn (EmbeddedDatabase.runGrouped)
 * and resolve once committed.
 */
import { accountIdOf, GRANTABLE_MODELS } from '../artifact-models.js';
import { checkExpiresIn } from '../errors.js';
import type { ArtifactAdapter, ArtifactPayload, ArtifactStore } from '../ports.js';
import type { EmbeddedDatabase } from './database.js';

interface ArtifactRow {
  payload: string;
  consumed_at: number | null;
}

function toPayload(row: ArtifactRow | undefined): ArtifactPayload | undefined {
  if (!row) return undefined;
  const payload = JSON.parse(row.payload) as ArtifactPayload;
  if (row.consumed_at !== null) payload.consumed = Math.floor(row.consumed_at / 1000);
  return payload;
}

class EmbeddedArtifactAdapter implements ArtifactAdapter {
  constructor(
    private readonly db: EmbeddedDatabase,
    private readonly model: string,
    private readonly now: () => number,
  ) {}

  async upsert(id: string, payload: ArtifactPayload, expiresIn: number): Promise<void> {
    const ttl = checkExpiresIn(this.model, expiresIn);
    const grantId = GRANTABLE_MODELS.has(this.model) && payload.grantId ? payload.grantId : null;
    const consumedAt = typeof payload.consumed === 'number' ? payload.consumed * 1000 : null;
    await this.db.runGrouped(
      `INSERT INTO oidc_artifacts
         (model, id, payload, grant_id, user_code, uid, account_id, expires_at, consumed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (model, id) DO UPDATE SET
         payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
         uid = excluded.uid, account_id = excluded.account_id, expires_at = excluded.expires_at,
         consumed_at = COALESCE(oidc_artifacts.consumed_at, excluded.consumed_at)`,
      this.model,
      id,
      JSON.stringify(payload),
      grantId,
      typeof payload.userCode === 'string' ? payload.userCode : null,
      typeof payload.uid === 'string' ? payload.uid : null,
      accountIdOf(payload),
      this.now() + ttl * 1000,
      consumedAt,
    );
  }

  async find(id: string): Promise<ArtifactPayload | undefined> {
    return toPayload(
      this.db.get<ArtifactRow>(
        'SELECT payload, consumed_at FROM oidc_artifacts WHERE model = ? AND id = ? AND expires_at > ?',
        this.model,
        id,
        this.now(),
      ),
    );
  }

  async findByUid(uid: string): Promise<ArtifactPayload | undefined> {
    return toPayload(
      this.db.get<ArtifactRow>(
        `SELECT payload, consumed_at FROM oidc_artifacts WHERE model = ? AND uid = ? AND expires_at > ?
         ORDER BY expires_at DESC LIMIT 1`,
        this.model,
        uid,
        this.now(),
      ),
    );
  }

  async findByUserCode(userCode: string): Promise<ArtifactPayload | undefined> {
    return toPayload(
      this.db.get<ArtifactRow>(
        `SELECT payload, consumed_at FROM oidc_artifacts WHERE model = ? AND user_code = ? AND expires_at > ?
         ORDER BY expires_at DESC LIMIT 1`,
        this.model,
        userCode,
        this.now(),
      ),
    );
  }

  async consume(id: string): Promise<void> {
    const now = this.now();
    await this.db.runGrouped(
      `UPDATE oidc_artifacts SET consumed_at = COALESCE(consumed_at, ?)
       WHERE model = ? AND id = ? AND expires_at > ?`,
      now,
      this.model,
      id,
      now,
    );
  }

  async destroy(id: string): Promise<void> {
    await this.db.runGrouped('DELETE FROM oidc_artifacts WHERE model = ? AND id = ?', this.model, id);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.runGrouped('DELETE FROM oidc_artifacts WHERE grant_id = ?', grantId);
  }
}

export interface EmbeddedArtifactStoreOptions {
  sweepIntervalMs?: number;
  now?: () => number;
}

export class EmbeddedArtifactStore implements ArtifactStore {
  readonly kind = 'embedded' as const;
  private readonly adapters = new Map<string, EmbeddedArtifactAdapter>();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private closed = false;

  constructor(
    private readonly db: EmbeddedDatabase,
    options: EmbeddedArtifactStoreOptions = {},
  ) {
    db.retain();
    this.now = options.now ?? Date.now;
    if (options.sweepIntervalMs) {
      this.timer = setInterval(() => this.sweep(), options.sweepIntervalMs);
      this.timer.unref();
    }
  }

  adapterFor(model: string): ArtifactAdapter {
    let adapter = this.adapters.get(model);
    if (!adapter) {
      adapter = new EmbeddedArtifactAdapter(this.db, model, this.now);
      this.adapters.set(model, adapter);
    }
    return adapter;
  }

  async revokeByAccountId(accountId: string): Promise<number> {
    if (accountId === '') return 0;
    // Expired rows are already gone for every reader; counting them would make the answer depend on
    // when the sweep last ran (Redis never counts them either). The sweep removes them.
    const { changes } = await this.db.runGrouped(
      'DELETE FROM oidc_artifacts WHERE account_id = ? AND expires_at > ?',
      accountId,
      this.now(),
    );
    return changes;
  }

  async listByAccountId(accountId: string, model: string): Promise<ArtifactPayload[]> {
    if (accountId === '') return [];
    return this.db
      .all<ArtifactRow>(
        `SELECT payload, consumed_at FROM oidc_artifacts
         WHERE account_id = ? AND model = ? AND expires_at > ?`,
        accountId,
        model,
        this.now(),
      )
      .map((row) => toPayload(row)!);
  }

  /** Deletes expired artifacts; returns how many. */
  sweep(): number {
    if (this.closed) return 0;
    return this.db.run('DELETE FROM oidc_artifacts WHERE expires_at <= ?', this.now()).changes;
  }

  async ping(): Promise<void> {
    this.db.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.db.release();
  }
}
