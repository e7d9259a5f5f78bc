/**
 * Graceful shutdown under load, with real processes behind a load balancer. Two instances serve
 * steady traffic (liveness, discovery, and an authenticated /v2 read) through a round-robin balancer
 * that probes GET /health/ready every 100 ms and retries a request on another instance only when its
 * connection was refused or reset before any answer. One instance at a time gets SIGTERM:
 *
 * - B, with SHUTDOWN_DRAIN_MS: readiness answers 503 first (the balancer takes B out of rotation),
 *   then the listener closes, a request B was already handling is still answered, and B exits 0,
 *   without the balancer ever needing to retry a request away from B;
 * - then C replaces B, and A stops with no drain delay (the default), so the balancer only learns
 *   that A is gone from refused connections: requests are retried on C where that is safe, in-flight
 *   ones are answered, A exits 0.
 *
 * Not one request fails at the balancer. Instances share stores as a cluster must: MongoDB and Redis
 * when configured; otherwise the embedded SQLite file in one DATA_DIR, which several processes on
 * one machine can open together (SQLite's own locking orders their writes), so this test runs on
 * every backend.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { MONGODB_URI, REDIS_URL, tempDir } from '../helpers/backends.js';
import {
  CLUSTER_ADMIN_CLIENT_ID,
  CLUSTER_ADMIN_SECRET,
  clientCredentialsToken,
  clusterEnv,
  clusterStores,
  pollUntil,
  removeClusterData,
  startInstance,
  stopInstance,
  type ClusterStores,
  type Instance,
} from '../helpers/cluster.js';
import { LoadBalancer } from '../helpers/load-balancer.js';
import { holdRequest, LoadGenerator, refusesConnections } from '../helpers/traffic.js';

const DRAIN_MS = 2000;
const PROBE_INTERVAL_MS = 100;
/** Requests each phase must see served, so the stop happens under real traffic and traffic goes on. */
const WARM = 100;
const AFTER = 100;

const durable = MONGODB_URI ? 'mongo' : 'embedded';
const shortLived = REDIS_URL ? 'redis' : 'embedded';

