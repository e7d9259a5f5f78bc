/**
 * Which node:sqlite errors mean "the file cannot be used now": locked by another connection beyond
 * the busy timeout, an I/O error, a full disk, a file that cannot be opened.
 */
const UNAVAILABLE_CODES = new Set([
  5, // SQLITE_BUSY
  6, // SQLITE_LOCKED
  10, // SQLITE_IOERR
  13, // SQLITE_FULL
  14, // SQLITE_CANTOPEN
]);

export function isSqliteUnavailable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const e = err as { code?: unknown; errcode?: unknown };
  // errcode is the extended result code; its low byte is the primary one.
  return (
    e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' && UNAVAILABLE_CODES.has(e.errcode & 0xff)
  );
}
