/** Webhook endpoints in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { NewWebhook, WebhookPatch, WebhookRecord, WebhookRepository } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toWebhook(row: Row): WebhookRecord {
  return {
    id: row.id as string,
    url: row.url as string,
    events: JSON.parse(row.events as string) as string[],
    description: (row.description as string | null) ?? null,
    active: row.active === 1,
    secret: row.secret as string,
    previous_secret: (row.previous_secret as string | null) ?? null,
    previous_secret_expires_at: fromIso(row.previous_secret_expires_at),
    disabled_reason: (row.disabled_reason as string | null) ?? null,
    failing_since: fromIso(row.failing_since),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

const isoOrNull = (d: Date | null): string | null => (d ? toIso(d) : null);

export class EmbeddedWebhookRepository implements WebhookRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewWebhook): Promise<WebhookRecord> {
    const now = new Date();
    try {
      const row = this.db.get(
        `INSERT INTO webhooks (id, url, events, description, active, secret, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.id ?? newId('wh', now.getTime()),
        input.url,
        JSON.stringify(input.events),
        input.description,
        input.active ? 1 : 0,
        input.secret,
        toIso(now),
        toIso(now),
      )!;
      return toWebhook(row);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('id');
      throw err;
    }
  }

  async findById(id: string): Promise<WebhookRecord | null> {
    const row = this.db.get('SELECT * FROM webhooks WHERE id = ?', id);
    return row ? toWebhook(row) : null;
  }

  async list(page: { limit: number; offset?: number }): Promise<WebhookRecord[]> {
    return this.db
      .all('SELECT * FROM webhooks ORDER BY created_at, id LIMIT ? OFFSET ?', page.limit, page.offset ?? 0)
      .map(toWebhook);
  }

  async count(): Promise<number> {
    return Number(this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM webhooks')!.n);
  }

  async listActive(): Promise<WebhookRecord[]> {
    return this.db.all('SELECT * FROM webhooks WHERE active = 1 ORDER BY created_at, id').map(toWebhook);
  }

  async update(id: string, patch: WebhookPatch): Promise<WebhookRecord | null> {
    return this.db.transaction(() => {
      const row = this.db.get('SELECT * FROM webhooks WHERE id = ?', id);
      if (!row) return null;
      const next: WebhookRecord = { ...toWebhook(row), ...patch, id, updated_at: new Date() };
      const updated = this.db.get(
        `UPDATE webhooks SET url = ?, events = ?, description = ?, active = ?, secret = ?,
           previous_secret = ?, previous_secret_expires_at = ?, disabled_reason = ?, failing_since = ?,
           updated_at = ?
         WHERE id = ? RETURNING *`,
        next.url,
        JSON.stringify(next.events),
        next.description,
        next.active ? 1 : 0,
        next.secret,
        next.previous_secret,
        isoOrNull(next.previous_secret_expires_at),
        next.disabled_reason,
        isoOrNull(next.failing_since),
        toIso(next.updated_at),
        id,
      );
      return updated ? toWebhook(updated) : null;
    });
  }

  async remove(id: string): Promise<boolean> {
    return this.db.run('DELETE FROM webhooks WHERE id = ?', id).changes > 0;
  }
}
