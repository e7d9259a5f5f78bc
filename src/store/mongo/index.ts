/** The mongo adapter's public entry: open a durable store on a MongoDB URI. */
import {
  detectFlavor,
  openConnection,
  supportsTransactions,
  type MongoConnectionOptions,
} from './connection.js';
import { MongoDurableStore } from './durable-store.js';

export type { MongoConnectionOptions, ServerFlavor } from './connection.js';
export type { MongoDurableStore } from './durable-store.js';

/**
 * Connects (to the database named in the URI, `options.dbName` when given, or `latchkey`) and
 * resolves once the server answers; rejects with StoreUnavailableError otherwise. Indexes are not
 * created here: run migrate().
 */
export async function openMongoDurableStore(options: MongoConnectionOptions): Promise<MongoDurableStore> {
  const conn = await openConnection(options);
  const flavor = await detectFlavor(conn);
  return new MongoDurableStore(conn, flavor, await supportsTransactions(conn, flavor));
}
