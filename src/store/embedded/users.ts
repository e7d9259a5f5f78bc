/** Users in the embedded store: the users table plus the search-term index kept beside it. */
import type { SQLInputValue } from 'node:sqlite';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type {
  BulkCreateResult,
  DeletedFilter,
  NewUser,
  User,
  UserListQuery,
  UserPatch,
  UserRepository,
} from '../ports.js';
import {
  and,
  searchFindsNothing,
  searchQueryTerms,
  searchTerms,
  totalOrder,
  USER_QUERY_FIELDS,
  type Expr,
} from '../query.js';
import { emailSkeleton } from '../email-skeleton.js';
import { freezeUser, normalizeEmail } from '../user-fields.js';
import { fromIso, toIso, uniqueViolation, type EmbeddedDatabase, type Row } from './database.js';
import { compileOrder, compileWhere, type SqlFieldMap, type SqlFragment } from './sql-query.js';

const COLUMN_OF: Record<string, string> = { email: 'email_normalized' };

export const USER_FIELD_MAP: SqlFieldMap = {
  fields: Object.fromEntries(
    Object.entries(USER_QUERY_FIELDS).map(([field, type]) => [
      field,
      { column: COLUMN_OF[field] ?? field, type },
    ]),
  ),
  metadataColumn: 'metadata',
  normalize: (field, value) => (field === 'email' ? normalizeEmail(value) : value),
};

function toUser(row: Row): User {
  return {
    id: row.id as string,
    email: row.email as string,
    first_name: row.first_name as string,
    last_name: row.last_name as string,
    role: row.role as string,
    status: row.status as User['status'],
    email_verified: row.email_verified === 1,
    mfa_enabled: row.mfa_enabled === 1,
    password_hash: (row.password_hash as string | null) ?? null,
    password_reset_required: row.password_reset_required === 1,
    metadata: JSON.parse(row.metadata as string),
    preferences: JSON.parse(row.preferences as string),
    login_count: Number(row.login_count),
    last_login: fromIso(row.last_login),
    plan: (row.plan as string | null) ?? null,
    created_at: fromIso(row.created_at)!,
    updated_at: fromIso(row.updated_at)!,
    deleted_at: fromIso(row.deleted_at),
  };
}

/** Most users a repository keeps in its lookup cache (about 1 KiB each). */
const LIVE_CACHE_SIZE = 5000;

function deletedClause(deleted: DeletedFilter = 'exclude'): string {
  if (deleted === 'include') return '1';
  return deleted === 'only' ? 'deleted_at IS NOT NULL' : 'deleted_at IS NULL';
}

/** The field a unique violation is about, as StoreConflictError names it; undefined for other errors. */
function conflictField(err: unknown): string | undefined {
  const column = uniqueViolation(err);
  return column === 'email_normalized' ? 'email' : column;
}

function conflictOrThrow(err: unknown): never {
  const field = conflictField(err);
  if (field) throw new StoreConflictError(field);
  throw err;
}

/** Thrown inside an atomic createMany's transaction to roll it back once an item conflicted. */
class AbortBatch extends Error {}

/** Columns a patch may set, with how each value is stored. */
const PATCH_COLUMNS: Record<keyof UserPatch, (v: never) => SQLInputValue> = {
  email: (v: string) => v.trim(),
  first_name: (v: string) => v,
  last_name: (v: string) => v,
  role: (v: string) => v,
  status: (v: string) => v,
  email_verified: (v: boolean) => (v ? 1 : 0),
  mfa_enabled: (v: boolean) => (v ? 1 : 0),
  password_hash: (v: string | null) => v,
  password_reset_required: (v: boolean) => (v ? 1 : 0),
  metadata: (v: object) => JSON.stringify(v),
  preferences: (v: object) => JSON.stringify(v),
  plan: (v: string | null) => v,
  deleted_at: (v: Date | null) => (v ? toIso(v) : null),
};

export class EmbeddedUserRepository implements UserRepository {
  /**
   * Counts over many rows (the `total` of a list page) cost far more than the page itself, and a
   * paging client asks for the same count again and again. They are remembered until the users
   * change: by a write through this repository, or by a commit of another process to the file.
   */
  private writes = 0;
  private readonly counts = new Map<string, number>();
  private countsVersion = '';

  /**
   * Live (not soft-deleted) users by id, as last read. Emptied whenever `version()` changes, so a
   * hit is what the database holds now: any write to users in this process, or any commit from
   * another, drops every entry. Entries are frozen, so no caller can alter what the next one gets.
   */
  private readonly live = new Map<string, User>();
  private liveVersion = '';

  constructor(private readonly db: EmbeddedDatabase) {}

