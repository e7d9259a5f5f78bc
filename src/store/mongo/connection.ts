/**
 * Opening and checking the connection the mongo adapter runs on: one mongoose connection per store
 * (never mongoose's global one), which database it uses, and failing fast when the server is away.
 */
import mongoose, { type Connection } from 'mongoose';

import { StoreUnavailableError } from '../errors.js';

export interface MongoConnectionOptions {
  uri: string;
  /** Overrides the database named in the URI. */
  dbName?: string;
  /** How long to look for a server before giving up (default: operationTimeoutMs, else 5000 ms). */
  serverSelectionTimeoutMS?: number;
  /**
   * The longest a single operation should take: the server stops it then (maxTimeMS), a socket
   * silent for twice as long is dropped, and finding or connecting to a server gets as long.
   */
  operationTimeoutMs?: number;
}

export const DEFAULT_DATABASE = 'latchkey';
const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000;

/**
 * The database a connection string names, if any. Parsed by hand because the driver quietly falls
 * back to `test` when none is named, and `new URL` cannot read multi-host seed lists. The spec
 * requires `/`, `?` and `@` in credentials and socket paths to be percent-encoded, so the first
 * `/` after the scheme ends the host list.
 */
export function databaseNameOf(uri: string): string | undefined {
  const scheme = /^mongodb(?:\+srv)?:\/\//i.exec(uri);
  if (!scheme) return undefined;
  const rest = uri.slice(scheme[0].length);
  const end = rest.search(/[/?]/);
  if (end < 0 || rest[end] !== '/') return undefined;
  const path = rest.slice(end + 1).split('?')[0] ?? '';
  if (!path) return undefined;
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function reason(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

export async function pingConnection(conn: Connection): Promise<void> {
  const db = conn.db;
  if (!db) throw new StoreUnavailableError('the MongoDB connection is not open');
  try {
    await db.command({ ping: 1 });
  } catch (err) {
    throw new StoreUnavailableError(`MongoDB did not answer a ping: ${reason(err)}`, { cause: err });
  }
}

/**
 * Which server answers: MongoDB itself, or FerretDB 1.x (a MongoDB-wire database that names
 * its own version in buildInfo). FerretDB 1.x applies every update as read-then-write-back, so two concurrent
 * updates of one document can lose one of them; only inserts (against unique indexes) and deletes
 * are atomic there. The adapter's exactness-critical operations rely on inserts only.
 */
export type ServerFlavor = 'mongodb' | 'ferretdb';

/**
 * Whether the deployment runs multi-document transactions: a replica set member or mongos of
 * MongoDB. A standalone server has none, and FerretDB 1.x has none at all.
 */
export async function supportsTransactions(conn: Connection, flavor: ServerFlavor): Promise<boolean> {
  if (flavor !== 'mongodb') return false;
  const hello = (await conn.db!.admin().command({ hello: 1 })) as { setName?: unknown; msg?: unknown };
  return typeof hello.setName === 'string' || hello.msg === 'isdbgrid';
}

export async function detectFlavor(conn: Connection): Promise<ServerFlavor> {
  const info = (await conn.db!.admin().command({ buildInfo: 1 })) as { ferretdbVersion?: unknown };
  return info.ferretdbVersion !== undefined ? 'ferretdb' : 'mongodb';
}

// Inside Connection.transaction(), every model operation joins the transaction's session without
// being handed it (AsyncLocalStorage), so repositories need no session parameter.
mongoose.set('transactionAsyncLocalStorage', true);

/** Connects and checks the server answers; rejects with StoreUnavailableError otherwise. */
export async function openConnection(options: MongoConnectionOptions): Promise<Connection> {
  let conn: Connection | undefined;
  try {
    const operation = options.operationTimeoutMs;
    conn = mongoose.createConnection(options.uri, {
      dbName: options.dbName ?? databaseNameOf(options.uri) ?? DEFAULT_DATABASE,
      serverSelectionTimeoutMS:
        options.serverSelectionTimeoutMS ?? operation ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
      ...(operation ? { connectTimeoutMS: operation, socketTimeoutMS: operation * 2 } : {}),
      autoIndex: false,
      autoCreate: false,
      // Fail at once when disconnected instead of queueing operations for bufferTimeoutMS.
      bufferCommands: false,
    });
    await conn.asPromise();
    // Every query carries a server-side time limit: work a caller has given up on stops there too.
    if (options.operationTimeoutMs) conn.set('maxTimeMS', options.operationTimeoutMs);
    await pingConnection(conn);
    return conn;
  } catch (err) {
    await conn?.destroy().catch(() => undefined);
    if (err instanceof StoreUnavailableError) throw err;
    // The message names hosts, never the URI itself, which may hold credentials.
    throw new StoreUnavailableError(`cannot reach MongoDB: ${reason(err)}`, { cause: err });
  }
}
