/** Users in the mongo store: the users collection, its search terms, and the user query field map. */
import type { Model, QueryFilter } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { DeletedFilter, NewUser, User, UserListQuery, UserPatch, UserRepository } from '../ports.js';
import { searchQueryTerms, searchTerms, totalOrder, USER_QUERY_FIELDS } from '../query.js';
import { normalizeEmail } from '../user-fields.js';
import { duplicateKey, isIdViolation, isViolationOf, type DuplicateKey } from './duplicate-key.js';
import { UNIQUE_INDEX, type RoleLinkDocument, type UserDocument } from './models.js';
import {
  allOf,
  compileFilter,
  compileSort,
  prefixPattern,
  type MongoFieldMap,
  type MongoFilter,
} from './mongo-query.js';

const PATH_OF: Record<string, string> = { id: '_id', email: 'email_normalized' };

export const USER_FIELD_MAP: MongoFieldMap = {
  fields: Object.fromEntries(
    Object.entries(USER_QUERY_FIELDS).map(([field, type]) => [
      field,
      { path: PATH_OF[field] ?? field, type },
    ]),
  ),
  metadataPath: 'metadata',
  normalize: (field, value) => (field === 'email' ? normalizeEmail(value) : value),
};

/** Optimistic retries of an update that recomputes search terms before giving up (see update). */
const MAX_UPDATE_ATTEMPTS = 10;

function toUser(doc: UserDocument): User {
  return {
    id: doc._id,
    email: doc.email,
    first_name: doc.first_name,
    last_name: doc.last_name,
    role: doc.role,
    status: doc.status,
    email_verified: doc.email_verified === true,
    password_hash: doc.password_hash ?? null,
    password_reset_required: doc.password_reset_required === true,
    metadata: doc.metadata ?? {},
    preferences: doc.preferences ?? {},
    login_count: doc.login_count ?? 0,
    last_login: doc.last_login ?? null,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
    deleted_at: doc.deleted_at ?? null,
  };
}

function deletedFilter(deleted: DeletedFilter = 'exclude'): MongoFilter {
  if (deleted === 'include') return {};
  return deleted === 'only' ? { deleted_at: { $ne: null } } : { deleted_at: { $eq: null } };
}

/** `$eq` keeps an argument a value even if a caller passes an object where a string belongs. */
const byId = (id: string): MongoFilter => ({ _id: { $eq: id } });

/** The `$set` of a patch: only the fields a patch may change, with the email's normalized twin. */
function patchSet(patch: UserPatch): Partial<UserDocument> {
  const set: Partial<UserDocument> = {};
  if (patch.email !== undefined) {
    set.email = patch.email.trim();
    set.email_normalized = normalizeEmail(patch.email);
  }
  if (patch.first_name !== undefined) set.first_name = patch.first_name;
  if (patch.last_name !== undefined) set.last_name = patch.last_name;
  if (patch.role !== undefined) set.role = patch.role;
  if (patch.status !== undefined) set.status = patch.status;
  if (patch.email_verified !== undefined) set.email_verified = patch.email_verified;
  if (patch.password_hash !== undefined) set.password_hash = patch.password_hash;
  if (patch.password_reset_required !== undefined)
    set.password_reset_required = patch.password_reset_required;
  if (patch.metadata !== undefined) set.metadata = patch.metadata;
  if (patch.preferences !== undefined) set.preferences = patch.preferences;
  if (patch.deleted_at !== undefined) set.deleted_at = patch.deleted_at;
  return set;
}

export class MongoUserRepository implements UserRepository {
  constructor(
    private readonly users: Model<UserDocument>,
    private readonly roleLinks: Model<RoleLinkDocument>,
  ) {}

  /** Which field a duplicate-key error on the users collection is about. */
  private async conflictField(dup: DuplicateKey, callerId: string | undefined): Promise<string> {
    if (isViolationOf(dup, UNIQUE_INDEX.userEmail, 'email_normalized')) return 'email';
    if (isIdViolation(dup)) return 'id';
    // The server did not say which index (FerretDB on insert). Generated ids do not collide, so
    // only an id the caller chose can be the culprit.
    if (callerId !== undefined && (await this.users.exists(byId(callerId)))) return 'id';
    return 'email';
  }

  async create(input: NewUser): Promise<User> {
    const now = input.created_at ?? new Date();
    const email = input.email.trim();
    const doc: UserDocument = {
      _id: input.id ?? newId('usr', now.getTime()),
      email,
      email_normalized: normalizeEmail(email),
      first_name: input.first_name,
      last_name: input.last_name,
      role: input.role ?? 'user',
      status: input.status ?? 'active',
      email_verified: input.email_verified ?? false,
      password_hash: input.password_hash ?? null,
      password_reset_required: input.password_reset_required ?? false,
      metadata: input.metadata ?? {},
      preferences: input.preferences ?? {},
      login_count: 0,
      last_login: null,
      created_at: now,
      updated_at: now,
      deleted_at: null,
      search_terms: searchTerms(input.first_name, input.last_name, email),
    };
    try {
      const created = await this.users.create(doc);
      return toUser(created.toObject());
    } catch (err) {
      const dup = duplicateKey(err);
      if (dup) throw new StoreConflictError(await this.conflictField(dup, input.id));
      throw err;
    }
  }

