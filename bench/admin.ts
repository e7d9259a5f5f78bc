/**
 * Management-API benchmark: seeds users through POST /v2/users/bulk (100 per request), then
 * measures get, list, search and create with autocannon, at fixed offered rates (the floors our
 * users asked for) and flat out. Usage: npm run bench -- admin [--users N] [--duration S] [--mongo URI]
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';

import { adminToken, machine, measure, startServer, table, type Measurement } from './lib.ts';

const pick = <T>(list: T[]) => list[randomInt(list.length)]!;

/**
 * Names built from syllables: about 200 first names and 3,000 last names, so a four-letter prefix
 * matches a realistic share of 100k users (the most common real surnames hold about 1%), with a few
 * very common names on top (Smith, Lee, ...) weighted like real data.
 */
const SYLLABLES = [
  'an',
  'bel',
  'cor',
  'da',
  'el',
  'fen',
  'gar',
  'hol',
  'is',
  'jor',
  'kel',
  'lin',
  'mar',
  'nor',
  'ol',
  'per',
  'quin',
  'ros',
  'sel',
  'tam',
  'ul',
  'ven',
  'wil',
  'yor',
  'zan',
];
const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);
const FIRST = Array.from({ length: 200 }, (_, i) => cap(SYLLABLES[i % 25]! + SYLLABLES[(i * 7 + 3) % 25]!));
const LAST_POOL = Array.from({ length: 3000 }, (_, i) =>
  cap(SYLLABLES[i % 25]! + SYLLABLES[Math.floor(i / 25) % 25]! + SYLLABLES[(i * 11) % 25]!.slice(0, 2)),
);
const COMMON = ['Smith', 'Johnson', 'Lee', 'Garcia', 'Brown'];
const lastName = () => (randomInt(100) < 3 ? pick(COMMON) : pick(LAST_POOL));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runAdminBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      users: { type: 'string', default: '100000' },
      duration: { type: 'string', default: '10' },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const total = Number(values.users);
  const duration = Number(values.duration);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const server = await startServer({
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
  });
  try {
    const token = await adminToken(server.url);
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

    // Seed through the bulk endpoint, timing every bulk of 100 as it goes.
    const bulkTimes: number[] = [];
    let seeded = 0;
    let sequence = 0;
    const seedWorker = async () => {
      while (seeded < total) {
        const count = Math.min(100, total - seeded);
        seeded += count;
        const users = Array.from({ length: count }, () => {
          sequence += 1;
          return {
            email: `user${sequence}@bench.example`,
            first_name: pick(FIRST),
            last_name: lastName(),
            status: sequence % 10 === 0 ? 'suspended' : 'active',
            metadata: { tier: pick(['free', 'pro', 'team']), seats: randomInt(1, 50) },
          };
        });
        const started = performance.now();
        const res = await fetch(`${server.url}/v2/users/bulk`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({ users }),
        });
        bulkTimes.push(performance.now() - started);
        if (res.status !== 201) throw new Error(`bulk failed: ${res.status} ${await res.text()}`);
      }
    };
    const seedStarted = performance.now();
    await Promise.all(Array.from({ length: 4 }, seedWorker));
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    bulkTimes.sort((a, b) => a - b);

    const sample = (await (await fetch(`${server.url}/v2/users?limit=100`, { headers: auth })).json()) as {
      data: { id: string }[];
    };
    const ids = sample.data.map((u) => u.id);
    const get = {
      method: 'GET' as const,
      headers: auth,
      setupRequest: (req: object) => ({ ...req, path: `/v2/users/${pick(ids)}` }),
    };
    const list = {
      method: 'GET' as const,
      headers: auth,
      path: '/v2/users?limit=25&status=active&sort=created_at:desc',
    };
    const search = {
      method: 'GET' as const,
      headers: auth,
      setupRequest: (req: object) => ({
        ...req,
        path: `/v2/users/search?limit=25&q=${lastName().slice(0, 4).toLowerCase()}&filters=${encodeURIComponent(
          JSON.stringify({ status: 'active', 'metadata.tier': pick(['pro', 'team']) }),
        )}&sort=${encodeURIComponent('["last_name:asc"]')}`,
      }),
    };
    let created = 0;
    const create = {
      method: 'POST' as const,
      headers: auth,
      path: '/v2/users',
      setupRequest: (req: object) => {
        created += 1;
        return {
          ...req,
          body: JSON.stringify({
            email: `new${created}-${Date.now()}@bench.example`,
            first_name: pick(FIRST),
            last_name: lastName(),
          }),
        };
      },
    };

    const base = { url: server.url, duration };
    // Warm up (JIT, caches, the write-ahead log checkpoint after seeding) before measuring.
    await measure('warm-up', { ...base, duration: 5, requests: [get, list, search], connections: 16 });
    const rows: Measurement[] = [];
    rows.push(
      await measure('GET /v2/users/{id}', { ...base, requests: [get], offeredRate: 1000, connections: 32 }),
    );
    rows.push(await measure('GET /v2/users/{id}', { ...base, requests: [get], connections: 32 }));
    rows.push(
      await measure('GET /v2/users (limit 25, filter, sort)', { ...base, requests: [list], connections: 16 }),
    );
    rows.push(
      await measure('GET /v2/users/search (q + filters + sort)', {
        ...base,
        requests: [search],
        offeredRate: 200,
        connections: 16,
      }),
    );
    rows.push(
      await measure('GET /v2/users/search (q + filters + sort)', {
        ...base,
        requests: [search],
        connections: 16,
      }),
    );
    rows.push(
      await measure('POST /v2/users', { ...base, requests: [create], offeredRate: 200, connections: 16 }),
    );
    rows.push(await measure('POST /v2/users', { ...base, requests: [create], connections: 16 }));
    const rss = await server.rssMiB();

    return [
      `### Management API on ${backend}, ${total.toLocaleString('en')} users`,
      '',
      `Machine: ${machine()}. Load generator (autocannon) and server share the machine.`,
      '',
      table(rows),
      '',
      `Bulk create of 100 users (no passwords), while seeding ${total.toLocaleString('en')} users with 4 concurrent requests: ` +
        `p50 ${Math.round(percentile(bulkTimes, 50))} ms, p99 ${Math.round(percentile(bulkTimes, 99))} ms, ` +
        `max ${Math.round(bulkTimes.at(-1)!)} ms; seeding took ${seedSeconds.toFixed(1)} s. Server RSS after the run: ${rss} MiB.`,
      '',
    ].join('\n');
  } finally {
    await server.stop();
  }
}
