import { afterAll, describe, expect, it } from '@jest/globals';
import mongoose from 'mongoose';

import { openMongoDurableStore, type MongoDurableStore } from '../../src/store/mongo/index.js';
import { describeWithBackend, MONGODB_URI, uniqueName } from '../helpers/backends.js';
import { describeDurableStoreContract } from './durable-store.contract.js';

/** Drops a database through a connection of its own, as an operator would (the store may be closed). */
async function dropDatabase(uri: string, dbName: string): Promise<void> {
  const conn = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 5000 }).asPromise();
  try {
    await conn.dropDatabase();
  } finally {
    await conn.destroy();
  }
}

describeWithBackend('durable store contract: mongo (MongoDB wire)', 'MONGODB_URI', MONGODB_URI, (uri) => {
  const dbName = uniqueName('latchkey_test');
  describeDurableStoreContract({
    open: () => openMongoDurableStore({ uri, dbName }),
    destroy: () => dropDatabase(uri, dbName),
    atomicDocumentUpdates: (store) => (store as MongoDurableStore).flavor === 'mongodb',
  });

  describe('mongo adapter', () => {
    const migrationDb = uniqueName('latchkey_test');
    afterAll(() => dropDatabase(uri, migrationDb));

    it('answers ping, says it is mongo, and migrates repeatedly and from two stores at once', async () => {
      const [a, b] = await Promise.all([
        openMongoDurableStore({ uri, dbName: migrationDb }),
        openMongoDurableStore({ uri, dbName: migrationDb }),
      ]);
      try {
        expect(a.kind).toBe('mongo');
        await a.ping();
        await Promise.all([a.migrate(), b.migrate()]);
        await a.migrate();
        const user = await a.users.create({ email: 'once@example.org', first_name: 'A', last_name: 'B' });
        await expect(
          b.users.create({ email: 'ONCE@example.org', first_name: 'C', last_name: 'D' }),
        ).rejects.toMatchObject({
          name: 'StoreConflictError',
          field: 'email',
        });
        expect(Object.keys(user).sort()).toEqual(Object.keys((await b.users.findById(user.id))!).sort());
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
      await expect(a.ping()).rejects.toThrow();
    });
  });
});
