/**
 * The embedded SQLite file (node:sqlite). The composition root opens one handle and shares it between
 * the durable, artifact and counter adapters; it closes when the last of them closes. node:sqlite is synchronous, so a
 * statement or an explicit transaction runs without interleaving inside this process, and SQLite's
 * own locking (WAL, busy timeout) orders writers from other processes.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';

import { MIGRATIONS } from './migrations.js';

export const EMBEDDED_FILE_NAME = 'latchkey.sqlite';

export type Row = Record<string, SQLInputValue>;

const STATEMENT_CACHE_SIZE = 256;

export class EmbeddedDatabase {
  readonly path: string;
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  private users = 0;
  private closed = false;
  private writesSinceOptimize = 0;

  private constructor(path: string) {
    this.path = path;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path, { timeout: 5000 });
    this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec('PRAGMA synchronous = NORMAL');
    // A larger page cache (up to 64 MiB, allocated as used) keeps hot users in memory.
    this.db.exec('PRAGMA cache_size = -65536');
    this.db.exec('PRAGMA foreign_keys = ON');
    this.migrate();
    this.optimize();
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

  /** The file is closed when the last holder releases it. */
  release(): void {
    this.users -= 1;
    if (this.users <= 0 && !this.closed) {
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
      if (this.statements.size >= STATEMENT_CACHE_SIZE) {
        this.statements.delete(this.statements.keys().next().value as string);
      }
    }
    this.statements.set(sql, stmt);
    return stmt;
  }

  get<T = Row>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.statement(sql).get(...params) as T | undefined;
  }

  all<T = Row>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.statement(sql).all(...params) as T[];
  }

  run(sql: string, ...params: SQLInputValue[]): { changes: number } {
    const result = this.statement(sql).run(...params);
    return { changes: Number(result.changes) };
  }

  /** Runs `work` in one write transaction (BEGIN IMMEDIATE), rolling back if it throws. */
  transaction<T>(work: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  /** Changes whenever another connection (another process) commits to the file. */
  dataVersion(): number {
    return Number((this.db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version);
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
