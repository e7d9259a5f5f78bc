/**
 * API-key verification benchmark: POST /api/v1/auth/verify-key as a gateway calls it in front of
 * every request, consuming one unit of quota each time (and, separately, checking only). The key's
 * owner is on a plan whose rate and quota never run out, so every request does the full work: key
 * lookup (cached), owner check, the plan's hourly and per-second counters, and the atomic quota
 * step. Usage: npm run bench -- verify-key [--duration S] [--redis URL] [--mongo URI]
 */
import { parseArgs } from 'node:util';

import { adminToken, cpuMs, machine, measure, startServer, table, type Measurement } from './lib.ts';

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
    const warm = await measure('warm-up', { ...request(true), duration: 5, connections: 8 });
    // Closed loops (each connection sends its next request when the answer arrives). autocannon's
    // fixed-rate mode releases requests in bursts, which measures its bursts more than the server.
    const rows: (Measurement & { cpuPerRequest: number })[] = [];
    const pid = server.child.pid!;
    const phases: [string, boolean, number][] = [
      ['verify-key, consuming, 4 connections', true, 4],
      ['verify-key, consuming, 16 connections', true, 16],
      ['verify-key, check only (consume=false), 4 connections', false, 4],
    ];
    for (const [name, consume, connections] of phases) {
      const before = cpuMs(pid);
      const row = await measure(name, { ...request(consume), duration, connections });
      rows.push({ ...row, cpuPerRequest: (cpuMs(pid) - before) / Math.max(1, row.requests) });
    }
    const rss = await server.rssMiB();

    const left = await call(server.url, token, 'GET', `/v2/users/${user.id}/usage`);
    const consuming = [warm, ...rows.filter((r) => r.name.includes(', consuming'))];
    const consumed = consuming.reduce((sum, r) => sum + r.requests - r.errors, 0);
    // A phase ends with up to one request per connection in flight: answered (and counted by the
    // server) after autocannon stopped counting.
    const inFlight = 8 + 4 + 16; // warm-up, then the two consuming phases
    const used = Number(left.used);
    const exact = used >= consumed && used - consumed <= inFlight;
    const stores = `${values.mongo ? 'mongo' : 'embedded'} + ${values.redis ? 'redis' : 'embedded'} counters`;
    return [
      `### API-key verification (${stores})`,
      '',
      `Machine: ${machine()}. Load generator (autocannon) and server share the machine; the server is one Node process (its JavaScript runs on one core), Redis a third process.`,
      '',
      table(rows, {
        'Server CPU/request (ms)': (r) => r.cpuPerRequest.toFixed(3),
        'Per core (1000 / CPU ms)': (r) => String(Math.round(1000 / Math.max(0.001, r.cpuPerRequest))),
      }),
      '',
      `Quota check: ${consumed} consuming verifications answered 200 (warm-up included) and the owner's usage shows ${used} used: ` +
        (exact
          ? `the ${used - consumed} more are requests still in flight when a phase stopped (at most ${inFlight}), so nothing was lost or counted twice.`
          : 'MISMATCH beyond the requests in flight.') +
        ` Server RSS after the run: ${rss} MiB.`,
    ].join('\n');
  } finally {
    await server.stop();
  }
}
