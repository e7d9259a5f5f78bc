/**
 * The user lifecycle behind /v2/users: listing and searching with stable cursors, creation (one or
 * in bulk) with role and password-policy checks, partial updates, suspension and deletion (which
 * revoke the user's sessions, grants and tokens), restore, preferences, roles and activity. Every
 * mutation is audited. Routes translate to and from HTTP; this module never sees a request.
 */
import { AppError } from '../errors/app-error.js';
import { changedFields, eventUser, newEvent, type DomainEvent } from '../events/catalog.js';
import { eventActor, type EventRecorder } from '../events/recorder.js';
import type { Mailer } from '../mail/mailer.js';
import { StoreConflictError } from '../store/errors.js';
import type {
  ArtifactStore,
  DurableStore,
  JsonObject,
  NewUser,
  Role,
  User,
  UserPatch,
} from '../store/ports.js';
import {
  and,
  decodeCursor,
  encodeCursor,
  keysetAfter,
  totalOrder,
  type Expr,
  type SortKey,
} from '../store/query.js';
import { userSortValue } from '../store/user-fields.js';
import type { Actor, AuditService, RequestFacts } from './audit.js';
import {
  holds,
  managementScopes,
  requireDominance,
  requireGrantable,
  requireScopes,
  type Grants,
} from './authority.js';
import type { PasswordPolicy } from './password-policy.js';
import type { PasswordHasher } from './passwords.js';

export interface Page<T> {
  items: T[];
  total: number;
  hasMore: boolean;
  nextCursor: string | null;
}

export interface ListInput {
  limit: number;
  offset: number;
  cursor?: string;
  where?: Expr;
  search?: string;
  sort?: SortKey[];
}

export interface CreateUserInput {
  email: string;
  first_name: string;
  last_name: string;
  role?: string;
  status?: User['status'];
  email_verified?: boolean;
  password?: string;
  metadata?: JsonObject;
  send_welcome_email?: boolean;
}

export type UpdateUserInput = Partial<
  Pick<User, 'email' | 'first_name' | 'last_name' | 'role' | 'status' | 'email_verified' | 'metadata'>
>;

export interface Context {
  actor: Actor;
  request?: RequestFacts;
  /** The management scopes the caller holds (field and target rules in authority.ts). */
  grants: Grants;
}

export type BulkItemResult =
  | { index: number; success: true; user: User }
  | { index: number; success: false; error: { code: string; message: string; field?: string } };

export const DEFAULT_ROLE = 'user';

/** Fields of the public user shape whose changes `user.updated` reports. */
const PUBLIC_USER_FIELDS = [
  'email',
  'first_name',
  'last_name',
  'role',
  'status',
  'email_verified',
  'metadata',
  'plan',
] as const satisfies readonly (keyof User)[];
/** The built-in role holding every management scope (bootstrap.ts keeps it that way). */
export const ADMIN_ROLE = 'admin';

export interface UserServiceOptions {
  /** Metadata keys only a caller with user:security may change. */
  protectedMetadataKeys?: readonly string[];
  /** What to do with an e-mail that looks like an existing user's. */
  confusableEmails?: 'warn' | 'refuse';
  log?: { warn(obj: object, msg: string): void };
  /** Composes the welcome message (send_welcome_email) into the outbox with the user's creation. */
  mailer?: Mailer;
}

/** The language a user's mail is written in: their `preferences.locale`, if they have one. */
const localeOf = (user: User): string | undefined =>
  typeof user.preferences.locale === 'string' ? user.preferences.locale : undefined;

/** Keys of `protectedKeys` whose value differs between two metadata objects. */
function changedProtectedKeys(
  protectedKeys: readonly string[],
  before: JsonObject,
  after: JsonObject,
): string[] {
  return protectedKeys.filter(
    (key) =>
      JSON.stringify(before[key] ?? null) !== JSON.stringify(after[key] ?? null) ||
      Object.hasOwn(before, key) !== Object.hasOwn(after, key),
  );
}

