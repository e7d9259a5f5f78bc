/** Usage entries in the embedded store; an idempotency key makes the entry's id, so retries collide. */
import type { ApiKeyOwnerType, NewUsageEntry, UsageEntry, UsageRepository, UsageSummary } from '../ports.js';
import { usageEntryId, usageDay } from '../usage-ids.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toEntry(row: Row): UsageEntry {
  return {
    id: row.id as string,
    owner_type: row.owner_type as ApiKeyOwnerType,
    owner_id: row.owner_id as string,
    key_id: (row.key_id as string | null) ?? null,
    model: row.model as string,
    message_count: Number(row.message_count),
    characters: Number(row.characters),
    research_model: row.research_model === 1,
    messages: row.messages === null ? null : JSON.parse(row.messages as string),
    idempotency_key: (row.idempotency_key as string | null) ?? null,
    day: row.day as string,
    created_at: fromIso(row.created_at)!,
  };
}

export class EmbeddedUsageRepository implements UsageRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async record(input: NewUsageEntry): Promise<{ entry: UsageEntry; duplicate: boolean }> {
    const id = usageEntryId(input);
    try {
      const row = this.db.get(
        `INSERT INTO usage_entries (id, owner_type, owner_id, key_id, model, message_count, characters,
           research_model, messages, idempotency_key, day, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        id,
        input.owner_type,
        input.owner_id,
        input.key_id,
        input.model,
        input.message_count,
        input.characters,
        input.research_model ? 1 : 0,
        input.messages === null ? null : JSON.stringify(input.messages),
        input.idempotency_key,
        usageDay(input.created_at),
        toIso(input.created_at),
      )!;
      return { entry: toEntry(row), duplicate: false };
    } catch (err) {
      if (!uniqueViolation(err)) throw err;
      const first = this.db.get('SELECT * FROM usage_entries WHERE id = ?', id)!;
      return { entry: toEntry(first), duplicate: true };
    }
  }

  async summarize(ownerType: ApiKeyOwnerType, ownerId: string, from: Date, to: Date): Promise<UsageSummary> {
    const range = [ownerType, ownerId, toIso(from), toIso(to)];
    const where = 'owner_type = ? AND owner_id = ? AND created_at >= ? AND created_at < ?';
    const byDay = this.db.all<{ day: string; n: number }>(
      `SELECT day, COUNT(*) AS n FROM usage_entries WHERE ${where} GROUP BY day ORDER BY day`,
      ...range,
    );
    const byModel = this.db.all<{ model: string; n: number }>(
      `SELECT model, COUNT(*) AS n FROM usage_entries WHERE ${where} GROUP BY model ORDER BY n DESC, model`,
      ...range,
    );
    return {
      total: byDay.reduce((sum, r) => sum + Number(r.n), 0),
      by_day: byDay.map((r) => ({ date: r.day, count: Number(r.n) })),
      by_model: byModel.map((r) => ({ model: r.model, count: Number(r.n) })),
    };
  }

  async removeByOwner(ownerType: ApiKeyOwnerType, ownerId: string): Promise<number> {
    return Number(
      this.db.run('DELETE FROM usage_entries WHERE owner_type = ? AND owner_id = ?', ownerType, ownerId)
        .changes,
    );
  }
}
