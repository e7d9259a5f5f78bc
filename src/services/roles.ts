/**
 * Roles behind /v2/roles. A role's name is its identifier (users name their primary role by it), so
 * it cannot change after creation; the built-in `user` role cannot be deleted. Deleting a role that
 * users hold is refused unless forced; forcing moves those users to the `user` role and unlinks it.
 */
import { changedFields, eventRole, eventUser, newEvent } from '../events/catalog.js';
import { eventActor, type EventRecorder } from '../events/recorder.js';
import { AppError } from '../errors/app-error.js';
import { StoreConflictError } from '../store/errors.js';
import type { DurableStore, Role } from '../store/ports.js';
import type { AuditService } from './audit.js';
import { requireGrantable } from './authority.js';
import { ADMIN_ROLE, DEFAULT_ROLE, type Context } from './users.js';

export interface RoleInput {
  name: string;
  display_name?: string;
  description?: string | null;
  permissions?: string[];
}

export class RoleService {
  constructor(
    private readonly store: DurableStore,
    private readonly audit: AuditService,
    private readonly events: EventRecorder,
  ) {}

  /** Called after a role was created, changed or deleted (what users hold changed; caches listen). */
  readonly changes = new Set<() => void>();

  private notify(): void {
    for (const listener of this.changes) listener();
  }

  list(): Promise<Role[]> {
    return this.store.roles.list();
  }

  async get(id: string): Promise<Role> {
    const role = await this.store.roles.findById(id);
    if (!role) throw new AppError('ROLE_NOT_FOUND');
    return role;
  }

  async create(input: RoleInput, context: Context): Promise<Role> {
    requireGrantable(context.grants, input.permissions ?? [], 'permissions');
    let role: Role;
    try {
      role = await this.events.record(
        () => this.store.roles.create({ ...input, permissions: [...new Set(input.permissions ?? [])] }),
        (created) => [newEvent('role.created', eventActor(context.actor), { role: eventRole(created) })],
      );
    } catch (err) {
      if (err instanceof StoreConflictError) {
        throw new AppError('CONFLICT', {
          message: `A role named "${input.name}" already exists`,
          details: [{ field: 'name', issue: 'Already taken', provided: input.name }],
        });
      }
      throw err;
    }
    this.notify();
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'role.created',
      target_type: 'role',
      target_id: role.id,
      before: null,
      after: { ...role },
    });
    return role;
  }

  async update(id: string, patch: Omit<Partial<RoleInput>, 'name'>, context: Context): Promise<Role> {
    const before = await this.get(id);
    // Adding a management scope grants it to every holder; removing one takes it from them.
    requireGrantable(context.grants, [...before.permissions, ...(patch.permissions ?? [])], 'permissions');
    const after = await this.events.record(
      () =>
        this.store.roles.update(id, {
          ...patch,
          ...(patch.permissions ? { permissions: [...new Set(patch.permissions)] } : {}),
        }),
      (updated) => {
        const changes = updated
          ? changedFields(before, updated, ['display_name', 'description', 'permissions'])
          : [];
        return changes.length > 0
          ? [newEvent('role.updated', eventActor(context.actor), { role: eventRole(updated!), changes })]
          : [];
      },
    );
    if (!after) throw new AppError('ROLE_NOT_FOUND');
    this.notify();
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'role.updated',
      target_type: 'role',
      target_id: id,
      before: { ...before },
      after: { ...after },
    });
    return after;
  }

  /** Users holding the role: linked to it, or naming it as their primary role. */
  async usage(role: Role): Promise<{ linked: number; primary: number }> {
    const [linked, primary] = await Promise.all([
      this.store.roles.countUsers(role.id),
      this.store.users.count({ where: { field: 'role', op: 'eq', value: role.name }, deleted: 'include' }),
    ]);
    return { linked, primary };
  }

  async remove(id: string, force: boolean, context: Context): Promise<{ reassigned_users: number }> {
    const role = await this.get(id);
    if (role.name === DEFAULT_ROLE || role.name === ADMIN_ROLE) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: `The built-in "${role.name}" role cannot be deleted`,
      });
    }
    requireGrantable(context.grants, role.permissions, 'id');
    const usage = await this.usage(role);
    if ((usage.linked > 0 || usage.primary > 0) && !force) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: `The role is held by ${usage.linked + usage.primary} user(s); pass force=true to delete it anyway`,
        details: [
          { field: 'force', issue: `${usage.linked} user(s) have the role linked`, provided: false },
          {
            field: 'force',
            issue: `${usage.primary} user(s) have it as their primary role`,
            provided: false,
          },
        ],
      });
    }
    let reassigned = 0;
    for (;;) {
      const holders = await this.store.users.list({
        where: { field: 'role', op: 'eq', value: role.name },
        deleted: 'include',
        limit: 500,
      });
      if (holders.length === 0) break;
      for (const user of holders) {
        const moved = await this.events.record(
          () => this.store.users.update(user.id, { role: DEFAULT_ROLE }, 'include'),
          (after) => {
            if (!after) return [];
            const actor = eventActor(context.actor);
            const shown = eventUser(after);
            return [
              newEvent('user.updated', actor, { user: shown, changes: ['role'] }),
              newEvent('user.role_changed', actor, {
                user: shown,
                previous_role: user.role,
                added: [DEFAULT_ROLE],
                removed: [user.role],
              }),
            ];
          },
        );
        if (moved) reassigned += 1;
      }
    }
    await this.events.record(
      () => this.store.roles.remove(id),
      (removed) =>
        removed ? [newEvent('role.deleted', eventActor(context.actor), { role: eventRole(role) })] : [],
    );
    this.notify();
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'role.deleted',
      target_type: 'role',
      target_id: id,
      before: { ...role },
      after: null,
      details: { forced: force, users_linked: usage.linked, reassigned_users: reassigned },
    });
    return { reassigned_users: reassigned };
  }
}
