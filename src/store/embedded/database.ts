/**
 * The embedded SQLite file (node:sqlite). The composition root opens one handle and shares it between
 * the durable, artifact and counter adapters; it closes when the last of them closes. node:sqlite is synchronous, so a
 * statement or an explicit transaction runs without interleaving inside this process, and SQLite's
 * own locking (WAL, busy timeout) orders writers from other processes.
 *
 * Checkpoints. In WAL mode a commit appends to the -wal file; a checkpoint copies those pages back
 * into the database file and lets the WAL start over. SQLite's default runs one automatically inside
 * whichever commit takes the WAL past 1000 pages, fsyncs included, so under a stream of token writes
 * one request in a few hundred waited 20-150 ms for it. Here the automatic checkpoint is off and
 * the handle checkpoints itself, outside any statement, PASSIVE (never waiting for other
 * connections' readers or writers; it copies what it can and the next run finishes the rest):
 * - every second from an unref'd timer, when anything was written since the last one or the last
 *   one could not finish;
 * - as a backstop, after CHECKPOINT_AFTER_WRITES write statements since the last one, on the next
 *   turn of the event loop (setImmediate), not inside the statement that crossed the mark. Every
 *   write of this process runs on the event loop, so between two timer runs the WAL grows by at
 *   most one second of writes (plus one long synchronous transaction); the backstop caps that
 *   during bursts and if the timer runs late;
 * - TRUNCATE on close, so a stopped server leaves no large -wal file behind.
 * Where the checkpoint runs matters as much as when: node:sqlite is synchronous, and a checkpoint of
 * one busy second (a few thousand pages and two fsyncs) blocks the thread for 50-100 ms, every
 * request in flight with it. So once this handle sees OFFLOAD_AFTER_WRITES writes between two
 * checkpoints, checkpoints move for good to a worker thread with a connection of its own
 * (checkpointer.ts), which the writers here do not wait for; once the WAL is CATCH_UP_AFTER_FRAMES
 * long, this thread copies the few pages written while the worker ran, without which the WAL could
 * never start over under steady writes. Below that rate checkpoints run in-thread: a handful of
 * pages, and no idle server pays the worker's ~18 MiB. Should the worker fail, they run in-thread
 * again. So the WAL stays within about CATCH_UP_AFTER_FRAMES pages plus two seconds of writes.
 * A second process on the same file (a CLI command, a test) has its own handle doing the same;
 * SQLite lets one checkpoint run at a time and a PASSIVE one that finds another running reports
 * busy and is retried on the next tick. A connection with SQLite's defaults (the sqlite3 shell, an
 * older build) still checkpoints automatically, which is equally safe. What no checkpoint can
 * overcome is a reader that keeps one snapshot open for long (SQLite cannot reuse the WAL behind
 * it); this code holds no transaction open across an await.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';

import { BackgroundCheckpointer, type CheckpointResult } from './checkpointer.js';
import { emailSkeleton } from '../email-skeleton.js';
import { StoreUnavailableError } from '../errors.js';
import { MIGRATIONS } from './migrations.js';

export type { CheckpointResult } from './checkpointer.js';

const isPromiseLike = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

/** Marks the async context of the open unit of work, so its own operations pass settle(). */
const unitScope = new AsyncLocalStorage<object>();

export const EMBEDDED_FILE_NAME = 'latchkey.sqlite';

export type Row = Record<string, SQLInputValue>;

const STATEMENT_CACHE_SIZE = 256;

/** How often the WAL is checkpointed. */
const CHECKPOINT_INTERVAL_MS = 1000;
/** Write statements (and transactions) after which a checkpoint starts without waiting for the timer. */
const CHECKPOINT_AFTER_WRITES = 2000;
/** Writes between two checkpoints from which checkpoints move to a worker thread. */
const OFFLOAD_AFTER_WRITES = 200;
/** WAL length (pages, 16 MiB at SQLite's 4 KiB) from which this thread finishes the worker's checkpoint. */
const CATCH_UP_AFTER_FRAMES = 4096;
/** Statements that write even though they return rows (get/all): INSERT … RETURNING and the like. */
const RETURNING = /\bRETURNING\b/i;

