import { afterAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { EMBEDDED_FILE_NAME } from '../../src/store/embedded/database.js';
import { tempDir } from '../helpers/backends.js';
import { CLI, runToEnd, SERVER, startServerProcess } from '../helpers/processes.js';

describe('the server process', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('stops at start-up with one line naming a malformed setting', async () => {
    const result = await runToEnd(SERVER, [], { PORT: 'abc', DATA_DIR: dir.path });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'latchkey: Invalid setting PORT (got "abc"): expected an integer from 1 to 65535.\n',
    );
    expect(result.stdout).toBe('');
  });

  it('refuses to start in production with unsafe settings and says what to set', async () => {
    const result = await runToEnd(SERVER, [], { NODE_ENV: 'production', DATA_DIR: dir.path });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      'latchkey: refusing to start: ISSUER must be an https:// URL in production (got http://localhost:3000); behind a TLS-terminating proxy set ALLOW_HTTP_ISSUER=true and TRUST_PROXY=true.',
      'latchkey: refusing to start: COOKIE_KEYS must be set in production (comma-separated secrets of at least 32 characters).',
      'latchkey: refusing to start: KEY_ENCRYPTION_SECRET must be set in production (a secret of at least 32 characters).',
    ]);
  });

  it('starts on the embedded store alone, serves readiness, writes JSON logs and stops cleanly on SIGTERM', async () => {
    const server = await startServerProcess({ DATA_DIR: dir.path });
    const ready = await fetch(`${server.baseUrl}/health/ready`);
    expect(ready.status).toBe(200);
    expect(ready.headers.get('x-request-id')).toMatch(/^req_/);
    expect(existsSync(join(dir.path, EMBEDDED_FILE_NAME))).toBe(true);

    expect(await server.stop('SIGTERM')).toBe(0);
    const lines = server
      .output()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; durable_store?: string });
    const listening = lines.find((l) => l.msg === 'listening');
    expect(listening).toMatchObject({ durable_store: 'embedded', artifact_store: 'embedded' });
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'shutdown complete']));
  });

  it('keeps data written through the embedded store across process restarts', async () => {
    const env = { DATA_DIR: dir.path };
    const created = await runToEnd(
      CLI,
      ['users', 'create', '--email', 'Kept@Example.com', '--first-name', 'Kept', '--last-name', 'User'],
      env,
    );
    expect(created.code).toBe(0);
    const user = JSON.parse(created.stdout) as { id: string; email: string };
    expect(user.email).toBe('Kept@Example.com');

    const server = await startServerProcess(env);
    expect(await server.stop('SIGINT')).toBe(0);

    const fetched = await runToEnd(CLI, ['users', 'get', 'kept@example.com'], env);
    expect(fetched.code).toBe(0);
    expect(JSON.parse(fetched.stdout)).toEqual(user);
  });
});
