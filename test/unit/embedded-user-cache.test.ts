import { afterAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

import { EMBEDDED_FILE_NAME, EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { tempDir } from '../helpers/backends.js';

/**
 * The embedded users repository keeps live users it has read by id (introspection and userinfo read
 * one per call). A cached record must never outlive a change: neither one made through the store nor
 * one committed by another process on the same file (seen from the next turn of the event loop: the
 * file's data_version is read once per turn).
 */
describe('embedded user lookups by id', () => {
  const dir = tempDir();
  const db = EmbeddedDatabase.open(dir.path);
  const store = new EmbeddedDurableStore(db);
  afterAll(async () => {
    await store.close();
    dir.remove();
  });
  const newUser = (email: string) =>
    store.users.create({ email, first_name: 'Cache', last_name: 'Test', password_hash: null });

  it('answers a change made through the store at once: update, soft delete, restore, erase', async () => {
    const user = await newUser('cache-1@example.com');
    expect((await store.users.findById(user.id))?.status).toBe('active');
    await store.users.update(user.id, { status: 'suspended' });
    expect((await store.users.findById(user.id))?.status).toBe('suspended');
    await store.users.recordLogin(user.id, new Date('2026-01-02T03:04:05Z'));
    expect((await store.users.findById(user.id))?.login_count).toBe(1);
    await store.users.update(user.id, { deleted_at: new Date() });
    expect(await store.users.findById(user.id)).toBeNull();
    expect((await store.users.findById(user.id, 'include'))?.id).toBe(user.id);
    await store.users.update(user.id, { deleted_at: null }, 'include');
    expect((await store.users.findById(user.id))?.id).toBe(user.id);
    await store.users.remove(user.id);
    expect(await store.users.findById(user.id)).toBeNull();
  });

  it('answers a change committed by another connection to the file (a CLI command, another process)', async () => {
    const user = await newUser('cache-2@example.com');
    expect((await store.users.findById(user.id))?.status).toBe('active');
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
    const other = new DatabaseSync(join(dir.path, EMBEDDED_FILE_NAME));
    try {
      other.prepare("UPDATE users SET status = 'suspended' WHERE id = ?").run(user.id);
      await nextTurn();
      expect((await store.users.findById(user.id))?.status).toBe('suspended');
      other.prepare('UPDATE users SET deleted_at = ? WHERE id = ?').run(new Date().toISOString(), user.id);
      await nextTurn();
      expect(await store.users.findById(user.id)).toBeNull();
    } finally {
      other.close();
    }
  });

  it('hands out records no caller can alter for the next one', async () => {
    const user = await newUser('cache-3@example.com');
    const first = (await store.users.findById(user.id))!;
    expect(() => {
      (first as { status: string }).status = 'deleted';
    }).toThrow(TypeError);
    expect(() => {
      (first.metadata as Record<string, unknown>).injected = true;
    }).toThrow(TypeError);
    expect((await store.users.findById(user.id))?.status).toBe('active');
  });
});
