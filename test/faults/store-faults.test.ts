/**
 * Fault injection with real parts (npm run test:faults): two compiled server processes share a real
 * Redis and a real MongoDB-wire database (FerretDB), each reached through a TCP proxy that can
 * black-hole traffic. An open-loop load of 200 requests/s (client credentials, introspection,
 * GET /v2/users/{id} and a little user creation) runs through the whole suite, spread over the instances
 * whose readiness answers 200, and every answer is recorded. Each test breaks one backend the way
 * production does (kill -9 and restart, SIGSTOP/SIGCONT, a network black hole) and checks, for the
 * requests sent while it was broken:
 *
 *  - every answer that is not a success is a 503 (never a 500, never a connection error) and none
 *    took longer than the request deadline plus a margin for this busy two-core machine;
 *  - readiness of both instances stays 200 all along, while /health shows the backend down;
 *  - from 2 s after the backend is back, more than 99% of requests succeed again.
 *
 * Then one instance is killed with kill -9 and started again, and the last test stops one with
 * SIGTERM under the load, with the default drain: no request meets a reset or a refused connection. At the end every acknowledged write (each 201 user, a
 * sample of the issued tokens) is read back. The figures of each fault are printed at the end
 * (docs/benchmarks.md, "Failure behaviour", quotes them).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { BackendProcess } from '../helpers/backend-process.js';
import {
  call,
  clientCredentialsToken,
  clusterEnv,
  startInstance,
  stopInstance,
  type Instance,
} from '../helpers/cluster.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import {
  OpenLoopLoad,
  percentile,
  ReadinessWatch,
  type LoadCall,
  type LoadRecord,
} from '../helpers/fault-load.js';
import { CLUSTER_ADMIN_CLIENT_ID, CLUSTER_ADMIN_SECRET } from '../helpers/cluster.js';

/** The product's defaults (config/defaults.env): the suite runs the instances with them. */
const REQUEST_TIMEOUT_MS = 5000;
/** What a loaded two-core machine (two servers, two backends, the load, jest) may add to a deadline. */
const MARGIN_MS = 1500;
const OUTAGE_MS = 4000;
const RECOVERY_MS = 2000;
const RATE = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const basic = `Basic ${Buffer.from(`${CLUSTER_ADMIN_CLIENT_ID}:${CLUSTER_ADMIN_SECRET}`).toString('base64')}`;

interface Figures {
  fault: string;
  sent: number;
  failed: number;
  firstFast503Ms: number | undefined;
  failingP99Ms: number;
  slowestMs: number;
  recoveredMs: number;
}