/** The fields of a user the audit trail compares. */
function auditable(user: User | null): Record<string, unknown> | null {
  if (!user) return null;
  const { password_hash, ...rest } = user;
  return { ...rest, password: password_hash ? 'set' : null };
}

export class UserService {
  constructor(
    private readonly store: DurableStore,
    private readonly artifacts: ArtifactStore,
    private readonly passwords: PasswordHasher,
    private readonly policy: PasswordPolicy,
    private readonly audit: AuditService,
    private readonly events: EventRecorder,
    private readonly options: UserServiceOptions = {},
  ) {}

  /** Called with a user's id after anything about the user changed (caches listen, see api-keys.ts). */
  readonly changes = new Set<(userId: string) => void>();
  /**
   * Called with a user's id just before all the user's sessions, grants and tokens are revoked, while
   * they can still be read (back-channel logout names the clients they covered). A listener that
   * fails is logged; the revocation goes ahead.
   */
  readonly sessionsEnding = new Set<(userId: string) => Promise<void>>();
  /** Called after a user's address changed and is unconfirmed (the confirmation link is mailed). */
  readonly addressChanges = new Set<(user: User) => Promise<void>>();

  private notify(userId: string): void {
    for (const listener of this.changes) listener(userId);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Field and target rules (authority.ts)                                                      */
  /* ------------------------------------------------------------------------------------------ */

  /** The management scopes a user holds through their roles. */
  private async managementScopesOf(user: User): Promise<string[]> {
    return managementScopes(UserService.permissionsOf(await this.rolesOf(user)));
  }

  private static isSelf(context: Context, userId: string): boolean {
    return context.actor.actor_type === 'user' && context.actor.actor_id === userId;
  }

  /** Rule 3: only a caller holding every management scope of `user` may change them (or the user). */
  private async guardTarget(user: User, context: Context): Promise<void> {
    if (context.grants === 'all' || UserService.isSelf(context, user.id)) return;
    requireDominance(context.grants, await this.managementScopesOf(user));
  }

  /** Rule 1 for the privileged fields of a create or an update (`before` null for a create). */
  private async guardFields(
    before: User | null,
    change: { role?: string; status?: User['status']; email_verified?: boolean; metadata?: JsonObject },
    context: Context,
  ): Promise<void> {
    const { grants } = context;
    if (change.role !== undefined && change.role !== (before?.role ?? DEFAULT_ROLE)) {
      requireScopes(grants, ['role:manage'], 'role', 'Setting a role');
    }
    const role = change.role ?? (before ? undefined : DEFAULT_ROLE);
    if (role !== undefined) {
      const record = await this.store.roles.findByName(role);
      if (record) requireGrantable(grants, record.permissions, 'role');
    }
    if (before && before.status !== 'active' && change.status === 'active') {
      requireScopes(grants, ['user:security'], 'status', 'Reactivating a user');
    }
    if (change.email_verified !== undefined && change.email_verified !== (before?.email_verified ?? false)) {
      requireScopes(grants, ['user:security'], 'email_verified', 'Setting email_verified');
    }
    const protectedKeys = this.options.protectedMetadataKeys ?? [];
    if (change.metadata !== undefined && protectedKeys.length > 0) {
      const changed = changedProtectedKeys(protectedKeys, before?.metadata ?? {}, change.metadata);
      if (changed.length > 0 && !holds(grants, 'user:security')) {
        requireScopes(
          grants,
          ['user:security'],
          `metadata.${changed[0]}`,
          'Changing a protected metadata key',
        );
      }
    }
  }

  /** Whether the user is an active administrator (the built-in admin role, primary or linked). */
  private async isActiveAdmin(user: User, linkedRoleNames?: string[]): Promise<boolean> {
    if (user.status !== 'active' || user.deleted_at) return false;
    if (user.role === ADMIN_ROLE) return true;
    const names = linkedRoleNames ?? (await this.store.roles.listForUser(user.id)).map((r) => r.name);
    return names.includes(ADMIN_ROLE);
  }

  /** Refuses a change that would leave no active administrator (409 LAST_ADMINISTRATOR). */
  private async guardLastAdmin(before: User, after: { user: User | null; linked?: string[] }): Promise<void> {
    if (!(await this.isActiveAdmin(before))) return;
    if (after.user && (await this.isActiveAdmin(after.user, after.linked))) return;
    const primary = await this.store.users.list({
      where: and(
        { field: 'role', op: 'eq', value: ADMIN_ROLE },
        { field: 'status', op: 'eq', value: 'active' },
      ),
      limit: 2,
    });
    if (primary.some((u) => u.id !== before.id)) return;
    const adminRole = await this.store.roles.findByName(ADMIN_ROLE);
    if (adminRole) {
      for (const id of await this.store.roles.listUserIds(adminRole.id, 100)) {
        if (id === before.id) continue;
        const other = await this.store.users.findById(id);
        if (other && other.status === 'active') return;
      }
    }
    throw new AppError('LAST_ADMINISTRATOR', {
      message: 'This is the last active administrator; make another user an administrator first',
    });
  }

  /** Rule on look-alike e-mails: accepted with a warning, or refused (CONFUSABLE_EMAILS). */
  private async confusableWith(email: string, exceptId?: string): Promise<User | null> {
    const lookalike = await this.store.users.findConfusable(email, exceptId);
    if (lookalike && this.options.confusableEmails === 'refuse') {
      throw new AppError('CONFUSABLE_EMAIL', {
        details: [{ field: 'email', issue: 'Looks like the address of an existing user', provided: email }],
      });
    }
    if (lookalike) {
      this.options.log?.warn(
        { user_id: exceptId, confusable_with: lookalike.id },
        "e-mail address looks like an existing user's",
      );
    }
    return lookalike;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Reading                                                                                    */
  /* ------------------------------------------------------------------------------------------ */

  /** A cursor names the order it belongs to, so it cannot be replayed under another sort. */
  private position(order: SortKey[], cursor: string | undefined): Expr | undefined {
    if (!cursor) return undefined;
    const signature = order.map((k) => `${k.field}:${k.dir}`).join(',');
    const decoded = decodeCursor(cursor, order.length + 1);
    if (!decoded || decoded[0] !== signature) {
      throw new AppError('INVALID_CURSOR', {
        details: [{ field: 'cursor', issue: 'Not a cursor of this list and sort order' }],
      });
    }
    return keysetAfter(order, decoded.slice(1));
  }

  private cursorAfter(order: SortKey[], user: User): string {
    const signature = order.map((k) => `${k.field}:${k.dir}`).join(',');
    return encodeCursor([signature, ...order.map((k) => userSortValue(user, k.field))]);
  }

  async list(input: ListInput): Promise<Page<User>> {
    const order = totalOrder(input.sort);
    const after = this.position(order, input.cursor);
    const { items: rows, total } = await this.store.users.listPage({
      where: input.where,
      after,
      search: input.search,
      sort: order,
      limit: input.limit + 1,
      offset: after ? 0 : input.offset,
    });
    const items = rows.slice(0, input.limit);
    const hasMore = rows.length > input.limit;
    return { items, total, hasMore, nextCursor: hasMore ? this.cursorAfter(order, items.at(-1)!) : null };
  }

  async get(id: string): Promise<User> {
    const user = await this.store.users.findById(id);
    if (!user) throw new AppError('USER_NOT_FOUND');
    return user;
  }

  /** The user's roles: the primary role (by name) and every linked role, without duplicates. */
  async rolesOf(user: User): Promise<Role[]> {
    const [primary, linked] = await Promise.all([
      this.store.roles.findByName(user.role),
      this.store.roles.listForUser(user.id),
    ]);
    const all = primary ? [primary, ...linked.filter((r) => r.id !== primary.id)] : linked;
    return all;
  }

  static permissionsOf(roles: Role[]): string[] {
    return [...new Set(roles.flatMap((r) => r.permissions))].sort();
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Writing                                                                                    */
  /* ------------------------------------------------------------------------------------------ */

  private async checkRole(role: string | undefined, field = 'role'): Promise<void> {
    if (role === undefined) return;
    if (!(await this.store.roles.findByName(role))) {
      throw new AppError('INVALID_ROLE', {
        message: `The role "${role}" does not exist`,
        details: [{ field, issue: 'Unknown role', provided: role }],
      });
    }
  }

  private checkPassword(password: string, personal: string[], field = 'password'): void {
    const verdict = this.policy.check(password, personal);
    if (!verdict.ok) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: 'The password does not meet the password policy',
        details: verdict.issues.map((issue) => ({ field, issue })),
      });
    }
  }

