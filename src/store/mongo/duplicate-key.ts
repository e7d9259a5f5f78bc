/**
 * Recognizing unique-index violations in write errors. Duck-typed (code and message, never
 * instanceof): driver errors may come from another realm, as under Jest's vm.
 *
 * MongoDB reports code 11000 with the index name and usually keyPattern/keyValue. FerretDB 1.x
 * (SQLite) reports 11000 without naming the index for inserts, and for updates (update,
 * findAndModify) an InternalError (code 1) carrying SQLite's "UNIQUE constraint failed: index
 * '<table>_<index>'" text; both are read here so callers see one shape.
 */

export interface DuplicateKey {
  /** The violated index, when the server named it (FerretDB prefixes its own table name). */
  index?: string;
  /** The violated key paths, when the server listed them. */
  keys: string[];
}

const DUPLICATE_KEY_CODES = new Set([11000, 11001]);
const SQLITE_UNIQUE = /UNIQUE constraint failed: index '([^']+)'/;

function keysOf(value: unknown): string[] | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const keys = Object.keys(value);
  return keys.length > 0 ? keys : undefined;
}

/** The unique violation `err` reports, or undefined when it is not one. */
export function duplicateKey(err: unknown): DuplicateKey | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const e = err as { code?: unknown; message?: unknown; keyPattern?: unknown; keyValue?: unknown };
  const message = typeof e.message === 'string' ? e.message : '';
  if (typeof e.code === 'number' && DUPLICATE_KEY_CODES.has(e.code)) {
    const index = /index: (\S+)/.exec(message)?.[1];
    return { ...(index ? { index } : {}), keys: keysOf(e.keyPattern) ?? keysOf(e.keyValue) ?? [] };
  }
  const sqlite = e.code === 1 ? SQLITE_UNIQUE.exec(message) : null;
  if (sqlite) return { index: sqlite[1]!, keys: [] };
  return undefined;
}

/** Whether the violation is of the index named `name` on `path`, as far as the server said. */
export function isViolationOf(dup: DuplicateKey, name: string, path: string): boolean {
  if (dup.keys.includes(path)) return true;
  return dup.index !== undefined && (dup.index === name || dup.index.endsWith(`_${name}`));
}

/** Whether the violation is of `_id`, as far as the server said. */
export function isIdViolation(dup: DuplicateKey): boolean {
  return dup.keys.includes('_id') || dup.index === '_id_';
}