describe('store faults under load (two instances, real Redis and FerretDB)', () => {
  let redis: BackendProcess;
  let ferret: BackendProcess;
  let redisProxy: FaultProxy;
  let mongoProxy: FaultProxy;
  const instances = new Map<string, Instance>();
  let instanceEnv: Record<string, string | undefined>;
  let watch: ReadinessWatch;
  let load: OpenLoopLoad;
  let token: string;
  let userId: string;
  const figures: Figures[] = [];
  const marks: { fault: string; brokeAt: number; healedAt: number }[] = [];

  beforeAll(async () => {
    redis = await BackendProcess.redis();
    ferret = await BackendProcess.ferretdb();
    redisProxy = await FaultProxy.start(redis.port);
    mongoProxy = await FaultProxy.start(ferret.port);
    const env = {
      ...clusterEnv('http://localhost:3999', {
        mongodbUri: `mongodb://127.0.0.1:${mongoProxy.port}/latchkey_faults`,
        redisUrl: `redis://127.0.0.1:${redisProxy.port}`,
        redisKeyPrefix: 'lk_faults:',
      }),
      // The admin client's plan must not turn the load into 429s.
      RATE_LIMIT_ENTERPRISE_PER_HOUR: '1000000000',
      RATE_LIMIT_ENTERPRISE_BURST: '1000000',
      LOG_LEVEL: 'warn',
      // The product's default drain, for the SIGTERM test.
      SHUTDOWN_DRAIN_MS: undefined,
    };
    instanceEnv = env;
    for (const name of ['A', 'B']) instances.set(name, await startInstance(name, env));
    const a = instances.get('A')!.baseUrl;
    token = await clientCredentialsToken(a);
    const created = await call(a, 'POST', '/v2/users', {
      token,
      json: { email: 'fault-seed@example.com', first_name: 'Fault', last_name: 'Seed' },
    });
    expect(created.status).toBe(201);
    userId = created.body.id;

    watch = new ReadinessWatch(new Map([...instances].map(([n, i]) => [n, i.baseUrl])), 250);
    watch.start();
    let creates = 0;
    load = new OpenLoopLoad({
      perSecond: RATE,
      targets: () => [...watch.ready],
      clientTimeoutMs: 20_000,
      keepBody: (kind) => kind === 'create' || kind === 'token',
      next: (turn): LoadCall => {
        // 40% tokens, 30% introspection, 29% reads, 1% creations. Few creations: FerretDB 1.x on
        // SQLite answers every query but by _id with a full scan, so a growing users collection
        // slows the look-alike check of each creation (real MongoDB uses the index).
        const slot = turn % 100;
        if (slot < 40) {
          return {
            kind: 'token',
            method: 'POST',
            path: '/oauth/token',
            headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
            body: 'grant_type=client_credentials&scope=user%3Aread',
          };
        }
        if (slot < 70) {
          return {
            kind: 'introspect',
            method: 'POST',
            path: '/oauth/introspect',
            headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
            body: `token=${token}`,
          };
        }
        if (slot < 99) {
          return {
            kind: 'read',
            method: 'GET',
            path: `/v2/users/${userId}`,
            headers: { authorization: `Bearer ${token}` },
          };
        }
        creates += 1;
        return {
          kind: 'create',
          method: 'POST',
          path: '/v2/users',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            email: `fault-${creates}-${turn}@example.com`,
            first_name: 'Fault',
            last_name: 'Load',
          }),
        };
      },
    });
    load.start();
    await sleep(2000);
  }, 180_000);

  afterAll(async () => {
    await load?.stop();
    watch?.stop();
    // Every answer, and the servers' logs, for whoever reads a failure.
    writeFileSync(
      join(tmpdir(), 'latchkey-faults-records.json'),
      JSON.stringify({ marks, records: load?.records ?? [] }),
    );
    for (const [name, instance] of instances) {
      const file = join(tmpdir(), `latchkey-faults-${name}.log`);
      writeFileSync(file, instance.output());
      process.stdout.write(`log of instance ${name}: ${file}\n`);
    }
    for (const instance of instances.values()) await stopInstance(instance);
    await redisProxy?.close();
    await mongoProxy?.close();
    await redis?.close();
    await ferret?.close();
    if (figures.length > 0) {
      const rows = figures.map(
        (f) =>
          `| ${f.fault} | ${f.sent} | ${f.failed} | ${f.firstFast503Ms ?? '–'} | ${Math.round(f.failingP99Ms)} | ${Math.round(f.slowestMs)} | ${f.recoveredMs} |`,
      );
      process.stdout.write(
        [
          '',
          'Fault figures (ms; requests sent from the fault until 2 s after the backend was back):',
          '| fault | sent | failed (503) | first fast 503 after the fault | p99 of failing requests | slowest answer | last failure after the backend was back |',
          '|---|---|---|---|---|---|---|',
          ...rows,
          '',
        ].join('\n'),
      );
    }
  }, 120_000);

  async function bothHealthy(): Promise<void> {
    const end = Date.now() + 30_000;
    for (;;) {
      const answers = await Promise.all(
        [...instances.values()].map((i) => call(i.baseUrl, 'GET', '/health').catch(() => undefined)),
      );
      if (answers.every((a) => a?.status === 200)) return;
      if (Date.now() > end)
        throw new Error(`instances not healthy again: ${JSON.stringify(answers.map((a) => a?.body))}`);
      await sleep(200);
    }
  }

  /**
   * Breaks a backend for OUTAGE_MS under the load, heals it, waits out the recovery window and checks
   * the requests of the whole period.
   */
  async function outage(
    fault: string,
    backend: 'redis' | 'mongo',
    breakIt: () => Promise<void> | void,
    heal: () => Promise<void> | void,
    outageMs = OUTAGE_MS,
  ): Promise<void> {
    await bothHealthy();
    const refusalsBefore = watch.refusals.length;
    const brokeAt = Date.now();
    await breakIt();
    await sleep(OUTAGE_MS / 2);
    // /health tells the truth while readiness stays up.
    const health = await call(instances.get('A')!.baseUrl, 'GET', '/health');
    const checkName = backend === 'mongo' ? 'store' : 'artifacts';
    // What needs no store keeps working: discovery and the signing keys.
    const discovery = await call(instances.get('B')!.baseUrl, 'GET', '/.well-known/openid-configuration');
    const jwks = await call(instances.get('B')!.baseUrl, 'GET', '/oauth/jwks');
    await sleep(outageMs - OUTAGE_MS / 2);
    await heal();
    const healedAt = Date.now();
    await sleep(RECOVERY_MS + 3000 + 1000);

    marks.push({ fault, brokeAt, healedAt });
    const during = load.between(brokeAt, healedAt + RECOVERY_MS);
    const after = load.between(healedAt + RECOVERY_MS, healedAt + RECOVERY_MS + 3000);
    const ok = (r: LoadRecord) => r.status === 200 || r.status === 201;
    const failing = during.filter((r) => !ok(r));
    const lastFailure = load
      .between(healedAt, Date.now())
      .filter((r) => !ok(r))
      .pop();
    const firstFast = during.find((r) => r.status === 503 && r.ms < 100);
    figures.push({
      fault,
      sent: during.length,
      failed: failing.length,
      firstFast503Ms: firstFast ? firstFast.sent - brokeAt : undefined,
      failingP99Ms: percentile(
        failing.map((r) => r.ms),
        99,
      ),
      slowestMs: Math.max(0, ...during.map((r) => r.ms)),
      recoveredMs: lastFailure ? Math.max(0, lastFailure.sent - healedAt) : 0,
    });

    expect(discovery.status).toBe(200);
    expect(jwks.status).toBe(200);
    expect(jwks.body.keys.length).toBeGreaterThan(0);
    expect(health.status).toBe(503);
    expect(health.body.ready).toBe(true);
    expect(health.body.checks[checkName]).toMatchObject({ healthy: false, backend });
    // Nothing but successes and 503s, each answered in time.
    const notUnavailable = failing.filter((r) => r.status !== 503);
    expect(notUnavailable.slice(0, 5)).toEqual([]);
    const slow = during.filter((r) => r.ms > REQUEST_TIMEOUT_MS + MARGIN_MS);
    expect(slow.slice(0, 5)).toEqual([]);
    // The outage was real: requests needing the backend failed.
    expect(failing.length).toBeGreaterThan(0);
    // Readiness never failed.
    expect(watch.refusals.slice(refusalsBefore)).toEqual([]);
    // Back to normal within 2 s.
    expect(after.length).toBeGreaterThan(RATE * 2);
    const successRate = after.filter(ok).length / after.length;
    expect({ fault, successRate: successRate > 0.99 ? 'above 99%' : successRate }).toEqual({
      fault,
      successRate: 'above 99%',
    });
  }

  it('Redis killed (kill -9) and restarted', async () => {
    await outage(
      'Redis kill -9, restart',
      'redis',
      // The proxy refuses too: a dead host's port refuses connections, it does not accept and drop them.
      async () => {
        await redis.kill();
        await redisProxy.refuse();
      },
      async () => {
        await redis.start();
        await redisProxy.listen();
      },
    );
  }, 60_000);

  it('MongoDB killed (kill -9) and restarted', async () => {
    await outage(
      'FerretDB kill -9, restart',
      'mongo',
      async () => {
        await ferret.kill();
        await mongoProxy.refuse();
      },
      async () => {
        await ferret.start();
        await mongoProxy.listen();
      },
    );
  }, 60_000);

  it('Redis hangs (SIGSTOP) and resumes', async () => {
    await outage(
      'Redis SIGSTOP, SIGCONT',
      'redis',
      () => redis.pause(),
      () => redis.resume(),
    );
  }, 60_000);

  it('MongoDB hangs (SIGSTOP) for 15 s and resumes', async () => {
    // As long as the hang that once kept the service down for a minute after it ended.
    await outage(
      'FerretDB SIGSTOP 15 s, SIGCONT',
      'mongo',
      () => ferret.pause(),
      () => ferret.resume(),
      15_000,
    );
  }, 60_000);

  it('the network to MongoDB black-holes and heals', async () => {
    await outage(
      'MongoDB network black hole',
      'mongo',
      () => mongoProxy.blackhole(),
      () => mongoProxy.heal(),
    );
  }, 60_000);

  it('the network to Redis black-holes and heals', async () => {
    await outage(
      'Redis network black hole',
      'redis',
      () => redisProxy.blackhole(),
      () => redisProxy.heal(),
    );
  }, 60_000);

  it('counted the outages in /metrics: breaker openings per backend, 503s by cause', async () => {
    for (const instance of instances.values()) {
      const text = (await call(instance.baseUrl, 'GET', '/metrics')).body as string;
      const value = (series: string) => {
        const line = text.split('\n').find((l) => l.startsWith(`${series} `));
        return line === undefined ? undefined : Number(line.slice(series.length + 1));
      };
      // Three faults of each backend.
      expect(value('latchkey_store_circuit_openings_total{backend="redis"}')).toBeGreaterThanOrEqual(3);
      expect(value('latchkey_store_circuit_openings_total{backend="mongo"}')).toBeGreaterThanOrEqual(3);
      expect(value('latchkey_store_circuit_open{backend="redis"}')).toBe(0);
      expect(value('latchkey_store_circuit_open{backend="mongo"}')).toBe(0);
      expect(value('latchkey_unavailable_responses_total{cause="store"}')).toBeGreaterThan(100);
    }
  });

  it('an instance killed with kill -9 under load comes back and serves (its acknowledged writes are checked at the end)', async () => {
    await bothHealthy();
    const a = instances.get('A')!;
    const killedAt = Date.now();
    await a.stop('SIGKILL');
    // Taken out of rotation by its readiness, as a Service would; the other instance serves meanwhile.
    await sleep(1500);
    expect(watch.ready.has('A')).toBe(false);
    a.removeDataDir();
    const restarted = await startInstance('A', instanceEnv);
    instances.set('A', restarted);
    watch.track('A', restarted.baseUrl);
    const back = Date.now();
    await bothHealthy();
    await sleep(1500);
    expect(watch.ready.has('A')).toBe(true);
    // Only requests in flight on A when it died may have gone unanswered; B answered everything.
    const onB = load.between(killedAt, back).filter((r) => r.instance === 'B');
    expect(onB.length).toBeGreaterThan(RATE / 2);
    expect(onB.filter((r) => r.status !== 200 && r.status !== 201).slice(0, 5)).toEqual([]);
  }, 90_000);

  it('SIGTERM under load with the default drain resets nothing', async () => {
    await bothHealthy();
    const a = instances.get('A')!;
    const from = Date.now();
    const code = await a.stop('SIGTERM');
    const stoppedAt = Date.now();
    await sleep(1000);
    writeFileSync(join(tmpdir(), 'latchkey-faults-A.log'), a.output());
    expect(code).toBe(0);
    // The drain kept A serving until the readiness watch (every 250 ms, like an endpoints controller)
    // had taken it out; nothing met a closed or reset connection.
    const window = load.between(from, stoppedAt + 500);
    expect(window.length).toBeGreaterThan(RATE * 4);
    expect(window.filter((r) => r.status === 0).slice(0, 5)).toEqual([]);
    // Nothing failed either (a 503 here would be the store's doing, which no fault is meant to be).
    expect(
      window.filter((r) => r.status !== 200 && r.status !== 201 && r.status !== 503).slice(0, 5),
    ).toEqual([]);
    expect(window.filter((r) => r.status === 200 || r.status === 201).length / window.length).toBeGreaterThan(
      0.99,
    );
    expect(watch.ready.has('A')).toBe(false);
    instances.delete('A');
    await stopInstance(a);
  }, 60_000);

  it('loses no acknowledged write across all of it', async () => {
    await load.stop();
    const b = instances.get('B')!.baseUrl;
    const admin = await clientCredentialsToken(b);
    const created = load.records.filter((r) => r.kind === 'create' && r.status === 201);
    expect(created.length).toBeGreaterThan(50);
    const missing: string[] = [];
    for (const record of created) {
      const id = (record.body as { id: string }).id;
      const res = await call(b, 'GET', `/v2/users/${id}`, { token: admin });
      if (res.status !== 200) missing.push(`${id}: ${res.status}`);
    }
    expect(missing).toEqual([]);
    // Tokens issued before and between the faults are still known (a spread sample of them).
    const issued = load.records.filter((r) => r.kind === 'token' && r.status === 200);
    const sample = issued.filter((_, i) => i % Math.max(1, Math.floor(issued.length / 100)) === 0);
    const inactive: number[] = [];
    for (const record of sample) {
      const res = await call(b, 'POST', '/oauth/introspect', {
        basic: [CLUSTER_ADMIN_CLIENT_ID, CLUSTER_ADMIN_SECRET],
        form: { token: (record.body as { access_token: string }).access_token },
      });
      if (res.body.active !== true) inactive.push(record.sent);
    }
    expect(inactive).toEqual([]);
  }, 120_000);
});