  private async toNewUser(input: CreateUserInput): Promise<NewUser> {
    return {
      email: input.email,
      first_name: input.first_name,
      last_name: input.last_name,
      role: input.role ?? DEFAULT_ROLE,
      status: input.status,
      email_verified: input.email_verified ?? false,
      metadata: input.metadata ?? {},
      password_hash: input.password ? await this.passwords.hash(input.password) : null,
    };
  }

  async create(input: CreateUserInput, context: Context): Promise<User> {
    await this.checkRole(input.role);
    await this.guardFields(null, input, context);
    // An empty password is refused rather than taken for "no password".
    if (input.password !== undefined) {
      this.checkPassword(input.password, [input.email, input.first_name, input.last_name]);
    }
    const lookalike = await this.confusableWith(input.email);
    const newUser = await this.toNewUser(input);
    let user: User;
    try {
      user = await this.events.record(
        () => this.store.users.create(newUser),
        (created) => [newEvent('user.created', eventActor(context.actor), { user: eventUser(created) })],
        (created) =>
          input.send_welcome_email && this.options.mailer
            ? this.options.mailer.welcome(created, eventActor(context.actor), localeOf(created))
            : [],
      );
    } catch (err) {
      if (err instanceof StoreConflictError && err.field === 'email')
        throw new AppError('USER_ALREADY_EXISTS');
      throw err;
    }
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.created',
      target_type: 'user',
      target_id: user.id,
      before: null,
      after: auditable(user),
      details: {
        send_welcome_email: input.send_welcome_email ?? false,
        ...(lookalike ? { warning: 'confusable_email', confusable_with: lookalike.id } : {}),
      },
    });
    return user;
  }

  /**
   * Up to 100 users. Each item is checked on its own (schema by the caller, then role and password
   * policy here) and stored with createMany; with failOnError nothing is stored unless everything is.
   */
  async bulkCreate(
    items: (
      { ok: true; input: CreateUserInput } | { ok: false; code: string; message: string; field?: string }
    )[],
    options: { failOnError: boolean; sendWelcomeEmails?: boolean },
    context: Context,
  ): Promise<BulkItemResult[]> {
    const results: (BulkItemResult | undefined)[] = new Array(items.length).fill(undefined);
    const roleNames = new Set((await this.store.roles.list()).map((r) => r.name));
    const pending: { index: number; input: CreateUserInput }[] = [];
    items.forEach((item, index) => {
      if (!item.ok) {
        results[index] = {
          index,
          success: false,
          error: { code: item.code, message: item.message, field: item.field },
        };
        return;
      }
      const { input } = item;
      if (input.role !== undefined && !roleNames.has(input.role)) {
        results[index] = {
          index,
          success: false,
          error: { code: 'INVALID_ROLE', message: `The role "${input.role}" does not exist`, field: 'role' },
        };
        return;
      }
      if (input.password !== undefined) {
        const verdict = this.policy.check(input.password, [input.email, input.first_name, input.last_name]);
        if (!verdict.ok) {
          results[index] = {
            index,
            success: false,
            error: { code: 'VALIDATION_ERROR', message: verdict.issues.join('; '), field: 'password' },
          };
          return;
        }
      }
      pending.push({ index, input });
    });
    // Field rules and look-alike addresses, per item, as for a single creation.
    const lookalikes = new Map<number, string>();
    for (const { index, input } of [...pending]) {
      try {
        await this.guardFields(null, input, context);
        const lookalike = await this.confusableWith(input.email);
        if (lookalike) lookalikes.set(index, lookalike.id);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        results[index] = {
          index,
          success: false,
          error: { code: err.code, message: err.message, field: err.details?.[0]?.field },
        };
        pending.splice(
          pending.findIndex((p) => p.index === index),
          1,
        );
      }
    }

    const aborted = (index: number): BulkItemResult => ({
      index,
      success: false,
      error: {
        code: 'NOT_CREATED',
        message: 'Not created: another item of this all-or-nothing batch failed',
      },
    });
    if (options.failOnError && pending.length < items.length) {
      for (const { index } of pending) results[index] = aborted(index);
      return results as BulkItemResult[];
    }

    const newUsers = await Promise.all(pending.map(({ input }) => this.toNewUser(input)));
    const actor = eventActor(context.actor);
    const outcomes = await this.events.record(
      () => this.store.users.createMany(newUsers, { atomic: options.failOnError }),
      (done) =>
        done.flatMap((outcome) =>
          'user' in outcome ? [newEvent('user.created', actor, { user: eventUser(outcome.user) })] : [],
        ),
      (done) =>
        done.flatMap((outcome, i) =>
          'user' in outcome &&
          this.options.mailer &&
          (pending[i]!.input.send_welcome_email ?? options.sendWelcomeEmails ?? false)
            ? this.options.mailer.welcome(outcome.user, actor, localeOf(outcome.user))
            : [],
        ),
    );
    const created: { user: User; input: CreateUserInput; index: number }[] = [];
    outcomes.forEach((outcome, i) => {
      const { index, input } = pending[i]!;
      if ('user' in outcome) {
        results[index] = { index, success: true, user: outcome.user };
        created.push({ user: outcome.user, input, index });
      } else if ('conflict' in outcome) {
        results[index] = {
          index,
          success: false,
          error: {
            code: 'DUPLICATE_EMAIL',
            message: 'A user with this email already exists',
            field: 'email',
          },
        };
      } else {
        results[index] = aborted(index);
      }
    });
    await this.audit.recordMany(
      created.map(({ user, input, index }) => ({
        ...context.actor,
        request: context.request,
        action: 'user.created',
        target_type: 'user',
        target_id: user.id,
        before: null,
        after: auditable(user),
        // Recorded as for a single creation, so integrations that send welcome emails see both.
        details: {
          bulk: true,
          send_welcome_email: input.send_welcome_email ?? options.sendWelcomeEmails ?? false,
          ...(lookalikes.has(index)
            ? { warning: 'confusable_email', confusable_with: lookalikes.get(index)! }
            : {}),
        },
      })),
    );
    return results as BulkItemResult[];
  }

  /** Ends every session, grant and token of the user (after suspension, deactivation or deletion). */
  private async revokeEverything(userId: string): Promise<number> {
    this.notify(userId);
    await Promise.all(
      [...this.sessionsEnding].map((listener) =>
        listener(userId).catch((err: unknown) => {
          this.options.log?.warn({ err, user_id: userId }, 'a listener of ending sessions failed');
        }),
      ),
    );
    return this.artifacts.revokeByAccountId(userId);
  }

  /** What only an erased user leaves behind: their API keys and usage records. */
  private async eraseBelongings(userId: string): Promise<void> {
    await Promise.all([
      this.store.apiKeys.removeByOwner('user', userId),
      this.store.usage.removeByOwner('user', userId),
    ]);
  }

  /** Moves a user to a plan (null: the default plan); the plan must exist (checked by the caller). */
  async setPlan(id: string, plan: string | null, context: Context): Promise<User> {
    const before = await this.get(id);
    await this.guardTarget(before, context);
    const after = await this.events.record(
      () => this.store.users.update(id, { plan }),
      (changed) => (changed ? this.updateEvents(before, changed, context) : []),
    );
    if (!after) throw new AppError('USER_NOT_FOUND');
    this.notify(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.plan_changed',
      target_type: 'user',
      target_id: id,
      before: { plan: before.plan },
      after: { plan: after.plan },
    });
    return after;
  }

  async update(id: string, patch: UpdateUserInput, context: Context): Promise<User> {
    const before = await this.get(id);
    await this.checkRole(patch.role);
    await this.guardTarget(before, context);
    await this.guardFields(before, patch, context);
    await this.guardLastAdmin(before, { user: { ...before, ...patch } as User });
    const lookalike =
      patch.email !== undefined && patch.email !== before.email
        ? await this.confusableWith(patch.email, id)
        : null;
    // A new address is unconfirmed until its owner follows the link mailed to it (unless the caller
    // says otherwise, which needs user:security).
    const addressChanged =
      patch.email !== undefined && patch.email.toLowerCase() !== before.email.toLowerCase();
    const stored: UserPatch =
      addressChanged && patch.email_verified === undefined
        ? { ...(patch as UserPatch), email_verified: false }
        : (patch as UserPatch);
    let after: User | null;
    try {
      after = await this.events.record(
        () => this.store.users.update(id, stored),
        (changed) => (changed ? this.updateEvents(before, changed, context) : []),
      );
    } catch (err) {
      if (err instanceof StoreConflictError && err.field === 'email')
        throw new AppError('USER_ALREADY_EXISTS');
      throw err;
    }
    if (!after) throw new AppError('USER_NOT_FOUND');
    this.notify(id);
    if (addressChanged && !after.email_verified) {
      for (const listener of this.addressChanges) {
        void listener(after).catch((err: unknown) =>
          this.options.log?.warn(
            { err, user_id: id },
            'the confirmation link for a new address could not be sent',
          ),
        );
      }
    }
    let revoked = 0;
    if (before.status === 'active' && after.status !== 'active') revoked = await this.revokeEverything(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: before.role !== after.role ? 'user.role_changed' : 'user.updated',
      target_type: 'user',
      target_id: id,
      before: auditable(before),
      after: auditable(after),
      ...(revoked || lookalike
        ? {
            details: {
              ...(revoked ? { revoked_artifacts: revoked } : {}),
              ...(lookalike ? { warning: 'confusable_email', confusable_with: lookalike.id } : {}),
            },
          }
        : {}),
    });
    return after;
  }

  async remove(
    id: string,
    soft: boolean,
    context: Context,
  ): Promise<{ deleted_at: Date; soft_delete: boolean }> {
    const before = await this.get(id);
    await this.guardTarget(before, context);
    await this.guardLastAdmin(before, { user: null });
    const deletedAt = new Date();
    const done = await this.events.record(
      async () =>
        soft
          ? (await this.store.users.update(id, { deleted_at: deletedAt })) !== null
          : this.store.users.remove(id),
      (removed) =>
        removed
          ? [
              newEvent('user.deleted', eventActor(context.actor), {
                user: eventUser(before),
                permanent: !soft,
                was_soft_deleted: false,
              }),
            ]
          : [],
    );
    if (!done) throw new AppError('USER_NOT_FOUND');
    const revoked = await this.revokeEverything(id);
    if (!soft) await this.eraseBelongings(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.deleted',
      target_type: 'user',
      target_id: id,
      before: auditable(before),
      after: null,
      details: { soft_delete: soft, revoked_artifacts: revoked },
    });
    return { deleted_at: deletedAt, soft_delete: soft };
  }

  /** Erases a user, soft-deleted or not (used after a soft delete, to free the email). */
  async erase(id: string, context: Context): Promise<{ deleted_at: Date; soft_delete: boolean }> {
    const before = await this.store.users.findById(id, 'include');
    if (!before) throw new AppError('USER_NOT_FOUND');
    await this.guardTarget(before, context);
    await this.guardLastAdmin(before, { user: null });
    await this.events.record(
      () => this.store.users.remove(id),
      (removed) =>
        removed
          ? [
              newEvent('user.deleted', eventActor(context.actor), {
                user: eventUser(before),
                permanent: true,
                was_soft_deleted: before.deleted_at !== null,
              }),
            ]
          : [],
    );
    const revoked = await this.revokeEverything(id);
    await this.eraseBelongings(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.deleted',
      target_type: 'user',
      target_id: id,
      before: auditable(before),
      after: null,
      details: { soft_delete: false, revoked_artifacts: revoked },
    });
    return { deleted_at: new Date(), soft_delete: false };
  }

  async restore(id: string, context: Context): Promise<User> {
    const deleted = await this.store.users.findById(id, 'only');
    if (deleted) await this.guardTarget(deleted, context);
    const user = await this.events.record(
      () => this.store.users.update(id, { deleted_at: null }, 'only'),
      (restored) =>
        restored ? [newEvent('user.restored', eventActor(context.actor), { user: eventUser(restored) })] : [],
    );
    if (!user) {
      // The user exists and is not deleted: the request conflicts with its state (it is not a 404).
      if (await this.store.users.findById(id)) {
        throw new AppError('CONFLICT', {
          message: 'The user is not deleted',
          details: [{ field: 'id', issue: 'Not deleted' }],
        });
      }
      throw new AppError('USER_NOT_FOUND', { message: 'No deleted user with this id' });
    }
    this.notify(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.restored',
      target_type: 'user',
      target_id: id,
    });
    return user;
  }

  async setPreferences(id: string, preferences: JsonObject, context: Context): Promise<JsonObject> {
    const before = await this.get(id);
    await this.guardTarget(before, context);
    const after = await this.store.users.update(id, { preferences });
    if (!after) throw new AppError('USER_NOT_FOUND');
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.preferences_updated',
      target_type: 'user',
      target_id: id,
      before: { preferences: before.preferences },
      after: { preferences: after.preferences },
    });
    return after.preferences;
  }

  /** Makes the user choose a new password at their next sign-in, and ends their sessions now. */
  /** The user, if the caller may change them (every management scope the user holds): for changes made elsewhere (second factors). */
  async manageable(id: string, context: Context): Promise<User> {
    const user = await this.get(id);
    await this.guardTarget(user, context);
    return user;
  }

  async requirePasswordReset(id: string, context: Context): Promise<User> {
    const before = await this.get(id);
    await this.guardTarget(before, context);
    const after = await this.store.users.update(id, { password_reset_required: true });
    if (!after) throw new AppError('USER_NOT_FOUND');
    const revoked = await this.revokeEverything(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.password_reset_required',
      target_type: 'user',
      target_id: id,
      before: { password_reset_required: before.password_reset_required },
      after: { password_reset_required: true },
      details: { revoked_artifacts: revoked },
    });
    return after;
  }

  /** Throws the password policy's refusal of `password` for `user`, if it has one. */
  checkPasswordFor(user: User, password: string): void {
    this.checkPassword(password, [user.email, user.first_name, user.last_name]);
  }

  /**
   * Sets a password (policy-checked). Existing sessions stay, unless `endSessions` (a reset by
   * e-mail): then every session, grant and token of the user ends.
   */
  async setPassword(
    id: string,
    password: string,
    context: Context,
    options: { requireReset?: boolean; endSessions?: boolean } = {},
  ): Promise<User> {
    const user = await this.get(id);
    await this.guardTarget(user, context);
    this.checkPassword(password, [user.email, user.first_name, user.last_name]);
    const password_hash = await this.passwords.hash(password);
    const after = await this.events.record(
      () =>
        this.store.users.update(id, {
          password_hash,
          password_reset_required: options.requireReset ?? false,
        }),
      (changed) =>
        changed
          ? [
              newEvent('user.password_changed', eventActor(context.actor), {
                user: eventUser(changed),
                by_administrator: context.actor.actor_id !== id,
              }),
            ]
          : [],
    );
    if (!after) throw new AppError('USER_NOT_FOUND');
    const revoked = options.endSessions ? await this.revokeEverything(id) : undefined;
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.password_changed',
      target_type: 'user',
      target_id: id,
      before: { password: 'changed' },
      after: { password: 'changed', password_reset_required: after.password_reset_required },
      ...(revoked === undefined ? {} : { details: { revoked_artifacts: revoked, by_email_link: true } }),
    });
    return after;
  }

  async assignRole(userId: string, roleId: string, context: Context): Promise<Role[]> {
    const user = await this.get(userId);
    const role = await this.store.roles.findById(roleId);
    if (!role) throw new AppError('ROLE_NOT_FOUND');
    await this.guardTarget(user, context);
    requireGrantable(context.grants, role.permissions, 'role_id');
    const added = await this.events.record(
      () => this.store.roles.assign(userId, roleId),
      (linked) =>
        linked
          ? [
              newEvent('user.role_changed', eventActor(context.actor), {
                user: eventUser(user),
                previous_role: user.role,
                added: [role.name],
                removed: [],
              }),
            ]
          : [],
    );
    if (added) {
      this.notify(userId);
      await this.audit.record({
        ...context.actor,
        request: context.request,
        action: 'user.role_changed',
        target_type: 'user',
        target_id: userId,
        details: { assigned_role: { id: role.id, name: role.name } },
      });
    }
    return this.rolesOf(user);
  }

  async removeRole(userId: string, roleId: string, context: Context): Promise<Role[]> {
    const user = await this.get(userId);
    const role = await this.store.roles.findById(roleId);
    if (!role) throw new AppError('ROLE_NOT_FOUND');
    await this.guardTarget(user, context);
    const linked = (await this.store.roles.listForUser(userId)).map((r) => r.name);
    await this.guardLastAdmin(user, { user, linked: linked.filter((n) => n !== role.name) });
    const unlinked = await this.events.record(
      () => this.store.roles.unassign(userId, roleId),
      (done) =>
        done
          ? [
              newEvent('user.role_changed', eventActor(context.actor), {
                user: eventUser(user),
                previous_role: user.role,
                added: [],
                removed: [role.name],
              }),
            ]
          : [],
    );
    if (!unlinked) {
      throw new AppError('NOT_FOUND', { message: 'The user does not have this role' });
    }
    this.notify(userId);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.role_changed',
      target_type: 'user',
      target_id: userId,
      details: { removed_role: { id: role.id, name: role.name } },
    });
    return this.rolesOf(user);
  }

  /**
   * `user.updated` naming the public fields that changed (none changed: no event), and
   * `user.role_changed` when the primary role did.
   */
  private updateEvents(before: User, after: User, context: Context): DomainEvent[] {
    const changes = changedFields(before, after, PUBLIC_USER_FIELDS);
    if (changes.length === 0) return [];
    const actor = eventActor(context.actor);
    const user = eventUser(after);
    const events: DomainEvent[] = [newEvent('user.updated', actor, { user, changes })];
    if (before.role !== after.role) {
      events.push(
        newEvent('user.role_changed', actor, {
          user,
          previous_role: before.role,
          added: [after.role],
          removed: [before.role],
        }),
      );
    }
    return events;
  }

  /**
   * Sign-ins and changes of a user from the audit trail, newest first, one page at a time (`cursor`
   * is the next_cursor of the page before), with the failed sign-ins of the last 30 days.
   */
  async activity(id: string, limit = 20, cursor?: string) {
    const user = await this.get(id);
    const ofUser: Expr = and(
      { field: 'target_type', op: 'eq', value: 'user' },
      { field: 'target_id', op: 'eq', value: id },
    )!;
    const order = totalOrder(undefined, { field: 'timestamp', dir: 'desc' });
    let after: Expr | undefined;
    if (cursor) {
      const values = decodeCursor(cursor, order.length);
      if (!values)
        throw new AppError('INVALID_CURSOR', {
          details: [{ field: 'cursor', issue: 'Not a cursor of this list' }],
        });
      after = keysetAfter(order, values);
    }
    const since = new Date(Date.now() - 30 * 86_400_000);
    const [rows, failed] = await Promise.all([
      this.audit.list({ where: and(ofUser, after), sort: order, limit: limit + 1 }),
      this.audit.count({
        where: and(
          ofUser,
          { field: 'action', op: 'eq', value: 'user.login_failed' },
          { field: 'timestamp', op: 'gte', value: since },
        ),
      }),
    ]);
    const recent = rows.slice(0, limit);
    const last = recent.at(-1);
    const nextCursor = rows.length > limit && last ? encodeCursor([last.timestamp, last.id]) : null;
    return { user, recent, nextCursor, failedLoginsLast30Days: failed };
  }
}
