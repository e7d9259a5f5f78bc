import { afterAll, describe, expect, it } from '@jest/globals';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';

import { EMBEDDED_FILE_NAME, EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { tempDir } from '../helpers/backends.js';

const walSize = (dir: string) => {
  const wal = join(dir, `${EMBEDDED_FILE_NAME}-wal`);
  return existsSync(wal) ? statSync(wal).size : 0;
};

describe('embedded database checkpoints', () => {
  const dirs: { remove(): void }[] = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  const fresh = () => {
    const dir = tempDir();
    dirs.push(dir);
    return dir.path;
  };

  it('leaves checkpoints to the handle, which copies the WAL back without blocking', async () => {
    const db = EmbeddedDatabase.open(fresh()).retain();
    try {
      expect(db.get('PRAGMA wal_autocheckpoint')).toEqual({ wal_autocheckpoint: 0 });
      expect(db.get('PRAGMA journal_mode')).toEqual({ journal_mode: 'wal' });
      db.run('CREATE TABLE scratch (n INTEGER)');
      for (let n = 0; n < 50; n += 1) db.run('INSERT INTO scratch (n) VALUES (?)', n);
      const result = db.checkpoint();
      expect(result?.busy).toBe(0);
      expect(result?.log).toBeGreaterThanOrEqual(50);
      expect(result?.checkpointed).toBe(result?.log);
    } finally {
      await db.release();
    }
  });

  it('checkpoints a burst of writes on its own, in a worker thread, so the WAL does not keep growing', async () => {
    const dir = fresh();
    const db = EmbeddedDatabase.open(dir).retain();
    const burst = async (from: number) => {
      // One row per commit, letting the event loop turn every 100 as requests would.
      for (let n = from; n < from + 2500; n += 1) {
        db.run('INSERT INTO scratch (n) VALUES (?)', n);
        if (n % 100 === 99) await turn();
      }
    };
    try {
      db.run('CREATE TABLE scratch (n INTEGER)');
      await burst(0);
      // Past 2,000 writes a checkpoint started by itself, and with that many writes, off this thread.
      expect(db.checkpointsInBackground).toBe(true);
      await db.backgroundCheckpointSettled();
      const firstBurst = walSize(dir);
      expect(firstBurst).toBeGreaterThan(2500 * 4096);

      // The checkpoint finished, so the next writes start the WAL over instead of appending.
      await burst(2500);
      await db.backgroundCheckpointSettled();
      expect(walSize(dir)).toBeLessThan(firstBurst * 1.5);
      expect(db.get('SELECT count(*) AS rows FROM scratch')).toEqual({ rows: 5000 });
    } finally {
      await db.release();
    }
    // Closing empties the WAL (TRUNCATE), the worker's connection notwithstanding.
    expect(walSize(dir)).toBe(0);
  });

  it('empties the WAL on close while another handle on the same file keeps working', async () => {
    const dir = fresh();
    const first = EmbeddedDatabase.open(dir).retain();
    const second = EmbeddedDatabase.open(dir).retain();
    try {
      first.run('CREATE TABLE scratch (n INTEGER)');
      second.transaction(() => {
        for (let n = 0; n < 100; n += 1) second.run('INSERT INTO scratch (n) VALUES (?)', n);
      });
      // Both handles checkpoint the same WAL; whichever comes second finds nothing left or reports busy.
      expect(first.checkpoint()?.busy).toBe(0);
      expect(second.checkpoint()?.busy).toBe(0);
      first.run('INSERT INTO scratch (n) VALUES (?)', 100);
      expect(walSize(dir)).toBeGreaterThan(0);

      await first.release();
      expect(walSize(dir)).toBe(0);
      expect(second.get('SELECT count(*) AS rows FROM scratch')).toEqual({ rows: 101 });
      second.run('INSERT INTO scratch (n) VALUES (?)', 101);
      expect(second.get('SELECT max(n) AS top FROM scratch')).toEqual({ top: 101 });
    } finally {
      await first.release();
      await second.release();
    }
  });
});
