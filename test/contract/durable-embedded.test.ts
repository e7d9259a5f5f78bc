import { describe } from '@jest/globals';

import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { tempDir } from '../helpers/backends.js';
import { describeDurableStoreContract } from './durable-store.contract.js';

describe('durable store contract: embedded (SQLite)', () => {
  const dir = tempDir();
  describeDurableStoreContract({
    open: async () => new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path)),
    destroy: async () => dir.remove(),
    atomicDocumentUpdates: () => true,
  });
});
