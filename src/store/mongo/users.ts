/** Users in the mongo store: the users collection, its search terms, and the user query field map. */
import type { Model, QueryFilter } from 'mongoose';

import { StoreConflictError, StoreUnavailableError } from '../errors.js';
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
import { normalizeEmail } from '../user-fields.js';
import { duplicateKey, isIdViolation, isViolationOf, type DuplicateKey } from './duplicate-key.js';
import {
  UNIQUE_INDEX,
  type RoleLinkDocument,
  type SsoIdentityDocument,
  type UserDocument,
} from './models.js';
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

/** Attempts at deleting the documents of an abandoned batch before giving up (see createMany). */
const MAX_UNDO_ATTEMPTS = 3;

/**
 * Per document, the unique key an unordered insert hit (null: stored), when the insert failed on
 * unique keys only. Undefined when anything else failed or the reply does not say which documents
 * were stored (a lost connection, a top-level command error, a write-concern error): then nothing
 * can be concluded about any of them.
 */
function duplicateFailures(err: unknown, count: number): (DuplicateKey | null)[] | undefined {
  const writeErrors = (err as { writeErrors?: unknown } | null)?.writeErrors;
  if (!Array.isArray(writeErrors) || writeErrors.length === 0) return undefined;
  const outcome: (DuplicateKey | null)[] = new Array<DuplicateKey | null>(count).fill(null);
  for (const writeError of writeErrors as { index?: unknown; code?: unknown; errmsg?: unknown }[]) {
    const { index } = writeError;
    const dup = duplicateKey({ code: writeError.code, message: writeError.errmsg });
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count || !dup) {
      return undefined;
    }
    outcome[index] = dup;
  }
  return outcome;
}

/** The document `create` and `createMany` store for a new user. */
function newUserDocument(input: NewUser, defaultNow: Date): UserDocument {
  const now = input.created_at ?? defaultNow;
  const email = input.email.trim();
  return {
    _id: input.id ?? newId('usr', now.getTime()),
    email,
    email_normalized: normalizeEmail(email),
    email_skeleton: emailSkeleton(normalizeEmail(email)),
    first_name: input.first_name,
    last_name: input.last_name,
    role: input.role ?? 'user',
    status: input.status ?? 'active',
    email_verified: input.email_verified ?? false,
    mfa_enabled: false,
    password_hash: input.password_hash ?? null,
    password_reset_required: input.password_reset_required ?? false,
    metadata: input.metadata ?? {},
    preferences: input.preferences ?? {},
    login_count: 0,
    last_login: null,
    plan: input.plan ?? null,
    created_at: now,
    updated_at: now,
    deleted_at: null,
    search_terms: searchTerms(input.first_name, input.last_name, email),
  };
}

function toUser(doc: UserDocument): User {
  return {
    id: doc._id,
    email: doc.email,
    first_name: doc.first_name,
    last_name: doc.last_name,
    role: doc.role,
    status: doc.status,
    email_verified: doc.email_verified === true,
    mfa_enabled: doc.mfa_enabled === true,
    password_hash: doc.password_hash ?? null,
    password_reset_required: doc.password_reset_required === true,
    metadata: doc.metadata ?? {},
    preferences: doc.preferences ?? {},
    login_count: doc.login_count ?? 0,
    last_login: doc.last_login ?? null,
    plan: doc.plan ?? null,
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
    set.email_skeleton = emailSkeleton(set.email_normalized);
  }
  if (patch.first_name !== undefined) set.first_name = patch.first_name;
  if (patch.last_name !== undefined) set.last_name = patch.last_name;
  if (patch.role !== undefined) set.role = patch.role;
  if (patch.status !== undefined) set.status = patch.status;
  if (patch.email_verified !== undefined) set.email_verified = patch.email_verified;
  if (patch.mfa_enabled !== undefined) set.mfa_enabled = patch.mfa_enabled;
  if (patch.password_hash !== undefined) set.password_hash = patch.password_hash;
  if (patch.password_reset_required !== undefined)
    set.password_reset_required = patch.password_reset_required;
  if (patch.metadata !== undefined) set.metadata = patch.metadata;
  if (patch.preferences !== undefined) set.preferences = patch.preferences;
  if (patch.deleted_at !== undefined) set.deleted_at = patch.deleted_at;
  if (patch.plan !== undefined) set.plan = patch.plan;
  return set;
}

