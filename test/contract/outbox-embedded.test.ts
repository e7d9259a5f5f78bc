import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { tempDir } from '../helpers/backends.js';
import { ROOT } from '../helpers/processes.js';
import { describeOutboxContract } from './outbox.contract.js';

describe('outbox contract: embedded (SQLite)', () => {
  const dir = tempDir();
  describeOutboxContract({
    // Each store opens its own connection to the file, as two processes would.
    open: async () => new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path)),
    destroy: async () => dir.remove(),
  });
});

/**
 * A claimer in a process of its own (the compiled store from dist/, its own connection to the file):
 * claims two at a time, yielding between claims, until nothing is due.
 */
const CLAIMER = `
const [dataDir, owner, at, storeUrl, databaseUrl] = process.argv.slice(2);
const { EmbeddedDurableStore } = await import(storeUrl);
const { EmbeddedDatabase } = await import(databaseUrl);
const { existsSync, writeFileSync } = await import('node:fs');
const { join } = await import('node:path');
const store = new EmbeddedDurableStore(EmbeddedDatabase.open(dataDir));
// Start together: each says it is ready and waits for the other, so the claims overlap.
writeFileSync(join(dataDir, 'ready-' + owner), '');
const rival = owner === 'proc-a' ? 'proc-b' : 'proc-a';
const giveUp = Date.now() + 10000; // a rival that never starts: claim alone rather than hang
while (!existsSync(join(dataDir, 'ready-' + rival)) && Date.now() < giveUp) {
  await new Promise((r) => setTimeout(r, 5));
}
const ids = [];
for (;;) {
  const batch = await store.outbox.claimDue(new Date(at), 2, 600000, owner);
  if (batch.length === 0) break;
  ids.push(...batch.map((d) => d.id));
  await new Promise((r) => setImmediate(r));
}
await store.close();
process.stdout.write(JSON.stringify(ids));
`;

function runClaimer(script: string, dataDir: string, owner: string, at: Date): Promise<string[]> {
  const dist = (path: string) => pathToFileURL(join(ROOT, 'dist', path)).href;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        script,
        dataDir,
        owner,
        at.toISOString(),
        dist('store/embedded/durable-store.js'),
        dist('store/embedded/database.js'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as string[])
        : reject(new Error(`claimer ${owner} exited ${code}: ${err}`)),
    );
  });
}

describe('outbox: embedded claims from two processes', () => {
  it('gives each due delivery to exactly one of two processes claiming from the same file', async () => {
    const dir = tempDir();
    const store = new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path));
    try {
      const at = new Date('2019-06-01T00:00:00.000Z');
      const event = {
        id: 'evt_race',
        type: 'ping',
        timestamp: at,
        actor: { type: 'system' as const, id: 't' },
        data: {},
      };
      await store.outbox.append([event]);
      const made = await store.outbox.enqueue(
        Array.from({ length: 200 }, (_, i) => ({ event_id: event.id, endpoint_id: `wh_${i}`, now: at })),
      );
      const script = join(dir.path, 'claimer.mjs');
      writeFileSync(script, CLAIMER);
      const [a, b] = await Promise.all([
        runClaimer(script, dir.path, 'proc-a', at),
        runClaimer(script, dir.path, 'proc-b', at),
      ]);
      const all = [...a, ...b];
      expect(new Set(all).size).toBe(all.length);
      expect([...all].sort()).toEqual(made.map((d) => d.id).sort());
      const owners = new Map([
        ...a.map((id) => [id, 'proc-a'] as const),
        ...b.map((id) => [id, 'proc-b'] as const),
      ]);
      for (const d of made) {
        const now = (await store.outbox.get(d.id))!;
        expect(now.attempts).toBe(1);
        expect(now.lease_owner).toBe(owners.get(d.id));
      }
    } finally {
      await store.close();
      dir.remove();
    }
  });
});
