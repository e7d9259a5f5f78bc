/**
 * The `err` serializer of every log line. Driver errors are large object graphs (a MongoDB server
 * selection error carries the whole topology, with cycles); logging them as they are produced
 * "[unable to serialize, circular reference …]" and lost the cause. This keeps what an operator
 * needs to know why something failed (type, message, code, the network facts, the stack, the
 * chain of causes) as plain values, and cannot throw: whatever it is given, it returns an object.
 */

export interface SerializedError {
  type: string;
  message: string;
  code?: string | number;
  errno?: number;
  syscall?: string;
  address?: string;
  port?: number;
  /** Set on store failures: which backend. */
  backend?: string;
  stack?: string;
  cause?: SerializedError;
  /** The first few errors of an AggregateError (connection attempts to several addresses). */
  errors?: SerializedError[];
}

const MAX_CAUSES = 5;
const MAX_AGGREGATED = 5;
const MAX_MESSAGE = 2_000;
const MAX_STACK = 4_000;

function read(value: object, key: string): unknown {
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    return undefined; // a getter that throws
  }
}

function text(value: unknown, limit: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.length > limit ? `${value.slice(0, limit)}…` : value;
}

function typeName(value: object): string {
  const name = read(value, 'name');
  if (typeof name === 'string' && name.length > 0 && name !== 'Error') return name.slice(0, 100);
  try {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof ctor === 'string' && ctor.length > 0) return ctor.slice(0, 100);
  } catch {
    // fall through
  }
  return 'Error';
}

function serialize(value: unknown, depth: number, seen: Set<object>): SerializedError {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) {
    return { type: typeof value, message: text(String(value), MAX_MESSAGE) ?? '' };
  }
  const err = value as object;
  if (seen.has(err)) return { type: typeName(err), message: '[the same error again]' };
  seen.add(err);
  const out: SerializedError = {
    type: typeName(err),
    message: text(read(err, 'message'), MAX_MESSAGE) ?? '',
  };
  const code = read(err, 'code');
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  const errno = read(err, 'errno');
  if (typeof errno === 'number') out.errno = errno;
  const syscall = text(read(err, 'syscall'), 100);
  if (syscall) out.syscall = syscall;
  const address = text(read(err, 'address'), 200);
  if (address) out.address = address;
  const port = read(err, 'port');
  if (typeof port === 'number') out.port = port;
  const backend = text(read(err, 'backend'), 50);
  if (backend) out.backend = backend;
  const stack = text(read(err, 'stack'), MAX_STACK);
  if (stack) out.stack = stack;
  const errors = read(err, 'errors');
  if (Array.isArray(errors) && errors.length > 0 && depth < MAX_CAUSES) {
    out.errors = errors.slice(0, MAX_AGGREGATED).map((e) => serialize(e, depth + 1, seen));
  }
  const cause = read(err, 'cause');
  if (cause !== undefined && depth < MAX_CAUSES) out.cause = serialize(cause, depth + 1, seen);
  return out;
}

export function serializeError(value: unknown): SerializedError {
  try {
    return serialize(value, 0, new Set());
  } catch {
    return { type: 'Unserializable', message: 'the error could not be read' };
  }
}
