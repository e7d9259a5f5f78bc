/**
 * Forward-auth benchmark: GET /gateway/auth?scope=orders:read with the same JWT access token of an
 * API on every request (after the first, answered from the instance's cache), as nginx auth_request
 * calls it. Floor: 5,000 requests/s per core (requests answered divided by the server's CPU seconds,
 * the server being one process). Beside it, the same with a fresh token per request cycle of 1,000
 * tokens, which are checked (signature, user, client) once each and then cached.
 *
 * Usage: npm run bench -- gateway [--duration S] [--mongo URI] [--redis URL]
 */
import { parseArgs } from 'node:util';

import { adminToken, cpuMs, machine, measure, startServer, table, type Measurement } from './lib.ts';

const API = 'https://orders.bench.example';

async function post(
  url: string,
  token: string,
  path: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

async function jwtFor(url: string, clientId: string, secret: string): Promise<string> {
  const res = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', resource: API }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token || body.access_token.split('.').length !== 3) {
    throw new Error(`no JWT access token: ${JSON.stringify(body)}`);
  }
  return body.access_token;
}

export async function runGatewayBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const server = await startServer({
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
  });
  try {
    const admin = await adminToken(server.url, 'client:manage');
    await post(server.url, admin, '/v2/resources', {
      identifier: API,
      name: 'Orders (bench)',
      scopes: ['orders:read'],
      access_token_format: 'jwt',
      access_token_ttl: 3600,
    });
    const client = await post(server.url, admin, '/v2/clients', {
      kind: 'service',
      client_name: 'gateway bench',
      api_scopes: ['orders:read'],
    });
    const clientId = String(client.client_id);
    const secret = String(client.client_secret);
    const jwt = await jwtFor(server.url, clientId, secret);
    const probe = await fetch(`${server.url}/gateway/auth?scope=orders:read`, {
      headers: { authorization: `Bearer ${jwt}` },
    });
    if (probe.status !== 200 || probe.headers.get('x-client-id') !== clientId) {
      throw new Error(`unexpected forward-auth answer: ${probe.status} ${await probe.text()}`);
    }
    const tokens: string[] = [];
    for (let i = 0; i < 1000; i++) tokens.push(await jwtFor(server.url, clientId, secret));

    const base = { url: server.url, duration, connections: 16 };
    const run = async (name: string, headers: () => Record<string, string>) => {
      const request = {
        method: 'GET' as const,
        path: '/gateway/auth?scope=orders:read',
        setupRequest: (req: object) => ({ ...req, headers: headers() }),
      };
      await measure('warm-up', { ...base, duration: 3, requests: [request] });
      const before = cpuMs(server.child.pid!);
      const measured = await measure(name, { ...base, requests: [request] });
      const cpuSeconds = (cpuMs(server.child.pid!) - before) / 1000;
      return { measured, perCore: Math.round((measured.requests - measured.errors) / cpuSeconds) };
    };
    const cached = await run('GET /gateway/auth, one cached JWT', () => ({ authorization: `Bearer ${jwt}` }));
    let next = 0;
    const rotating = await run('GET /gateway/auth, 1,000 JWTs in rotation', () => ({
      authorization: `Bearer ${tokens[next++ % tokens.length]}`,
    }));
    const perCore = new Map<Measurement, number>([
      [cached.measured, cached.perCore],
      [rotating.measured, rotating.perCore],
    ]);
    const rss = await server.rssMiB();
    return [
      `### Forward auth on ${backend}`,
      '',
      `Machine: ${machine()}. Load generator and server share the machine.`,
      '',
      table([cached.measured, rotating.measured], { 'Per core': (m) => `${perCore.get(m)}/s` }),
      '',
      `Requests per second per core with a cached JWT (answered requests / server CPU seconds): ` +
        `**${cached.perCore.toLocaleString('en')}** (floor 5,000). Server RSS after the run: ${rss} MiB.`,
      '',
    ].join('\n');
  } finally {
    await server.stop();
  }
}
