/**
 * API-key verification benchmark: POST /api/v1/auth/verify-key as a gateway calls it in front of
 * every request, consuming one unit of quota each time (and, separately, checking only). The key's
 * owner is on a plan whose rate and quota never run out, so every request does the full work: key
 * lookup (cached), owner check, the plan's hourly and per-second counters, and the atomic quota
 * step. Usage: npm run bench -- verify-key [--duration S] [--redis URL] [--mongo URI]
 */
import { parseArgs } from 'node:util';

import { adminToken, machine, measure, startServer, table, type Measurement } from './lib.ts';

async function call(url: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export async function runVerifyKeyBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      redis: { type: 'string' },
      mongo: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const env: Record<string, string> = {};
  if (values.redis) env.REDIS_URL = values.redis;
  if (values.mongo) env.MONGODB_URI = values.mongo;
  const server = await startServer(env);
  try {
    const token = await adminToken(server.url, 'user:read user:write role:manage key:manage plan:manage');
    await call(server.url, token, 'POST', '/v2/plans', {
      name: 'bench-unmetered',
      requests_per_hour: 1_000_000_000,
      burst: 10_000_000,
      quota: 1_000_000_000,
      quota_period: 'month',
      credits: 0,
    });
    const role = await call(server.url, token, 'POST', '/v2/roles', {
      name: 'bench-chat',
      permissions: ['chat:write'],
    });
    const user = await call(server.url, token, 'POST', '/v2/users', {
      email: 'bench-keys@example.com',
      first_name: 'Bench',
      last_name: 'Keys',
      role: role.name,
    });
    await call(server.url, token, 'PUT', `/v2/users/${user.id}/plan`, { plan: 'bench-unmetered' });
    const created = await call(server.url, token, 'POST', `/v2/users/${user.id}/api-keys`, {
      name: 'bench',
      allowed_ips: ['127.0.0.0/8', '::1'],
    });
    const key = String(created.key);
    const request = (consume: boolean) => ({
      url: `${server.url}/api/v1/auth/verify-key`,
      method: 'POST' as const,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ consume }),
    });

    // Warm-up: JIT, caches, connections.
    const warm = await measure('warm-up', { ...request(true), duration: 3, connections: 16 });
    const rows: Measurement[] = [];
    rows.push(
      await measure('verify-key, consuming', {
        ...request(true),
        duration,
        connections: 16,
        offeredRate: 3000,
      }),
    );
    rows.push(await measure('verify-key, consuming', { ...request(true), duration, connections: 16 }));
    rows.push(
      await measure('verify-key, check only (consume=false)', {
        ...request(false),
        duration,
        connections: 16,
      }),
    );
    const rss = await server.rssMiB();

    const left = await call(server.url, token, 'GET', `/v2/users/${user.id}/usage`);
    const consumed = [warm, ...rows.filter((r) => r.name.endsWith('consuming'))].reduce(
      (sum, r) => sum + r.requests - r.errors,
      0,
    );
    const stores = `${values.mongo ? 'mongo' : 'embedded'} + ${values.redis ? 'redis' : 'embedded'} counters`;
    return [
      `### API-key verification (${stores})`,
      '',
      `Machine: ${machine()}. Load generator (autocannon, 16 connections) and server share the machine; the server is one Node process (one core).`,
      '',
      table(rows),
      '',
      `Quota check: ${consumed} consuming verifications (warm-up included) answered 200; the owner's usage shows ${String(
        left.used,
      )} used${Number(left.used) === consumed ? ' (equal: nothing lost or counted twice)' : ' (NOT equal)'}. Server RSS after the run: ${rss} MiB.`,
    ].join('\n');
  } finally {
    await server.stop();
  }
}