  /** Replaces the search terms of the user stored at `seq` (its integer key). */
  private writeSearchTerms(seq: number, user: Pick<User, 'email' | 'first_name' | 'last_name'>): void {
    this.db.run('DELETE FROM user_search_index WHERE user_seq = ?', seq);
    for (const term of searchTerms(user.first_name, user.last_name, user.email)) {
      this.db.run('INSERT OR IGNORE INTO user_search_index (term, user_seq) VALUES (?, ?)', term, seq);
    }
  }

  /** Inserts one user with its search terms; call inside a transaction. Throws on a unique violation. */
  private insert(input: NewUser, defaultNow: Date): User {
    const now = input.created_at ?? defaultNow;
    const id = input.id ?? newId('usr', now.getTime());
    const email = input.email.trim();
    const row = this.db.get(
      `INSERT INTO users (id, email, email_normalized, first_name, last_name, role, status, email_verified,
         password_hash, password_reset_required, metadata, preferences, login_count, last_login,
         created_at, updated_at, deleted_at, plan, email_skeleton)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, NULL, ?, ?) RETURNING *`,
      id,
      email,
      normalizeEmail(email),
      input.first_name,
      input.last_name,
      input.role ?? 'user',
      input.status ?? 'active',
      input.email_verified ? 1 : 0,
      input.password_hash ?? null,
      input.password_reset_required ? 1 : 0,
      JSON.stringify(input.metadata ?? {}),
      JSON.stringify(input.preferences ?? {}),
      toIso(now),
      toIso(now),
      input.plan ?? null,
      emailSkeleton(normalizeEmail(email)),
    )!;
    const user = toUser(row);
    this.writeSearchTerms(Number(row.seq), user);
    return user;
  }

