import mongoose from 'mongoose';

import { openMongoDurableStore } from '../../src/store/mongo/index.js';
import { describeWithBackend, MONGODB_URI, uniqueName } from '../helpers/backends.js';
import { describeOutboxContract } from './outbox.contract.js';

/** Drops a database through a connection of its own, as an operator would (the stores may be closed). */
async function dropDatabase(uri: string, dbName: string): Promise<void> {
  const conn = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 5000 }).asPromise();
  try {
    await conn.dropDatabase();
  } finally {
    await conn.destroy();
  }
}

describeWithBackend('outbox contract: mongo (MongoDB wire)', 'MONGODB_URI', MONGODB_URI, (uri) => {
  const dbName = uniqueName('latchkey_test');
  describeOutboxContract({
    // Each store has its own connection: two instances racing for the same deliveries.
    open: () => openMongoDurableStore({ uri, dbName }),
    destroy: () => dropDatabase(uri, dbName),
  });
});
