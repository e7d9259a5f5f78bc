/**
 * Analytics benchmark: seeds users straight into the durable store and a year of sign-ins straight
 * into the analytics rollups (through the rollup consumer, in batches, not over HTTP), then starts
 * the server on that data and times GET /v2/analytics/users one request at a time.
 * Usage: npm run bench -- analytics [--users N] [--logins N] [--requests N] [--mongo URI] [--redis URL]
 * (--duration is accepted, as by every suite, and ignored: this one counts requests).
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import type * as catalogModule from '../src/events/catalog.js';
import type * as rollupsModule from '../src/events/rollups.js';
import type * as createStoresModule from '../src/store/create-stores.js';
import { adminToken, machine, percentile, ROOT, startServer } from './lib.ts';

// Types only: the code itself is loaded from dist/ below.
type CreateStores = typeof createStoresModule;
type Rollups = typeof rollupsModule;
type Catalog = typeof catalogModule;

/** The compiled server's modules (npm run bench builds dist/ first). */
const compiled = <T>(path: string) => import(pathToFileURL(join(ROOT, 'dist', path)).href) as Promise<T>;

const DAY_MS = 86_400_000;
const DEPARTMENTS = ['engineering', 'sales', 'support', 'finance', 'legal', 'design', 'ops', 'hr'];
const LOCATIONS = ['paris', 'berlin', 'london', 'madrid', 'remote', 'new-york'];
const pick = <T>(list: readonly T[]) => list[randomInt(list.length)]!;
const day = (d: Date) => d.toISOString().slice(0, 10);

export async function runAnalyticsBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      users: { type: 'string', default: '100000' },
      logins: { type: 'string', default: '1000000' },
      requests: { type: 'string', default: '200' },
      redis: { type: 'string' },
      mongo: { type: 'string' },
      duration: { type: 'string' },
    },
  });
  const userCount = Number(values.users);
  const loginCount = Number(values.logins);
  const requestCount = Number(values.requests);
  const backend = `${values.mongo ? 'mongo' : 'embedded'}${values.redis ? ' + redis' : ''}`;
  const redisKeyPrefix = `lk_bench_${Date.now().toString(36)}:`;

  const { createStores } = await compiled<CreateStores>('store/create-stores.js');
  const { AnalyticsRollups } = await compiled<Rollups>('events/rollups.js');
  const { eventUser, newEvent } = await compiled<Catalog>('events/catalog.js');

  const dataDir = mkdtempSync(join(tmpdir(), 'latchkey-bench-analytics-'));
  const stores = await createStores({
    dataDir,
    mongodbUri: values.mongo,
    redisUrl: values.redis,
    redisKeyPrefix,
    embeddedSweepIntervalS: 3600,
    nodeEnv: 'production',
  });
  const today = new Date(Date.parse(day(new Date())));
  const seedStarted = performance.now();

  // Users: created over the two years before today, in batches of 1,000.
  const users: ReturnType<Catalog['eventUser']>[] = [];
  for (let i = 0; i < userCount; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, userCount - i) }, (_, j) => ({
      email: `analytics-${i + j}@bench.example`,
      first_name: 'Bench',
      last_name: `User${i + j}`,
      role: randomInt(20) === 0 ? 'admin' : 'user',
      status: randomInt(25) === 0 ? ('suspended' as const) : ('active' as const),
      metadata: { department: pick(DEPARTMENTS), location: pick(LOCATIONS) },
      created_at: new Date(today.getTime() - randomInt(730 * 24) * 3_600_000),
    }));
    for (const result of await stores.durable.users.createMany(batch, { atomic: false })) {
      if ('user' in result) users.push(eventUser(result.user));
    }
  }
  const usersSeconds = (performance.now() - seedStarted) / 1000;

  // Sign-ins: spread over the last 365 days, each by a user who existed by then, in batches.
  const rollups = new AnalyticsRollups(stores.counters, { sessionTtlSeconds: 86_400 });
  const actor = { type: 'system', id: 'bench' } as const;
  const loginsStarted = performance.now();
  const BATCH = 20_000;
  const registrations = users.map((user) =>
    newEvent('user.created', actor, { user }, new Date(user.created_at)),
  );
  for (let i = 0; i < registrations.length; i += BATCH)
    await rollups.consume(registrations.slice(i, i + BATCH));
  for (let done = 0; done < loginCount; done += BATCH) {
    const events = [];
    for (let j = 0; j < Math.min(BATCH, loginCount - done); j += 1) {
      const user = pick(users);
      const created = Date.parse(user.created_at);
      const from = Math.max(created, today.getTime() - 365 * DAY_MS);
      const when = new Date(from + randomInt(Math.max(1, today.getTime() - from)));
      const request = { ip_address: '198.51.100.1', user_agent: 'bench' };
      events.push(
        newEvent('user.login', actor, { user, method: 'password', client_id: null, ...request }, when),
      );
    }
    await rollups.consume(events);
  }
  const loginsSeconds = (performance.now() - loginsStarted) / 1000;
  await stores.close();

  const server = await startServer(
    values.redis ? { REDIS_URL: values.redis, REDIS_KEY_PREFIX: redisKeyPrefix } : {},
    {
      dataDir,
    },
  );
  try {
    const token = await adminToken(server.url, 'analytics:read');
    const since = (days: number) => day(new Date(today.getTime() - days * DAY_MS));
    const queries: [string, Record<string, string>][] = [
      ['90 days by day', { period: 'day', start_date: since(90), end_date: since(1) }],
      ['4 quarters', { period: 'quarter', start_date: since(364), end_date: since(0) }],
      [
        '90 days by day, group_by=department',
        {
          period: 'day',
          start_date: since(90),
          end_date: since(1),
          group_by: 'department',
        },
      ],
      [
        '12 months by month',
        { period: 'month', metric: 'login_frequency', start_date: since(364), end_date: since(0) },
      ],
    ];
    const rows: string[] = [];
    for (const [name, query] of queries) {
      const url = `${server.url}/v2/analytics/users?${new URLSearchParams(query)}`;
      const get = async () => {
        const started = performance.now();
        const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
        if (res.status !== 200) throw new Error(`${name}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
        return performance.now() - started;
      };
      for (let i = 0; i < 10; i += 1) await get(); // warm-up
      const times: number[] = [];
      for (let i = 0; i < requestCount; i += 1) times.push(await get());
      times.sort((a, b) => a - b);
      const ms = (v: number) => v.toFixed(1);
      rows.push(
        `| ${name} | ${requestCount} | ${ms(percentile(times, 50))} | ${ms(percentile(times, 99))} | ${ms(times.at(-1)!)} |`,
      );
    }
    return [
      `### GET /v2/analytics/users (${backend}; ${userCount.toLocaleString('en')} users, ${loginCount.toLocaleString('en')} sign-ins over 365 days)`,
      '',
      machine(),
      '',
      `Seeding: users ${usersSeconds.toFixed(1)} s, rollups ${loginsSeconds.toFixed(1)} s (through the consumer, ${BATCH.toLocaleString('en')} events a batch).`,
      '',
      '| query | requests (one at a time) | p50 ms | p99 ms | max ms |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...rows,
    ].join('\n');
  } finally {
    await server.stop();
  }
}
