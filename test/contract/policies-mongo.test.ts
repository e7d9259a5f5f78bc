import mongoose from 'mongoose';

import { openMongoDurableStore } from '../../src/store/mongo/index.js';
import { describeWithBackend, MONGODB_URI, uniqueName } from '../helpers/backends.js';
import { describePolicyContract } from './policies.contract.js';

describeWithBackend('policy repository contract: mongo (MongoDB wire)', 'MONGODB_URI', MONGODB_URI, (uri) => {
  const dbName = uniqueName('latchkey_test');
  describePolicyContract({
    open: async () => {
      const store = await openMongoDurableStore({ uri, dbName });
      await store.migrate();
      return store;
    },
    destroy: async () => {
      const conn = await mongoose
        .createConnection(uri, { dbName, serverSelectionTimeoutMS: 5000 })
        .asPromise();
      try {
        await conn.dropDatabase();
      } finally {
        await conn.destroy();
      }
    },
  });
});