  async findById(id: string, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    const doc = await this.users.findOne(allOf(byId(id), deletedFilter(deleted))).lean<UserDocument>();
    return doc ? toUser(doc) : null;
  }

  async findByEmail(email: string, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    const filter = allOf({ email_normalized: { $eq: normalizeEmail(email) } }, deletedFilter(deleted));
    const doc = await this.users.findOne(filter).lean<UserDocument>();
    return doc ? toUser(doc) : null;
  }

  /** One atomic findOneAndUpdate; null when no document matches `filter`. */
  private async apply(filter: MongoFilter, set: Partial<UserDocument>): Promise<User | null> {
    try {
      const doc = await this.users
        .findOneAndUpdate(filter as QueryFilter<UserDocument>, { $set: set }, { returnDocument: 'after' })
        .lean<UserDocument>();
      return doc ? toUser(doc) : null;
    } catch (err) {
      // An update never changes _id, so the only unique index it can hit is the email's.
      if (duplicateKey(err)) throw new StoreConflictError('email');
      throw err;
    }
  }

  async update(id: string, patch: UserPatch, deleted: DeletedFilter = 'exclude'): Promise<User | null> {
    const target = allOf(byId(id), deletedFilter(deleted));
    const set = patchSet(patch);
    set.updated_at = new Date();
    if (set.email === undefined && set.first_name === undefined && set.last_name === undefined) {
      return this.apply(target, set);
    }
    // The search terms depend on fields the patch may not carry. Without transactions, read them and
    // write only if they are still what was read (compare-and-set), so a concurrent rename cannot
    // leave terms computed from stale names.
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt += 1) {
      const current = await this.users
        .findOne(target, { email: 1, first_name: 1, last_name: 1 })
        .lean<Pick<UserDocument, '_id' | 'email' | 'first_name' | 'last_name'>>();
      if (!current) return null;
      set.search_terms = searchTerms(
        set.first_name ?? current.first_name,
        set.last_name ?? current.last_name,
        set.email ?? current.email,
      );
      const unchanged = {
        email: { $eq: current.email },
        first_name: { $eq: current.first_name },
        last_name: { $eq: current.last_name },
      };
      const updated = await this.apply(allOf(target, unchanged), set);
      if (updated) return updated;
    }
    throw new Error(
      `user ${id} kept changing during an update; gave up after ${MAX_UPDATE_ATTEMPTS} attempts`,
    );
  }

  async remove(id: string): Promise<boolean> {
    const { deletedCount } = await this.users.deleteOne(byId(id));
    // Links go after the user; RoleRepository.assign re-checks the user after linking, so a link
    // created concurrently with this removal does not outlive it either.
    await this.roleLinks.deleteMany({ user_id: { $eq: id } });
    return deletedCount > 0;
  }

  private filter(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): MongoFilter {
    const terms = query.search ? searchQueryTerms(query.search) : [];
    return allOf(
      deletedFilter(query.deleted),
      ...terms.map((term) => ({ search_terms: { $regex: prefixPattern(term) } })),
      query.where ? compileFilter(USER_FIELD_MAP, query.where) : {},
    );
  }

  async list(query: UserListQuery): Promise<User[]> {
    const filter = this.filter(query);
    const sort = compileSort(USER_FIELD_MAP, totalOrder(query.sort));
    // MongoDB reads a limit of 0 as "no limit"; the port means an empty page.
    if (!(query.limit > 0)) return [];
    const docs = await this.users
      .find(filter as QueryFilter<UserDocument>)
      .sort(sort)
      .skip(query.offset ?? 0)
      .limit(query.limit)
      .lean<UserDocument[]>();
    return docs.map(toUser);
  }

  async count(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): Promise<number> {
    return this.users.countDocuments(this.filter(query) as QueryFilter<UserDocument>);
  }

  async recordLogin(id: string, at: Date): Promise<User | null> {
    // Single-document atomic update; updated_at is left alone (a login is not an edit).
    const doc = await this.users
      .findOneAndUpdate(
        allOf(byId(id), deletedFilter('exclude')) as QueryFilter<UserDocument>,
        { $inc: { login_count: 1 }, $set: { last_login: at } },
        { returnDocument: 'after' },
      )
      .lean<UserDocument>();
    return doc ? toUser(doc) : null;
  }
}