describe(`graceful shutdown under load behind a load balancer (durable=${durable}, short-lived=${shortLived})`, () => {
  let lb: LoadBalancer;
  let stores: ClusterStores;
  const dataDir = tempDir('latchkey-shared-');
  let env: Record<string, string>;
  const instances: Record<string, Instance> = {};
  let load: LoadGenerator | undefined;

  beforeAll(async () => {
    lb = await LoadBalancer.start({ probeIntervalMs: PROBE_INTERVAL_MS });
    stores = clusterStores({ mongodbUri: MONGODB_URI, redisUrl: REDIS_URL });
    env = {
      ...clusterEnv(lb.url, stores),
      DATA_DIR: dataDir.path,
      // The admin client's plan; the load must not meet a rate limit.
      RATE_LIMIT_ENTERPRISE_PER_HOUR: '1000000000',
      RATE_LIMIT_ENTERPRISE_BURST: '10000000',
    };
    instances.A = await startInstance('A', { ...env, SHUTDOWN_DRAIN_MS: '0' });
    lb.add('A', instances.A.baseUrl);
    instances.B = await startInstance('B', { ...env, SHUTDOWN_DRAIN_MS: String(DRAIN_MS) });
    lb.add('B', instances.B.baseUrl);

    const token = await clientCredentialsToken(lb.url, { scope: 'user:read' });
    load = new LoadGenerator(
      lb.url,
      [
        { path: '/health/live' },
        { path: '/.well-known/openid-configuration' },
        { path: '/v2/users?limit=5', headers: { authorization: `Bearer ${token}` } },
      ],
      6,
    );
  }, 120_000);

  afterAll(async () => {
    await load?.stop();
    for (const instance of Object.values(instances)) await stopInstance(instance);
    await lb?.close();
    if (stores) await removeClusterData(stores);
    dataDir.remove();
  }, 60_000);

  function messages(instance: Instance): string[] {
    return instance
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
  }

  function expectNoFailures(): void {
    expect(load!.results.filter((r) => r.status < 200 || r.status > 299)).toEqual([]);
    expect(lb.failed).toEqual([]);
  }

  it('B (with a drain delay) fails readiness first, closes, answers the request it holds, exits 0; no request fails or needs a retry', async () => {
    const B = instances.B!;
    expect(
      await load!.waitFor(() => lb.servedBy('A').length >= WARM && lb.servedBy('B').length >= WARM, 30_000),
    ).toBe(true);

    // A token request B has started handling (it answered "100 Continue"), its body still to come.
    const held = await holdRequest(B.baseUrl, {
      method: 'POST',
      path: '/oauth/token',
      headers: {
        host: new URL(lb.url).host,
        authorization: `Basic ${Buffer.from(`${CLUSTER_ADMIN_CLIENT_ID}:${CLUSTER_ADMIN_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials&scope=user%3Aread',
    });

    // Shutdown starts from a ready B. (On a starved CI machine a probe can time out or a store check
    // take its full 2 s now and then; such blips before the SIGTERM are not what this test is about.)
    const ready = await pollUntil(
      async () => lb.probes.filter((p) => p.backend === 'B').at(-1)?.status,
      (s) => s === 200,
      10_000,
      20,
    );
    expect(ready.value).toBe(200);
    const probesBefore = lb.probes.length;
    const stoppedAt = Date.now();
    const exited = B.stop('SIGTERM');
    const unready = await pollUntil(
      async () => lb.probes.filter((p) => p.backend === 'B').at(-1)?.status,
      (s) => s === 503,
      DRAIN_MS + 5000,
      20,
    );
    expect(unready.value).toBe(503);
    const closed = await pollUntil(() => refusesConnections(B.baseUrl), Boolean, DRAIN_MS + 10_000, 20);
    expect(closed.value).toBe(true);

    // The listener is closed, yet the request B was handling gets its whole answer.
    const answer = await held.finish();
    expect(answer.status).toBe(200);
    expect(answer.headers.connection).toBe('close');
    expect(answer.body).toContain('"access_token"');

    expect(await exited).toBe(0);
    const mark = lb.forwarded.length;
    expect(await load!.waitFor(() => lb.since(mark).length >= AFTER, 30_000)).toBe(true);

    // Readiness went from 200 to 503, then no connection: the balancer stopped sending before B closed.
    expect(
      lb.probes
        .slice(probesBefore)
        .filter((p) => p.backend === 'B')
        .map((p) => p.status),
    ).toEqual([503, 'down']);
    expect(lb.retried.filter((r) => r.backend === 'B' && r.at >= stoppedAt)).toEqual([]);
    expect(lb.since(mark).every((f) => f.backend === 'A')).toBe(true);
    const said = messages(B);
    expect(said).toEqual(expect.arrayContaining(['shutting down', 'shutdown complete']));
    expect(said.indexOf('shutting down')).toBeLessThan(said.indexOf('shutdown complete'));
    expect(said).not.toContain('in-flight requests did not finish in time; closing');
    expectNoFailures();
    lb.remove('B');
  });

  it('A (no drain delay) stops while C carries the load: refused or reset requests go to C, in-flight ones are answered, A exits 0; no request fails', async () => {
    instances.C = await startInstance('C', { ...env, SHUTDOWN_DRAIN_MS: '0' });
    lb.add('C', instances.C.baseUrl);
    const A = instances.A!;
    expect(await load!.waitFor(() => lb.servedBy('C').length >= WARM, 30_000)).toBe(true);

    const held = await holdRequest(A.baseUrl, {
      method: 'POST',
      path: '/oauth/token',
      headers: {
        host: new URL(lb.url).host,
        authorization: `Basic ${Buffer.from(`${CLUSTER_ADMIN_CLIENT_ID}:${CLUSTER_ADMIN_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials&scope=user%3Aread',
    });
    const stoppedAt = Date.now();
    const exited = A.stop('SIGTERM');
    const closed = await pollUntil(() => refusesConnections(A.baseUrl), Boolean, 10_000, 20);
    expect(closed.value).toBe(true);
    const answer = await held.finish();
    expect(answer.status).toBe(200);
    expect(answer.headers.connection).toBe('close');
    expect(await exited).toBe(0);

    const mark = lb.forwarded.length;
    expect(await load!.waitFor(() => lb.since(mark).length >= AFTER, 30_000)).toBe(true);
    await load!.stop();

    expect(lb.since(mark).every((f) => f.backend === 'C')).toBe(true);
    // Whatever had to be retried since A's SIGTERM was refused or reset before an answer, at A.
    for (const retry of lb.retried.filter((r) => r.at >= stoppedAt)) {
      expect(retry).toMatchObject({
        backend: 'A',
        code: expect.stringMatching(/^(ECONNREFUSED|ECONNRESET|EPIPE)$/),
      });
    }
    const said = messages(A);
    expect(said).toEqual(expect.arrayContaining(['shutting down', 'shutdown complete']));
    expect(said).not.toContain('in-flight requests did not finish in time; closing');
    expectNoFailures();
    expect(load!.results.length).toBeGreaterThan(2 * WARM + 2 * AFTER);
  });
});
