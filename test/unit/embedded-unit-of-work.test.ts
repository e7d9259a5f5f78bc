/**
 * Units of work on the embedded file (EmbeddedDatabase.unitOfWork): a change and its events commit
 * together or not at all, and another request's operation that runs inside the open transaction
 * is answered only once the unit has ended (with the unit's error when it rolled back), so no
 * acknowledged write is ever undone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createStores } from '../../src/store/create-stores.js';
import type { NewUser, Stores } from '../../src/store/ports.js';

let stores: Stores;
let dir: string;
let n = 0;
const user = (): NewUser => ({
  email: `unit-${++n}-${Date.now()}@example.com`,
  first_name: 'U',
  last_name: 'W',
  role: 'user',
  email_verified: false,
  metadata: {},
  password_hash: null,
});
const event = (id: string) => ({
  id,
  type: 'user.created',
  timestamp: new Date(),
  actor: { type: 'system' as const, id: 'test' },
  data: {},
});
const ticks = async (count: number) => {
  for (let i = 0; i < count; i += 1) await Promise.resolve();
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-unit-'));
  // No MongoDB or Redis URL: everything on the embedded file, guarded as the server does.
  stores = await createStores({
    dataDir: dir,
    embeddedSweepIntervalS: 3600,
    nodeEnv: 'test',
    mongodbUri: undefined,
    redisUrl: undefined,
    redisKeyPrefix: 'latchkey:',
  });
});

afterAll(async () => {
  await stores?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('embedded units of work', () => {
  it('rolls back the change when its event cannot be recorded', async () => {
    await stores.durable.outbox.append([event('evt_unit_taken')]);
    const input = user();
    await expect(
      stores.durable.atomically(async () => {
        await stores.durable.users.create(input);
        await stores.durable.outbox.append([event('evt_unit_taken')]);
      }),
    ).rejects.toThrow();
    expect(await stores.durable.users.findByEmail(input.email)).toBeNull();
  });

  it('answers another request that wrote inside the unit only after the unit commits', async () => {
    const mine = user();
    const theirs = user();
    const order: string[] = [];
    // Started before the unit, its write runs on the first microtask: inside the open transaction.
    const foreign = Promise.resolve()
      .then(() => stores.durable.users.create(theirs))
      .then((created) => {
        order.push('foreign answered');
        return created;
      });
    const unit = stores.durable.atomically(async () => {
      await stores.durable.users.create(mine);
      await ticks(5);
      order.push('unit done');
    });
    await Promise.all([unit, foreign]);
    expect(order).toEqual(['unit done', 'foreign answered']);
    expect(await stores.durable.users.findByEmail(theirs.email)).not.toBeNull();
    expect(await stores.durable.users.findByEmail(mine.email)).not.toBeNull();
  });

  it('fails the other request with the unit when the unit rolls back, so nothing acknowledged is undone', async () => {
    const mine = user();
    const theirs = user();
    const foreign = Promise.resolve().then(() => stores.durable.users.create(theirs));
    const unit = stores.durable.atomically(async () => {
      await stores.durable.users.create(mine);
      await ticks(5);
      throw new Error('boom');
    });
    await expect(unit).rejects.toThrow('boom');
    await expect(foreign).rejects.toThrow('undone with a concurrent transaction');
    expect(await stores.durable.users.findByEmail(theirs.email)).toBeNull();
    expect(await stores.durable.users.findByEmail(mine.email)).toBeNull();
  });

  it('keeps what others wrote, and answers their reads, when a unit fails without writing', async () => {
    const taken = user();
    await stores.durable.users.create(taken);
    const theirs = user();
    const foreignWrite = Promise.resolve().then(() => stores.durable.users.create(theirs));
    const foreignRead = Promise.resolve().then(() => stores.durable.users.findByEmail(taken.email));
    const unit = stores.durable.atomically(async () => {
      await ticks(3);
      await stores.durable.users.create({ ...user(), email: taken.email }); // refused: taken
    });
    await expect(unit).rejects.toThrow();
    expect((await foreignWrite).email).toBe(theirs.email);
    expect((await foreignRead)?.email).toBe(taken.email);
    expect(await stores.durable.users.findByEmail(theirs.email)).not.toBeNull();
  });

  it('answers reads that ran inside a unit that rolled back', async () => {
    const taken = user();
    await stores.durable.users.create(taken);
    const read = Promise.resolve().then(() => stores.durable.users.findByEmail(taken.email));
    const unit = stores.durable.atomically(async () => {
      await stores.durable.users.create(user());
      await ticks(3);
      throw new Error('boom');
    });
    await expect(unit).rejects.toThrow('boom');
    expect((await read)?.email).toBe(taken.email);
  });

  it('runs units one after another', async () => {
    const order: string[] = [];
    const a = stores.durable.atomically(async () => {
      order.push('a start');
      await ticks(5);
      order.push('a end');
    });
    const b = stores.durable.atomically(async () => {
      order.push('b start');
      await ticks(1);
      order.push('b end');
    });
    await Promise.all([a, b]);
    expect(order).toEqual(['a start', 'a end', 'b start', 'b end']);
  });
});
