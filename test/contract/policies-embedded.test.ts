import { describe } from '@jest/globals';

import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { tempDir } from '../helpers/backends.js';
import { describePolicyContract } from './policies.contract.js';

describe('policy repository contract: embedded (SQLite)', () => {
  const dir = tempDir();
  describePolicyContract({
    open: async () => new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path)),
    destroy: async () => dir.remove(),
  });
});
