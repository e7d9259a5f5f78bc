/**
 * Live users by id from memory, in front of a durable store that is across the network (MongoDB).
 * Introspection and userinfo read the token's user on every call, and a round trip to the database
 * costs more than the rest of such a request.
 *
 * An entry never outlives a change made through any instance: every write through this repository
 * drops the user here and publishes its id on the event bus (Redis pub/sub when several instances
 * share a deployment) before it returns, and every instance drops what it hears. A read that was in
 * flight while a change was announced does not store what it read. The TTL bounds what no message
 * announces: a change made directly in the database, or a message lost while Redis was unreachable.
 * Records are frozen, so no caller can alter what the next one gets.
 */
import type {
  BulkCreateResult,
  DeletedFilter,
  EventBus,
  NewUser,
  User,
  UserListQuery,
  UserPatch,
  UserRepository,
} from './ports.js';
import type { Expr } from './query.js';
import { freezeUser } from './user-fields.js';

/** The bus channel on which changed users' ids are announced. */
export const USER_CHANGES_CHANNEL = 'users:changed';
const MAX_ENTRIES = 10_000;

export interface CachedUserRepositoryOptions {
  ttlMs: number;
  now?: () => number;
}

export class CachedUserRepository implements UserRepository {
  private readonly live = new Map<string, { user: User; at: number }>();
  /** Bumped by every change heard of; a read stores its result only if none came while it ran. */
  private changes = 0;
  private readonly unsubscribe: () => void;
  private readonly now: () => number;

  constructor(
    private readonly inner: UserRepository,
    private readonly events: EventBus,
    private readonly options: CachedUserRepositoryOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.unsubscribe = events.subscribe(USER_CHANGES_CHANNEL, (id) => this.forget(id));
  }

  /** Stops listening; the repository then only answers from the store. */
  close(): void {
    this.unsubscribe();
    this.live.clear();
  }

  private forget(id: string): void {
    this.changes += 1;
    this.live.delete(id);
  }

  /** Drops the user here and on every instance listening; resolves once the message is out. */
  private async changed(id: string): Promise<void> {
    this.forget(id);
    await this.events.publish(USER_CHANGES_CHANNEL, id).catch(() => {
      // The bus is unreachable: other instances' entries expire after the TTL.
    });
  }

  async findById(id: string, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    if (deleted !== 'exclude') return this.inner.findById(id, deleted);
    const now = this.now();
    const entry = this.live.get(id);
    if (entry && now - entry.at < this.options.ttlMs) return entry.user;
    const changesBefore = this.changes;
    const found = await this.inner.findById(id);
    if (!found) return null;
    const user = freezeUser(found);
    if (this.changes === changesBefore) {
      if (this.live.size >= MAX_ENTRIES) this.live.delete(this.live.keys().next().value!);
      this.live.set(id, { user, at: now });
    }
    return user;
  }

  // A created user cannot be in any cache: only users found are cached, and an erased user's entry
  // went when it was erased, so an id given again on import starts clean.
  create(input: NewUser): Promise<User> {
    return this.inner.create(input);
  }

  createMany(inputs: NewUser[], options: { atomic: boolean }): Promise<BulkCreateResult[]> {
    return this.inner.createMany(inputs, options);
  }

  async update(id: string, patch: UserPatch, deleted?: DeletedFilter): Promise<User | null> {
    try {
      return await this.inner.update(id, patch, deleted);
    } finally {
      await this.changed(id);
    }
  }

  async remove(id: string): Promise<boolean> {
    try {
      return await this.inner.remove(id);
    } finally {
      await this.changed(id);
    }
  }

  async recordLogin(id: string, at: Date): Promise<User | null> {
    try {
      return await this.inner.recordLogin(id, at);
    } finally {
      await this.changed(id);
    }
  }

  findByEmail(email: string, deleted?: DeletedFilter): Promise<User | null> {
    return this.inner.findByEmail(email, deleted);
  }

  findConfusable(email: string, exceptId?: string): Promise<User | null> {
    return this.inner.findConfusable(email, exceptId);
  }

  list(query: UserListQuery): Promise<User[]> {
    return this.inner.list(query);
  }

  count(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): Promise<number> {
    return this.inner.count(query);
  }

  listPage(query: UserListQuery & { after?: Expr }): Promise<{ items: User[]; total: number }> {
    return this.inner.listPage(query);
  }
}
