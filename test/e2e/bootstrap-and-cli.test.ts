import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { tempDir } from '../helpers/backends.js';
import { CLI, runToEnd, startServerProcess, type RunningProcess } from '../helpers/processes.js';

const ADMIN_SECRET = 'bootstrap-admin-secret-0123456789abcdef';

async function token(baseUrl: string, clientId: string, secret: string, scope: string) {
  const res = await fetch(`${baseUrl}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('bootstrap settings and the CLI, against a running server process', () => {
  const dir = tempDir();
  let server: RunningProcess;
  const env = {
    DATA_DIR: dir.path,
    BOOTSTRAP_ADMIN_CLIENT_ID: 'bootstrap-admin',
    BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_SECRET,
    BOOTSTRAP_ADMIN_EMAIL: 'admin@example.com',
    BOOTSTRAP_ADMIN_PASSWORD: 'a long admin password',
    SIGNING_KEY_REFRESH_INTERVAL_S: '1',
  };

  beforeAll(async () => {
    server = await startServerProcess(env);
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('creates the admin client, which gets every admin scope by client credentials', async () => {
    const issued = await token(
      server.baseUrl,
      'bootstrap-admin',
      ADMIN_SECRET,
      'user:read user:write role:manage client:manage key:manage',
    );
    expect(issued.status).toBe(200);
    expect(issued.body).toMatchObject({
      token_type: 'Bearer',
      scope: 'user:read user:write role:manage client:manage key:manage',
    });
    expect((await token(server.baseUrl, 'bootstrap-admin', 'wrong', 'user:read')).body).toEqual({
      error: 'invalid_client',
      error_description: 'client authentication failed',
    });
  });

  it('creates the admin user with the admin role, and does not create anything twice', async () => {
    const user = await runToEnd(CLI, ['users', 'get', 'admin@example.com'], env);
    expect(user.code).toBe(0);
    expect(JSON.parse(user.stdout)).toMatchObject({
      email: 'admin@example.com',
      role: 'admin',
      status: 'active',
    });
    expect(user.stdout).not.toContain('password_hash');
    const list = await runToEnd(CLI, ['users', 'list'], env);
    expect((JSON.parse(list.stdout) as unknown[]).length).toBe(1);
  });

  it('creates a service client whose secret is shown once and works at once on the running server', async () => {
    const created = await runToEnd(
      CLI,
      ['clients', 'create', '--kind', 'service', '--name', 'Reports job', '--scope', 'user:read'],
      env,
    );
    expect(created.code).toBe(0);
    const client = JSON.parse(created.stdout) as {
      client_id: string;
      client_secret: string;
      has_secret: boolean;
    };
    expect(client.has_secret).toBe(true);
    expect(client.client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await token(server.baseUrl, client.client_id, client.client_secret, 'user:read')).status).toBe(
      200,
    );
    expect(
      (await token(server.baseUrl, client.client_id, client.client_secret, 'user:write')).body.error,
    ).toBe('invalid_scope');

    const listed = await runToEnd(CLI, ['clients', 'list'], env);
    expect(listed.stdout).not.toContain(client.client_secret);
    expect(listed.stdout).not.toContain('client_secret_hash');
  });

  it('rejects invalid client metadata with the reason', async () => {
    const bad = await runToEnd(
      CLI,
      ['clients', 'create', '--kind', 'spa', '--name', 'Bad', '--redirect-uri', 'not a uri'],
      env,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('latchkey: redirect_uris must only contain valid uris\n');
  });

  it('rotates signing keys: the running server publishes the new keys, which become current', async () => {
    const before = (await (await fetch(`${server.baseUrl}/oauth/jwks`)).json()) as {
      keys: { kid: string }[];
    };
    const rotated = await runToEnd(CLI, ['keys', 'rotate', '--delay', '0'], env);
    expect(rotated.code).toBe(0);
    const newKids = (JSON.parse(rotated.stdout) as { kid: string; status: string }[]).map((k) => k.kid);
    expect(newKids).toHaveLength(2);

    let published: string[] = [];
    for (let i = 0; i < 50 && !newKids.every((k) => published.includes(k)); i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      published = (
        (await (await fetch(`${server.baseUrl}/oauth/jwks`)).json()) as { keys: { kid: string }[] }
      ).keys.map((k) => k.kid);
    }
    expect(published).toEqual(expect.arrayContaining([...newKids, ...before.keys.map((k) => k.kid)]));

    const keys = JSON.parse((await runToEnd(CLI, ['keys', 'list'], env)).stdout) as {
      kid: string;
      status: string;
    }[];
    expect(
      keys
        .filter((k) => k.status === 'current')
        .map((k) => k.kid)
        .sort(),
    ).toEqual([...newKids].sort());
    expect(keys.filter((k) => k.status === 'retired')).toHaveLength(2);
  });
});
