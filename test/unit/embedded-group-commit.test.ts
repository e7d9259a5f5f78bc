import { afterAll, afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

import { EMBEDDED_FILE_NAME, EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { tempDir } from '../helpers/backends.js';

/**
 * Group commit (EmbeddedDatabase.runGrouped): writes of one event-loop turn share a transaction;
 * each promise settles when its write is committed. "Committed" is checked from a second
 * connection to the same file, which sees only committed data.
 */
describe('embedded database group commit', () => {
  const dirs: { remove(): void }[] = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  const open = () => {
    const dir = tempDir();
    dirs.push(dir);
    const db = EmbeddedDatabase.open(dir.path).retain();
    db.run('CREATE TABLE scratch (n INTEGER PRIMARY KEY, note TEXT)');
    const other = new DatabaseSync(join(dir.path, EMBEDDED_FILE_NAME), { readOnly: true });
    const committed = () =>
      (other.prepare('SELECT n FROM scratch ORDER BY n').all() as { n: number }[]).map((r) => r.n);
    return { db, other, committed };
  };
  let db: EmbeddedDatabase;
  let other: DatabaseSync;
  let committed: () => number[];
  beforeEach(() => {
    ({ db, other, committed } = open());
  });
  afterEach(async () => {
    other.close();
    await db.release(); // a no-op for a test that already closed it
  });

  it('commits the writes of one turn together, settling each once it is committed, and lets reads see them before', async () => {
    const writes = [1, 2, 3].map((n) => db.runGrouped('INSERT INTO scratch (n) VALUES (?)', n));
    // Same connection: visible at once. Another connection: not yet (one open transaction).
    expect(db.all('SELECT n FROM scratch ORDER BY n')).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(committed()).toEqual([]);
    await expect(Promise.all(writes)).resolves.toEqual([{ changes: 1 }, { changes: 1 }, { changes: 1 }]);
    expect(committed()).toEqual([1, 2, 3]);
    // The next turn's writes open a new transaction.
    await db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 4);
    expect(committed()).toEqual([1, 2, 3, 4]);
  });

  it('rejects only the write that failed; the rest of its group is committed', async () => {
    const ok = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 10);
    const duplicate = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 10);
    const after = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 11);
    await expect(duplicate).rejects.toThrow(/UNIQUE constraint failed/);
    await expect(ok).resolves.toEqual({ changes: 1 });
    await expect(after).resolves.toEqual({ changes: 1 });
    expect(committed()).toEqual([10, 11]);
  });

  it('commits an open group before any other write, transaction or checkpoint, keeping their semantics', async () => {
    const grouped = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 20);
    db.run('INSERT INTO scratch (n) VALUES (?)', 21);
    // The plain write committed on return, and the grouped one with it (before it).
    expect(committed()).toEqual([20, 21]);
    await expect(grouped).resolves.toEqual({ changes: 1 });

    const second = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 22);
    expect(() =>
      db.transaction(() => {
        db.run('INSERT INTO scratch (n) VALUES (?)', 23);
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    // The transaction rolled back its own row only.
    expect(committed()).toEqual([20, 21, 22]);
    await expect(second).resolves.toEqual({ changes: 1 });

    const third = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 24);
    expect(db.checkpoint()?.busy).toBe(0);
    expect(committed()).toEqual([20, 21, 22, 24]);
    await third;
  });

  it('inside a transaction, a grouped write is part of that transaction', async () => {
    let inside: Promise<{ changes: number }> | undefined;
    expect(() =>
      db.transaction(() => {
        inside = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 40);
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    await expect(inside).resolves.toEqual({ changes: 1 });
    expect(committed()).toEqual([]);
    db.transaction(() => {
      inside = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 41);
    });
    expect(committed()).toEqual([41]);
  });

  it('commits an open group on close', async () => {
    const pending = db.runGrouped('INSERT INTO scratch (n) VALUES (?)', 30);
    await db.release();
    await expect(pending).resolves.toEqual({ changes: 1 });
    expect(committed()).toEqual([30]);
  });
});
