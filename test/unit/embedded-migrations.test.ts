import { afterAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

import { EMBEDDED_FILE_NAME, EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import { MIGRATIONS } from '../../src/store/embedded/migrations.js';
import { tempDir } from '../helpers/backends.js';

describe('embedded schema migrations', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('upgrades a file written by an earlier version without losing users, role links or search terms', async () => {
    // A file as version 5 left it, written with that version's schema directly.
    const raw = new DatabaseSync(join(dir.path, EMBEDDED_FILE_NAME));
    raw.exec('PRAGMA foreign_keys = ON');
    for (const step of MIGRATIONS.filter((m) => m.version <= 5)) raw.exec(step.sql);
    raw.exec('PRAGMA user_version = 5');
    const now = new Date().toISOString();
    raw
      .prepare(
        `INSERT INTO users (id, email, email_normalized, first_name, last_name, role, status, metadata, preferences, created_at, updated_at)
         VALUES ('usr_old', 'Old@Example.com', 'old@example.com', 'Olga', 'Oldfield', 'user', 'active', '{"tier":"pro"}', '{}', ?, ?)`,
      )
      .run(now, now);
    for (const term of ['olga', 'oldfield', 'old', 'example', 'com']) {
      raw.prepare('INSERT INTO user_search_terms (term, user_id) VALUES (?, ?)').run(term, 'usr_old');
    }
    raw
      .prepare(
        `INSERT INTO roles (id, name, display_name, permissions, created_at, updated_at) VALUES ('rol_1', 'editor', 'Editor', '[]', ?, ?)`,
      )
      .run(now, now);
    raw
      .prepare(`INSERT INTO user_roles (user_id, role_id, created_at) VALUES ('usr_old', 'rol_1', ?)`)
      .run(now);
    raw.close();

    const db = EmbeddedDatabase.open(dir.path);
    expect(db.schemaVersion).toBe(MIGRATIONS.at(-1)!.version);
    const store = new EmbeddedDurableStore(db);
    try {
      const user = await store.users.findById('usr_old');
      expect(user).toMatchObject({ email: 'Old@Example.com', first_name: 'Olga', metadata: { tier: 'pro' } });
      expect((await store.users.list({ search: 'oldf', limit: 10 })).map((u) => u.id)).toEqual(['usr_old']);
      expect((await store.roles.listForUser('usr_old')).map((r) => r.name)).toEqual(['editor']);
      // Writes after the upgrade keep the new index and the cascades working.
      await store.users.update('usr_old', { last_name: 'Newman' });
      expect((await store.users.list({ search: 'newm', limit: 10 })).map((u) => u.id)).toEqual(['usr_old']);
      expect(await store.users.list({ search: 'oldf', limit: 10 })).toEqual([]);
      await store.users.remove('usr_old');
      expect(await store.roles.countUsers('rol_1')).toBe(0);
    } finally {
      await store.close();
    }
  });
});