export class MongoUserRepository implements UserRepository {
  constructor(
    private readonly users: Model<UserDocument>,
    private readonly roleLinks: Model<RoleLinkDocument>,
    /** Upstream identities (single sign-on) go with their user, as on the embedded store. */
    private readonly identities?: Model<SsoIdentityDocument>,
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
    const doc = newUserDocument(input, new Date());
    try {
      const created = await this.users.create(doc);
      return toUser(created.toObject());
    } catch (err) {
      const dup = duplicateKey(err);
      if (dup) throw new StoreConflictError(await this.conflictField(dup, input.id));
      throw err;
    }
  }

  /**
   * Without multi-document transactions, in four steps:
   *  1. one query finds which emails and caller-chosen ids are taken already;
   *  2. one pass in input order marks the conflicts: taken in the store, or by an earlier item of
   *     the batch (so the first occurrence wins). An atomic batch with a conflict stops here, having
   *     written nothing;
   *  3. one unordered insertMany stores the rest. The unique indexes decide, not step 1: a user
   *     created concurrently since step 1 makes its item fail here, and only that item;
   *  4. an atomic batch in which any insert failed deletes exactly the documents this call inserted
   *     (by their _id, which the reply says were stored by this insert), so the batch ends with none
   *     of its users stored.
   * Between 3 and 4 an abandoned batch is briefly visible (and holds its emails), and a process that
   * dies right there leaves it behind; that is the price of having no transactions. Two overlapping
   * atomic batches may both abort, but neither ends half-stored. When the undo itself keeps failing,
   * the call rejects with StoreUnavailableError rather than reporting the batch aborted.
   */
  async createMany(inputs: NewUser[], options: { atomic: boolean }): Promise<BulkCreateResult[]> {
    const now = new Date();
    const docs = await Promise.all(inputs.map((input) => this.hydrate(newUserDocument(input, now))));
    // Filled, not sparse: map() would skip the holes of `new Array(n)`.
    const results: (BulkCreateResult | undefined)[] = docs.map(() => undefined);

    const { emails: takenEmails, ids: takenIds } = await this.takenKeys(docs, inputs);
    const candidates: number[] = [];
    for (const [i, doc] of docs.entries()) {
      if (takenIds.has(doc._id)) {
        results[i] = { conflict: 'id' };
      } else if (takenEmails.has(doc.email_normalized)) {
        results[i] = { conflict: 'email' };
      } else {
        takenIds.add(doc._id);
        takenEmails.add(doc.email_normalized);
        candidates.push(i);
      }
    }
    const abort = () => results.map((r) => (r && 'conflict' in r ? r : { aborted: true as const }));
    if (options.atomic && candidates.length < docs.length) return abort();

    const outcome = await this.insertAll(candidates.map((i) => docs[i]!));
    const inserted: string[] = [];
    for (const [n, i] of candidates.entries()) {
      const dup = outcome[n];
      if (dup) {
        results[i] = { conflict: await this.conflictField(dup, inputs[i]!.id) };
      } else {
        inserted.push(docs[i]!._id);
        results[i] = { user: toUser(docs[i]!) };
      }
    }
    if (options.atomic && inserted.length < docs.length) {
      if (inserted.length > 0) await this.undo({ _id: { $in: inserted } });
      return abort();
    }
    return results as BulkCreateResult[];
  }

  /** Casts and validates a document as create() would, before anything of a batch is written. */
  private async hydrate(doc: UserDocument): Promise<UserDocument> {
    const hydrated = new this.users(doc);
    await hydrated.validate(); // throws the ValidationError create() would
    return hydrated.toObject<UserDocument>();
  }

