import { describe } from '@jest/globals';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';

import { EmbeddedArtifactStore } from '../../src/store/embedded/artifact-store.js';
import { EmbeddedCounterStore } from '../../src/store/embedded/counter-store.js';
import { EMBEDDED_FILE_NAME, EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { tempDir } from '../helpers/backends.js';
import { describeShortLivedContract } from './artifact-store.contract.js';

describe('artifact and counter store contract: embedded (SQLite)', () => {
  const dir = tempDir();
  let counters: EmbeddedCounterStore | undefined;
  describeShortLivedContract({
    open: async () => {
      const db = EmbeddedDatabase.open(dir.path);
      counters = new EmbeddedCounterStore(db);
      return { artifacts: new EmbeddedArtifactStore(db), counters };
    },
    entriesWithoutExpiry: async () => {
      // Read the file through a separate connection, as an operator would.
      const raw = new DatabaseSync(join(dir.path, EMBEDDED_FILE_NAME), { readOnly: true });
      try {
        const rows = raw
          .prepare(
            `SELECT 'artifact:' || model || ':' || id AS k FROM oidc_artifacts WHERE expires_at IS NULL OR expires_at <= 0
             UNION ALL SELECT 'counter:' || key FROM counters WHERE expires_at IS NULL OR expires_at <= 0
             UNION ALL SELECT 'distinct:' || key FROM distinct_sets WHERE expires_at IS NULL OR expires_at <= 0
             UNION ALL SELECT DISTINCT 'member of:' || key FROM distinct_members
               WHERE key NOT IN (SELECT key FROM distinct_sets)`,
          )
          .all() as { k: string }[];
        return rows.map((r) => r.k);
      } finally {
        raw.close();
      }
    },
    destroy: async () => {
      await counters?.close();
      dir.remove();
    },
  });
});
