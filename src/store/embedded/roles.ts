/** Roles and user-role links in the embedded store. */
import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { NewRole, Role, RolePatch, RoleRepository } from '../ports.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';

function toRole(row: Row): Role {
  return {
    id: row.id as string,
    name: row.name as string,
    display_name: row.display_name as string,
    description: (row.description as string | null) ?? null,
    permissions: JSON.parse(row.permissions as string),
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
  };
}

function conflictOrThrow(err: unknown): never {
  const column = uniqueViolation(err);
  if (column) throw new StoreConflictError(column);
  throw err;
}

export class EmbeddedRoleRepository implements RoleRepository {
  constructor(private readonly db: EmbeddedDatabase) {}

  async create(input: NewRole): Promise<Role> {
    const now = toIso(new Date());
    try {
      const row = this.db.get(
        `INSERT INTO roles (id, name, display_name, description, permissions, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        input.id ?? newId('rol'),
        input.name,
        input.display_name ?? input.name,
        input.description ?? null,
        JSON.stringify(input.permissions ?? []),
        now,
        now,
      )!;
      return toRole(row);
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  async findById(id: string): Promise<Role | null> {
    const row = this.db.get('SELECT * FROM roles WHERE id = ?', id);
    return row ? toRole(row) : null;
  }

  async findByName(name: string): Promise<Role | null> {
    const row = this.db.get('SELECT * FROM roles WHERE name = ?', name);
    return row ? toRole(row) : null;
  }

  async list(): Promise<Role[]> {
    return this.db.all('SELECT * FROM roles ORDER BY name').map(toRole);
  }

  async update(id: string, patch: RolePatch): Promise<Role | null> {
    const current = await this.findById(id);
    if (!current) return null;
    try {
      const row = this.db.get(
        `UPDATE roles SET name = ?, display_name = ?, description = ?, permissions = ?, updated_at = ?
         WHERE id = ? RETURNING *`,
        patch.name ?? current.name,
        patch.display_name ?? current.display_name,
        patch.description !== undefined ? patch.description : current.description,
        JSON.stringify(patch.permissions ?? current.permissions),
        toIso(new Date()),
        id,
      );
      return row ? toRole(row) : null;
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  async remove(id: string): Promise<boolean> {
    return this.db.run('DELETE FROM roles WHERE id = ?', id).changes > 0;
  }

  async assign(userId: string, roleId: string): Promise<boolean> {
    const { changes } = this.db.run(
      `INSERT INTO user_roles (user_id, role_id, created_at)
       SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?) AND EXISTS (SELECT 1 FROM roles WHERE id = ?)
       ON CONFLICT (user_id, role_id) DO NOTHING`,
      userId,
      roleId,
      toIso(new Date()),
      userId,
      roleId,
    );
    return changes > 0;
  }

  async unassign(userId: string, roleId: string): Promise<boolean> {
    return (
      this.db.run('DELETE FROM user_roles WHERE user_id = ? AND role_id = ?', userId, roleId).changes > 0
    );
  }

  async listForUser(userId: string): Promise<Role[]> {
    return this.db
      .all(
        `SELECT roles.* FROM roles JOIN user_roles ON user_roles.role_id = roles.id
         WHERE user_roles.user_id = ? ORDER BY roles.name`,
        userId,
      )
      .map(toRole);
  }

  async listUserIds(roleId: string, limit: number): Promise<string[]> {
    return this.db
      .all('SELECT user_id FROM user_roles WHERE role_id = ? ORDER BY user_id LIMIT ?', roleId, limit)
      .map((row) => String(row.user_id));
  }

  async countUsers(roleId: string): Promise<number> {
    return Number(
      this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM user_roles WHERE role_id = ?', roleId)!.n,
    );
  }
}