  /** Which of the batch's normalized emails and caller-chosen ids are taken (by deleted users too). */
  private async takenKeys(
    docs: UserDocument[],
    inputs: NewUser[],
  ): Promise<{ emails: Set<string>; ids: Set<string> }> {
    const emails = new Set<string>();
    const ids = new Set<string>();
    if (docs.length === 0) return { emails, ids };
    const chosenIds = docs.filter((_, i) => inputs[i]!.id !== undefined).map((d) => d._id);
    const byEmail: MongoFilter = { email_normalized: { $in: docs.map((d) => d.email_normalized) } };
    const filter = chosenIds.length > 0 ? { $or: [byEmail, { _id: { $in: chosenIds } }] } : byEmail;
    const found = await this.users
      .find(filter as QueryFilter<UserDocument>, { email_normalized: 1 })
      .lean<Pick<UserDocument, '_id' | 'email_normalized'>[]>();
    for (const doc of found) {
      emails.add(doc.email_normalized);
      ids.add(doc._id);
    }
    return { emails, ids };
  }

  /**
   * Stores `docs` with one unordered insertMany: per document, the unique key it hit, or null when
   * it was stored. When the reply leaves it unknown which were stored, whatever of them is there is
   * deleted again and the error is rethrown, so a failed call leaves none of them behind.
   */
  private async insertAll(docs: UserDocument[]): Promise<(DuplicateKey | null)[]> {
    if (docs.length === 0) return [];
    try {
      // lean: the documents were cast and validated by hydrate(), so none can fail validation halfway.
      await this.users.insertMany(docs, { ordered: false, lean: true });
      return docs.map(() => null);
    } catch (err) {
      const outcome = duplicateFailures(err, docs.length);
      if (outcome) return outcome;
      // Matching the email as well as the _id spares a document someone else stored under a
      // caller-chosen id that this batch also asked for.
      await this.undo({
        $or: docs.map((d) => ({ _id: { $eq: d._id }, email_normalized: { $eq: d.email_normalized } })),
      });
      throw err;
    }
  }

  /**
   * Deletes the documents of an abandoned batch, retrying a few times: left behind, they would break
   * the batch's all-or-nothing promise.
   */
  private async undo(filter: MongoFilter): Promise<void> {
    let lastError: unknown;
    for (let attempt = 0; attempt < MAX_UNDO_ATTEMPTS; attempt += 1) {
      try {
        await this.users.deleteMany(filter as QueryFilter<UserDocument>);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw new StoreUnavailableError('createMany could not delete the users of an abandoned batch', {
      cause: lastError,
    });
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

  async findConfusable(email: string, exceptId?: string): Promise<User | null> {
    const normalized = normalizeEmail(email);
    const doc = await this.users
      .findOne({
        email_skeleton: { $eq: emailSkeleton(normalized) },
        email_normalized: { $ne: normalized },
        ...(exceptId ? { _id: { $ne: exceptId } } : {}),
      })
      .lean<UserDocument>();
    return doc ? toUser(doc) : null;
  }

  /**
   * Users stored before skeletons existed get theirs (one update each; run by migrate, which is
   * idempotent and safe to repeat).
   */
  async backfillSkeletons(): Promise<number> {
    let done = 0;
    const missing = this.users
      .find({ email_skeleton: { $exists: false } }, { email_normalized: 1 })
      .lean<Pick<UserDocument, '_id' | 'email_normalized'>[]>()
      .cursor();
    for await (const doc of missing) {
      await this.users.updateOne(
        { _id: { $eq: doc._id }, email_normalized: { $eq: doc.email_normalized } },
        { $set: { email_skeleton: emailSkeleton(doc.email_normalized) } },
      );
      done += 1;
    }
    return done;
  }

  /** Sets `mfa_enabled: false` on users stored before second factors existed (so filters on it match). */
  async backfillMfaFlag(): Promise<void> {
    await this.users.updateMany({ mfa_enabled: { $exists: false } }, { $set: { mfa_enabled: false } });
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
    await this.identities?.deleteMany({ user_id: { $eq: id } });
    return deletedCount > 0;
  }

  private filter(query: Omit<UserListQuery, 'sort' | 'limit' | 'offset'>): MongoFilter {
    const terms = query.search ? searchQueryTerms(query.search) : [];
    return allOf(
      deletedFilter(query.deleted),
      searchFindsNothing(query.search) ? { _id: { $exists: false } } : {},
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

  async listPage(query: UserListQuery & { after?: Expr }): Promise<{ items: User[]; total: number }> {
    // The server does both at once; the keyset position narrows the page only.
    const [items, total] = await Promise.all([
      this.list({ ...query, where: query.after ? and(query.where, query.after) : query.where }),
      this.count(query),
    ]);
    return { items, total };
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
