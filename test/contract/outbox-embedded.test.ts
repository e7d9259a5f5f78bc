import { describe } from '@jest/globals';

import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { tempDir } from '../helpers/backends.js';
import { describeOutboxContract } from './outbox.contract.js';

describe('outbox contract: embedded (SQLite)', () => {
  const dir = tempDir();
  describeOutboxContract({
    // Each store opens its own connection to the file, as two processes would.
    open: async () => new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path)),
    destroy: async () => dir.remove(),
  });
});