  async create(input: NewUser): Promise<User> {
    this.writes += 1;
    this.db.noteWrites(1);
    try {
      return this.db.transaction(() => this.insert(input, new Date()));
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  /**
   * One transaction for the whole batch. A unique violation aborts only its own statement in
   * SQLite, so the transaction goes on with the next item; a later duplicate of an email inside the
   * batch meets the first one's row and conflicts, which makes the first occurrence win. An atomic
   * batch with any conflict is rolled back as a whole.
   */
  async createMany(inputs: NewUser[], options: { atomic: boolean }): Promise<BulkCreateResult[]> {
    this.writes += 1;
    this.db.noteWrites(inputs.length);
    const now = new Date();
    const results: BulkCreateResult[] = [];
    try {
      this.db.transaction(() => {
        for (const input of inputs) {
          try {
            results.push({ user: this.insert(input, now) });
          } catch (err) {
            const field = conflictField(err);
            if (!field) throw err;
            results.push({ conflict: field });
          }
        }
        if (options.atomic && results.some((r) => 'conflict' in r)) throw new AbortBatch();
      });
    } catch (err) {
      if (!(err instanceof AbortBatch)) throw err;
      return results.map((r) => ('conflict' in r ? r : { aborted: true }));
    }
    return results;
  }

  async findById(id: string, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    if (deleted !== 'exclude') {
      const row = this.db.get(`SELECT * FROM users WHERE id = ? AND ${deletedClause(deleted)}`, id);
      return row ? toUser(row) : null;
    }
    // Introspection and userinfo read the token's user on every call; see `live` for why a cached
    // record is never stale.
    const version = this.version();
    if (version !== this.liveVersion) {
      this.live.clear();
      this.liveVersion = version;
    }
    const cached = this.live.get(id);
    if (cached) return cached;
    const row = this.db.get('SELECT * FROM users WHERE id = ? AND deleted_at IS NULL', id);
    if (!row) return null;
    const user = freezeUser(toUser(row));
    if (this.live.size >= LIVE_CACHE_SIZE) this.live.clear();
    this.live.set(id, user);
    return user;
  }

  /**
   * Changes whenever the users table may have: a write through this repository (every one bumps
   * `writes` synchronously with its statement) or a commit by another connection to the file (a CLI
   * command, another process), which SQLite's data_version reports.
   */
  private version(): string {
    return `${this.writes}:${this.db.dataVersion()}`;
  }

  async findByEmail(email: string, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    const row = this.db.get(
      `SELECT * FROM users WHERE email_normalized = ? AND ${deletedClause(deleted)}`,
      normalizeEmail(email),
    );
    return row ? toUser(row) : null;
  }

  async findConfusable(email: string, exceptId?: string): Promise<User | null> {
    const normalized = normalizeEmail(email);
    const row = this.db.get(
      `SELECT * FROM users WHERE email_skeleton = ? AND email_normalized <> ? AND id <> ? LIMIT 1`,
      emailSkeleton(normalized),
      normalized,
      exceptId ?? '',
    );
    return row ? toUser(row) : null;
  }

  async update(id: string, patch: UserPatch, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    this.writes += 1;
    const sets: string[] = [];
    const params: SQLInputValue[] = [];
    for (const [key, value] of Object.entries(patch) as [keyof UserPatch, never][]) {
      if (value === undefined || !(key in PATCH_COLUMNS)) continue;
      sets.push(`${key} = ?`);
      params.push(PATCH_COLUMNS[key](value));
      if (key === 'email') {
        sets.push('email_normalized = ?', 'email_skeleton = ?');
        params.push(normalizeEmail(value), emailSkeleton(normalizeEmail(value)));
      }
    }
    sets.push('updated_at = ?');
    params.push(toIso(new Date()));
    try {
      return this.db.transaction(() => {
        const row = this.db.get(
          `UPDATE users SET ${sets.join(', ')} WHERE id = ? AND ${deletedClause(deleted)} RETURNING *`,
          ...params,
          id,
        );
        if (!row) return null;
        const user = toUser(row);
        if (patch.email !== undefined || patch.first_name !== undefined || patch.last_name !== undefined) {
          this.writeSearchTerms(Number(row.seq), user);
        }
        return user;
      });
    } catch (err) {
      conflictOrThrow(err);
    }
  }

  async remove(id: string): Promise<boolean> {
    this.writes += 1;
    // user_roles and user_search_index rows go with it (ON DELETE CASCADE).
    return this.db.run('DELETE FROM users WHERE id = ?', id).changes > 0;
  }

  private filter(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): SqlFragment {
    const terms = query.search ? searchQueryTerms(query.search) : [];
    const parts: SqlFragment[] = [{ sql: deletedClause(query.deleted), params: [] }];
    if (searchFindsNothing(query.search)) parts.push({ sql: '0', params: [] });
    for (const term of terms) {
      parts.push({
        sql: 'seq IN (SELECT user_seq FROM user_search_index WHERE term >= ? AND term < ?)',
        params: [term, `${term}\u{10FFFF}`],
      });
    }
    const where: Expr | undefined = and(query.where);
    if (where) parts.push(compileWhere(USER_FIELD_MAP, where));
    return { sql: parts.map((p) => p.sql).join(' AND '), params: parts.flatMap((p) => p.params) };
  }

  async list(query: UserListQuery): Promise<User[]> {
    const where = this.filter(query);
    const order = compileOrder(USER_FIELD_MAP, totalOrder(query.sort));
    const rows = this.db.all(
      `SELECT * FROM users WHERE ${where.sql} ORDER BY ${order} LIMIT ? OFFSET ?`,
      ...where.params,
      query.limit,
      query.offset ?? 0,
    );
    return rows.map(toUser);
  }

  async listPage(query: UserListQuery & { after?: Expr }): Promise<{ items: User[]; total: number }> {
    if (query.after || !query.search) {
      // An index usually yields these rows in order, so the page stops early; the total is a
      // separate (cached) count.
      const [items, total] = await Promise.all([
        this.list({ ...query, where: and(query.where, query.after) }),
        this.count(query),
      ]);
      return { items, total };
    }
    // A text search visits every match to sort it anyway: one pass then computes the page and the
    // total, since SQLite evaluates the window over every matching row before applying LIMIT.
    const where = this.filter(query);
    const order = compileOrder(USER_FIELD_MAP, totalOrder(query.sort));
    const rows = this.db.all(
      `SELECT *, COUNT(*) OVER () AS total_rows FROM users WHERE ${where.sql} ORDER BY ${order} LIMIT ? OFFSET ?`,
      ...where.params,
      query.limit,
      query.offset ?? 0,
    );
    const total = rows.length > 0 ? Number(rows[0]!.total_rows) : await this.count(query);
    return { items: rows.map(toUser), total };
  }

  async count(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): Promise<number> {
    const version = this.version();
    if (version !== this.countsVersion) {
      this.counts.clear();
      this.countsVersion = version;
    }
    const where = this.filter(query);
    const key = `${where.sql}\u0000${JSON.stringify(where.params)}`;
    const cached = this.counts.get(key);
    if (cached !== undefined) return cached;
    const n = Number(
      this.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM users WHERE ${where.sql}`, ...where.params)!.n,
    );
    if (this.counts.size >= 500) this.counts.clear();
    this.counts.set(key, n);
    return n;
  }

  async recordLogin(id: string, at: Date): Promise<User | null> {
    this.writes += 1;
    const row = this.db.get(
      `UPDATE users SET login_count = login_count + 1, last_login = ? WHERE id = ? AND deleted_at IS NULL RETURNING *`,
      toIso(at),
      id,
    );
    return row ? toUser(row) : null;
  }
}
