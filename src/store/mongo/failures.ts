/**
 * Which MongoDB driver errors mean "the database did not answer" (so: 503, retry later) rather than
 * "the database answered no". Read from error names, codes and labels, the driver's public contract.
 */

const UNAVAILABLE_NAMES = new Set([
  'MongoServerSelectionError',
  'MongooseServerSelectionError',
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoNotConnectedError',
  'MongoTopologyClosedError',
  'MongoPoolClearedError',
  'MongoWaitQueueTimeoutError',
  'MongoOperationTimeoutError',
  'MongoServerClosedError',
]);

/** Server codes for "not now": time limit hit, shutting down, failing over, unreachable. */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

export function isMongoUnavailable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const e = err as { name?: unknown; code?: unknown; errorLabels?: unknown; message?: unknown };
  if (typeof e.name === 'string' && UNAVAILABLE_NAMES.has(e.name)) return true;
  if (typeof e.code === 'number' && UNAVAILABLE_CODES.has(e.code)) return true;
  if (Array.isArray(e.errorLabels) && e.errorLabels.includes('ResetPool')) return true;
  // FerretDB reports an operation stopped at its maxTimeMS (or cut off by its own shutdown) as an
  // internal error whose message ends in SQLite's "interrupted (9)", not as code 50.
  if (e.code === 1 && typeof e.message === 'string' && /\binterrupted \(9\)$/.test(e.message)) return true;
  // mongoose, when the connection is closed or was never opened (bufferCommands is off)
  return (
    typeof e.message === 'string' &&
    /Connection was force closed|before initial connection is complete|client was closed/i.test(e.message)
  );
}