export class EmbeddedDatabase {
  readonly path: string;
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  /** Cached statements that write although called through get/all. */
  private readonly returningWrites = new WeakSet<StatementSync>();
  private users = 0;
  private closed = false;
  private turnDataVersion: number | undefined;
  private writesSinceOptimize = 0;
  private writesSinceCheckpoint = 0;
  /** The last checkpoint was busy or left pages behind: the next tick runs one even without writes. */
  private checkpointIncomplete = false;
  private checkpointScheduled = false;
  private releasing = false;
  private readonly checkpointTimer: NodeJS.Timeout | undefined;
  private background: BackgroundCheckpointer | undefined;
  private backgroundWaiters: (() => void)[] = [];
  /** The open group-commit transaction's waiters (see runGrouped), if one is open. */
  private savepoints = 0;
  /** The open unit of work (unitOfWork), if any. */
  private unit: { token: object; settled: Promise<void>; start: number; foreign: number } | undefined;
  private group: { resolve: () => void; reject: (err: unknown) => void }[] | undefined;

  private constructor(path: string) {
    this.path = path;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path, { timeout: 5000 });
    this.db.exec('PRAGMA journal_mode = WAL');
    // In WAL mode, NORMAL syncs at checkpoints rather than at every commit. A commit is durable
    // against a crash of this process (it is in the OS's file cache); an OS crash or power loss can
    // roll back the transactions committed since the last checkpoint (about a second, see above)
    // but never corrupts the file. FULL would add an fsync to every token issued.
    this.db.exec('PRAGMA synchronous = NORMAL');
    // Checkpoints are ours (see the top of this file); the setting is per connection.
    this.db.exec('PRAGMA wal_autocheckpoint = 0');
    // A larger page cache (up to 64 MiB, allocated as used) keeps hot users in memory.
    this.db.exec('PRAGMA cache_size = -65536');
    this.db.exec('PRAGMA foreign_keys = ON');
    // Field rules computed in JavaScript, for migration steps that backfill derived columns.
    this.db.function('latchkey_email_skeleton', { deterministic: true }, (email) =>
      emailSkeleton(String(email)),
    );
    this.migrate();
    this.optimize();
    if (path !== ':memory:') {
      this.checkpointTimer = setInterval(() => {
        if (this.writesSinceCheckpoint > 0 || this.checkpointIncomplete) this.startCheckpoint();
      }, CHECKPOINT_INTERVAL_MS);
      this.checkpointTimer.unref();
    }
  }

  /**
   * Checkpoints on this thread, on this connection: PASSIVE copies the WAL's committed pages into the
   * database file without waiting for other connections. Never throws: a failed checkpoint (an I/O
   * error) leaves the WAL longer and is retried on the next tick; the writes report such errors.
   */
  checkpoint(mode: 'PASSIVE' | 'TRUNCATE' = 'PASSIVE'): CheckpointResult | undefined {
    if (this.closed || this.path === ':memory:' || this.unit) return undefined;
    this.commitGroup();
    this.writesSinceCheckpoint = 0;
    let result: CheckpointResult | undefined;
    try {
      result = this.db.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as unknown as CheckpointResult;
    } catch {
      result = undefined;
    }
    this.checkpointEnded(result);
    return result;
  }

  /** Whether checkpoints have moved to the worker thread (see the top of this file). */
  get checkpointsInBackground(): boolean {
    return this.background !== undefined && !this.background.failed;
  }

  /** Resolves when the worker's running checkpoint, if any, has ended. */
  async backgroundCheckpointSettled(): Promise<void> {
    if (!this.background?.busy) return;
    await new Promise<void>((done) => this.backgroundWaiters.push(done));
  }

  /** Starts a checkpoint where it belongs: in the worker once writes are frequent, else here. */
  private startCheckpoint(): void {
    if (this.closed || this.path === ':memory:') return;
    if (this.background === undefined && this.writesSinceCheckpoint >= OFFLOAD_AFTER_WRITES) {
      try {
        this.background = new BackgroundCheckpointer(this.path, (result) =>
          this.checkpointEnded(result, true),
        );
      } catch {
        // No worker thread to be had: checkpoints stay on this thread.
      }
    }
    if (this.background && !this.background.failed) {
      // When one is already running it will cover these pages, or leave them for the next tick.
      if (this.background.request()) this.writesSinceCheckpoint = 0;
      return;
    }
    this.checkpoint();
  }

  private checkpointEnded(result: CheckpointResult | undefined, inBackground = false): void {
    this.checkpointIncomplete = !result || result.busy !== 0 || result.checkpointed < result.log;
    if (!inBackground) return;
    // The writes made here while the worker copied are still only in the WAL, and SQLite starts the
    // WAL over only when a write begins with every frame copied; under steady writes that would never
    // happen and the WAL would grow for as long as they last. Copying that remainder here (the pages
    // of a few tens of milliseconds, but two fsyncs: 10-20 ms on a busy disk) lets the next write
    // start it over; done once the WAL is long rather than after every run, it costs the event loop
    // one such pause every few seconds of heavy writing.
    if (result && result.busy === 0 && result.log >= CATCH_UP_AFTER_FRAMES && !this.closed) {
      this.checkpoint();
    }
    for (const done of this.backgroundWaiters.splice(0)) done();
    // Writes went on while the worker copied: start the next one now if the backstop is due.
    if (this.writesSinceCheckpoint >= CHECKPOINT_AFTER_WRITES) this.scheduleCheckpoint();
  }

  /** Counts one write statement; past CHECKPOINT_AFTER_WRITES, checkpoints once this turn is done. */
  private wrote(): void {
    this.writesSinceCheckpoint += 1;
    if (this.writesSinceCheckpoint >= CHECKPOINT_AFTER_WRITES) this.scheduleCheckpoint();
  }

  private scheduleCheckpoint(): void {
    // A running background checkpoint calls back when it ends (checkpointEnded).
    if (this.checkpointScheduled || this.background?.busy) return;
    this.checkpointScheduled = true;
    setImmediate(() => {
      this.checkpointScheduled = false;
      this.startCheckpoint();
    });
  }

  /**
   * Lets SQLite refresh the table statistics its query planner relies on (without them it may, for
   * example, scan every active user to answer a narrow name search). Cheap when nothing changed;
   * run on open and periodically.
   */
  optimize(): void {
    if (!this.closed) this.db.exec('PRAGMA optimize=0x10002');
    this.writesSinceOptimize = 0;
  }

  /**
   * Counts row writes and refreshes the statistics once enough accumulated: a table that grew from
   * empty to 100k rows in minutes (an import) would otherwise be planned as if it were still empty
   * until the next periodic run. SQLite only re-analyzes tables whose size changed a lot.
   */
  noteWrites(rows: number): void {
    this.writesSinceOptimize += rows;
    if (this.writesSinceOptimize >= 5000) this.optimize();
  }

  /** Opens the database file in `dataDir`, creating and migrating it as needed. */
  static open(dataDir: string): EmbeddedDatabase {
    return new EmbeddedDatabase(resolve(join(dataDir, EMBEDDED_FILE_NAME)));
  }

  /** Each adapter built on this handle retains it once and releases it on close. */
  retain(): this {
    this.users += 1;
    return this;
  }

  /**
   * The file is closed when the last holder releases it; the promise settles once nothing (the
   * checkpoint worker included) has the file open any more.
   */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users <= 0 && !this.closed && !this.releasing) {
      this.releasing = true;
      clearInterval(this.checkpointTimer);
      await this.background?.stop();
      for (const done of this.backgroundWaiters.splice(0)) done();
      if (this.path !== ':memory:') {
        // Empties the WAL file. It waits for other connections' writers and readers (the worker's
        // last checkpoint among them), but not for long: when one stays busy the checkpoint reports
        // it and the file is left for a later one.
        try {
          this.db.exec('PRAGMA busy_timeout = 500');
        } catch {
          // closing anyway
        }
        this.checkpoint('TRUNCATE');
      }
      this.commitGroup();
      this.closed = true;
      this.statements.clear();
      this.db.close();
    }
  }

  get schemaVersion(): number {
    return Number((this.db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  }

  private migrate(): void {
    if (MIGRATIONS.every((step) => step.version <= this.schemaVersion)) return;
    // Steps may rebuild tables (drop and recreate): with foreign keys on, dropping a parent table
    // would cascade into its children. SQLite only switches this outside a transaction.
    this.db.exec('PRAGMA foreign_keys = OFF');
    try {
      this.transaction(() => {
        const current = this.schemaVersion;
        for (const step of MIGRATIONS) {
          if (step.version <= current) continue;
          this.db.exec(step.sql);
          this.db.exec(`PRAGMA user_version = ${step.version}`);
        }
        const broken = this.db.prepare('PRAGMA foreign_key_check').all();
        if (broken.length > 0) throw new Error(`migration left ${broken.length} broken references`);
      });
    } finally {
      this.db.exec('PRAGMA foreign_keys = ON');
    }
  }

  statement(sql: string): StatementSync {
    let stmt = this.statements.get(sql);
    if (stmt) {
      this.statements.delete(sql);
    } else {
      stmt = this.db.prepare(sql);
      if (RETURNING.test(sql)) this.returningWrites.add(stmt);
      if (this.statements.size >= STATEMENT_CACHE_SIZE) {
        this.statements.delete(this.statements.keys().next().value as string);
      }
    }
    this.statements.set(sql, stmt);
    return stmt;
  }

  get<T = Row>(sql: string, ...params: SQLInputValue[]): T | undefined {
    const stmt = this.statement(sql);
    const writes = this.returningWrites.has(stmt);
    if (writes) this.commitGroup();
    const row = stmt.get(...params) as T | undefined;
    if (writes) this.wrote();
    return row;
  }

  all<T = Row>(sql: string, ...params: SQLInputValue[]): T[] {
    const stmt = this.statement(sql);
    const writes = this.returningWrites.has(stmt);
    if (writes) this.commitGroup();
    const rows = stmt.all(...params) as T[];
    if (writes) this.wrote();
    return rows;
  }

  run(sql: string, ...params: SQLInputValue[]): { changes: number } {
    this.commitGroup();
    const result = this.statement(sql).run(...params);
    if (result.changes) this.wrote();
    return { changes: Number(result.changes) };
  }

  /**
   * A write whose commit is shared with the other grouped writes of this turn of the event loop
   * (group commit): the first opens a transaction, the rest join it, and it commits once the turn's
   * callbacks have run (setImmediate). The promise settles when the write is committed, so whoever
   * awaits it (an artifact save, then the response) sees it as durable as an autocommit write. A
   * commit writes each changed page to the WAL once, however many rows changed on it, so a burst of
   * token writes costs a fraction of what as many separate commits do. Reads in the meantime see
   * the open transaction's rows (one connection); any other write, transaction or checkpoint
   * commits the group first, so their own semantics are unchanged.
   */
  runGrouped(sql: string, ...params: SQLInputValue[]): Promise<{ changes: number }> {
    // Called inside a transaction() callback: the write belongs to that transaction, which commits
    // (or rolls back) before the callback's caller regains control.
    if (!this.group && this.db.isTransaction) {
      try {
        return Promise.resolve(this.run(sql, ...params));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (!this.group) {
      this.db.exec('BEGIN IMMEDIATE');
      this.group = [];
      setImmediate(() => this.commitGroup());
    }
    let changes: number;
    try {
      changes = Number(this.statement(sql).run(...params).changes);
    } catch (err) {
      // SQLite undoes just the failed statement, except for errors (disk full, I/O) after which it
      // rolls the whole transaction back: then nothing of the group was written.
      if (!this.db.isTransaction) this.failGroup(err);
      return Promise.reject(err);
    }
    if (changes) this.wrote();
    const group = this.group;
    return new Promise((resolve, reject) => group.push({ resolve: () => resolve({ changes }), reject }));
  }

  /** Commits the open group transaction, if any, and settles its writes. */
  private commitGroup(): void {
    const group = this.group;
    if (!group) return;
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.isTransaction) {
        try {
          this.db.exec('ROLLBACK');
        } catch {
          // the connection is unusable; the writes are reported failed below
        }
      }
      this.failGroup(err);
      return;
    }
    this.group = undefined;
    for (const waiter of group) waiter.resolve();
  }

  private failGroup(err: unknown): void {
    const group = this.group ?? [];
    this.group = undefined;
    for (const waiter of group) waiter.reject(err);
  }

  /**
   * Runs `work` in one write transaction (BEGIN IMMEDIATE), rolling back if it throws. Inside an
   * open unit of work (see unitOfWork) it is a savepoint of that unit instead.
   */
  transaction<T>(work: () => T): T {
    this.commitGroup();
    if (this.db.isTransaction) return this.savepoint(work);
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.db.exec('COMMIT');
      this.wrote();
      return result;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  private savepoint<T>(work: () => T): T {
    const name = `sp_${++this.savepoints}`;
    this.db.exec(`SAVEPOINT ${name}`);
    try {
      const result = work();
      this.db.exec(`RELEASE ${name}`);
      return result;
    } catch (err) {
      this.db.exec(`ROLLBACK TO ${name}`);
      this.db.exec(`RELEASE ${name}`);
      throw err;
    }
  }

  /**
   * Runs an asynchronous `work` (a change and the events recording it) in one write transaction:
   * both commit, or, when `work` fails after writing, neither. The repositories of this file do
   * their SQL synchronously, so the transaction stays open only for the microtasks `work` takes (no
   * await in it may wait for I/O). Other requests' operations whose microtasks run meanwhile
   * execute inside that transaction (one connection): the stores' guard runs every operation through
   * call(), which holds the answer of such an operation until the unit has ended. When `work` fails
   * without having written (a unique conflict, say), the unit commits what the others wrote; when
   * it fails after writing, it rolls back, and the others' operations that wrote inside it fail
   * with StoreUnavailableError (their write is gone; a retry succeeds), while reads answer as usual.
   * Units run one at a time.
   */
  async unitOfWork<T>(work: () => Promise<T>): Promise<T> {
    for (;;) {
      const open = this.unit;
      if (!open) break;
      if (unitScope.getStore() === open.token) return work(); // nested: part of the same unit
      await open.settled.catch(() => undefined);
    }
    this.commitGroup();
    this.db.exec('BEGIN IMMEDIATE');
    let settle!: (err?: unknown) => void;
    const settled = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    settled.catch(() => undefined);
    const unit = { token: {}, settled, start: this.totalChanges(), foreign: 0 };
    this.unit = unit;
    let result: T;
    try {
      result = await unitScope.run(unit.token, work);
    } catch (err) {
      const own = this.totalChanges() - unit.start - unit.foreign;
      let rolledBack = false;
      try {
        if (own === 0) this.db.exec('COMMIT');
        else {
          this.db.exec('ROLLBACK');
          rolledBack = true;
        }
      } catch {
        rolledBack = true;
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
      }
      this.unit = undefined;
      if (rolledBack) settle(err);
      else settle();
      throw err;
    }
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      this.unit = undefined;
      settle(err);
      throw err;
    }
    this.wrote();
    this.unit = undefined;
    settle();
    return result;
  }

  /**
   * Runs one operation of a store on this file (the guard's hook): as it is, unless a unit of work
   * of another request is open; then its answer waits for the unit to end, and fails if the unit
   * rolled back what it wrote (see unitOfWork).
   */
  call(operation: () => unknown): unknown {
    const open = this.unit;
    if (!open || unitScope.getStore() === open.token) return operation();
    const before = this.totalChanges();
    const result = operation();
    const wrote = this.totalChanges() - before;
    open.foreign += wrote;
    if (!isPromiseLike(result)) return result;
    return Promise.resolve(result).then((value) =>
      open.settled.then(
        () => value,
        (err: unknown) => {
          if (wrote === 0) return value;
          throw new StoreUnavailableError('the write was undone with a concurrent transaction; try again', {
            cause: err,
            backend: 'embedded',
          });
        },
      ),
    );
  }

  /** Rows changed by this connection since it opened (SQLite total_changes). */
  private totalChanges(): number {
    return Number((this.statement('SELECT total_changes() AS n').get() as { n: number }).n);
  }

  /**
   * Changes whenever another connection (another process) commits to the file. Read once per turn of
   * the event loop (the value is kept until the next check phase): the requests a turn serves see
   * the file as of that turn's start, which a request racing another process's commit could have
   * seen anyway, and a burst of cached reads costs one PRAGMA instead of one each.
   */
  dataVersion(): number {
    if (this.turnDataVersion === undefined) {
      this.turnDataVersion = Number(
        (this.statement('PRAGMA data_version').get() as { data_version: number }).data_version,
      );
      setImmediate(() => {
        this.turnDataVersion = undefined;
      });
    }
    return this.turnDataVersion;
  }

  ping(): void {
    if (this.closed) throw new Error('embedded database is closed');
    this.db.prepare('SELECT 1').get();
  }
}

/** SQLite reports unique violations as "UNIQUE constraint failed: table.column". */
export function uniqueViolation(err: unknown): string | undefined {
  // Duck-typed: errors from node:sqlite may come from another realm (for example under Jest's vm).
  const message = String((err as { message?: unknown } | null)?.message ?? '');
  const match = /UNIQUE constraint failed: \w+\.(\w+)/.exec(message);
  if (match) return match[1];
  if (/UNIQUE constraint failed/.test(message)) return 'id';
  return undefined;
}

export const toIso = (d: Date): string => d.toISOString();
export const fromIso = (s: unknown): Date | null => (typeof s === 'string' ? new Date(s) : null);
