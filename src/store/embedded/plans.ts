/** Plans in the embedded store. */
import { StoreConflictError } from '../errors.js';
import type { NewPlan, PlanPatch, PlanRecord, PlanRepository } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toPlan(row: Row): PlanRecord {
  return {
    name: row.name as string,
    requests_per_hour: Number(row.requests_per_hour),
    burst: Number(row.burst),
    quota: Number(row.quota),
    quota_period: row.quota_period as PlanRecord['quota_period'],
    credits: Number(row.credits),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

const FIELDS = ['requests_per_hour', 'burst', 'quota', 'quota_period', 'credits'] as const;

export class EmbeddedPlanRepository implements PlanRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewPlan): Promise<PlanRecord> {
    const now = toIso(new Date());
    try {
      const row = this.db.get(
        `INSERT INTO plans (name, requests_per_hour, burst, quota, quota_period, credits, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.name,
        input.requests_per_hour,
        input.burst,
        input.quota,
        input.quota_period,
        input.credits,
        now,
        now,
      )!;
      return toPlan(row);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflictError('name');
      throw err;
    }
  }

  async find(name: string): Promise<PlanRecord | null> {
    const row = this.db.get('SELECT * FROM plans WHERE name = ?', name);
    return row ? toPlan(row) : null;
  }

  async list(): Promise<PlanRecord[]> {
    return this.db.all('SELECT * FROM plans ORDER BY name').map(toPlan);
  }

  async update(name: string, patch: PlanPatch): Promise<PlanRecord | null> {
    const sets: string[] = [];
    const values: (string | number)[] = [];
    for (const field of FIELDS) {
      if (patch[field] === undefined) continue;
      sets.push(`${field} = ?`);
      values.push(patch[field]);
    }
    sets.push('updated_at = ?');
    values.push(toIso(new Date()));
    const row = this.db.get(
      `UPDATE plans SET ${sets.join(', ')} WHERE name = ? RETURNING *`,
      ...values,
      name,
    );
    return row ? toPlan(row) : null;
  }

  async remove(name: string): Promise<boolean> {
    return this.db.run('DELETE FROM plans WHERE name = ?', name).changes > 0;
  }
}
