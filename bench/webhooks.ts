/**
 * Webhook benchmark: what recording and delivering events costs, against a receiver on loopback
 * that answers 200 at once (bench/webhook-receiver.ts, a process of its own).
 *
 * 1. POST /v2/users flat out (autocannon, 16 connections), alternately without any webhook endpoint
 *    and with one subscribed to user.created, alternating rounds (--rounds, 3) in one server run: the ratio of the
 *    means is the cost of webhooks on the write path (floor: 90%).
 * 2. Delivery lag at a steady 500 events/s (bulk creations of 100 users every 200 ms): for each
 *    event, the time from its timestamp (taken when it is recorded, just before the commit) to the
 *    receiver having its request (floor: p99 < 1 s).
 *
 * --thread runs the server with WEBHOOK_DELIVERY_THREAD=true (attempts signed and sent on a worker
 * thread of the server process) in both the "off" and the "on" rounds.
 *
 * Usage: npm run bench -- webhooks [--duration S] [--rounds N] [--lag-seconds S] [--thread] [--mongo URI] [--redis URL]
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { adminToken, machine, measure, percentile, startServer, table, type Measurement } from './lib.ts';

interface Receiver {
  url: string;
  /** Deliveries received so far, and the lags recorded since lagOn(). */
  stats(): Promise<{ received: number; connections: number; lags: number[] }>;
  lagOn(): void;
  close(): Promise<void>;
}

/** Starts bench/webhook-receiver.ts in a child process (see there). */
async function startReceiver(): Promise<Receiver> {
  const child = fork(join(import.meta.dirname, 'webhook-receiver.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    stats: () =>
      new Promise((resolve) => {
        child.once('message', (m: { received: number; connections: number; lags: number[] }) => resolve(m));
        child.send({ type: 'stats' });
      }),
    lagOn: () => child.send({ type: 'lag-on' }),
    close: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ type: 'stop' });
      await exited;
    },
  };
}

export async function runWebhookBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      'lag-seconds': { type: 'string', default: '20' },
      rounds: { type: 'string', default: '3' },
      thread: { type: 'boolean', default: false },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const lagSeconds = Number(values['lag-seconds']);
  const rounds = Number(values.rounds);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const receiver = await startReceiver();
  const server = await startServer({
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    WEBHOOK_DELIVERY_THREAD: values.thread ? 'true' : 'false',
  });
  try {
    const token = await adminToken(server.url, 'user:read user:write webhook:manage');
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    let sequence = 0;
    const create = {
      method: 'POST' as const,
      headers: auth,
      path: '/v2/users',
      setupRequest: (req: object) => {
        sequence += 1;
        return {
          ...req,
          body: JSON.stringify({
            email: `hook${sequence}-${Date.now()}@bench.example`,
            first_name: 'Bench',
            last_name: `User${sequence}`,
          }),
        };
      },
    };
    const base = { url: server.url, duration, connections: 16 };
    let webhookId: string | undefined;
    const subscribe = async () => {
      const res = await fetch(`${server.url}/v2/webhooks`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ url: receiver.url, events: ['user.created'] }),
      });
      if (res.status !== 201) throw new Error(`subscribe failed: ${res.status} ${await res.text()}`);
      webhookId = ((await res.json()) as { webhook_id: string }).webhook_id;
    };
    const unsubscribe = async () => {
      if (!webhookId) return;
      await fetch(`${server.url}/v2/webhooks/${webhookId}`, { method: 'DELETE', headers: auth });
      webhookId = undefined;
    };
    /** Waits until the receiver has every delivery of the round (so rounds do not overlap). */
    const drain = async (expected: number) => {
      const until = Date.now() + 120_000;
      while ((await receiver.stats()).received < expected && Date.now() < until)
        await new Promise((r) => setTimeout(r, 100));
    };

    await measure('warm-up', { ...base, duration: 5, requests: [create] });
    const off: Measurement[] = [];
    const on: Measurement[] = [];
    /** Per "on" round: events created, delivered by the round's end, and how long the rest took. */
    const backlogs: { expected: number; atEnd: number; drainMs: number }[] = [];
    for (let round = 0; round < rounds; round += 1) {
      off.push(await measure('POST /v2/users, no webhook endpoint', { ...base, requests: [create] }));
      await subscribe();
      const before = (await receiver.stats()).received;
      const measured = await measure('POST /v2/users, one endpoint subscribed', {
        ...base,
        requests: [create],
      });
      on.push(measured);
      const expected = measured.requests - measured.errors;
      const atEnd = (await receiver.stats()).received - before;
      const drainStarted = Date.now();
      await drain(before + expected);
      backlogs.push({ expected, atEnd, drainMs: Date.now() - drainStarted });
      await unsubscribe();
    }
    const mean = (rows: Measurement[]) => rows.reduce((sum, r) => sum + r.requestsPerSecond, 0) / rows.length;
    const ratio = mean(on) / mean(off);

    // Delivery lag at 500 events/s: 100 users every 200 ms through the bulk endpoint.
    await subscribe();
    receiver.lagOn();
    const startReceived = (await receiver.stats()).received;
    let sent = 0;
    let bulkErrors = 0;
    const started = Date.now();
    for (let tick = 0; tick < lagSeconds * 5; tick += 1) {
      const due = started + tick * 200;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const users = Array.from({ length: 100 }, () => {
        sequence += 1;
        return { email: `lag${sequence}-${Date.now()}@bench.example`, first_name: 'Lag', last_name: 'Test' };
      });
      void fetch(`${server.url}/v2/users/bulk`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ users }),
      })
        .then((res) => {
          if (res.status !== 201) bulkErrors += 1;
          return res.arrayBuffer();
        })
        .catch(() => {
          bulkErrors += 1;
        });
      sent += 100;
    }
    const offeredSeconds = (Date.now() - started) / 1000;
    await drain(startReceived + sent);
    const final = await receiver.stats();
    const lags = [...final.lags].sort((a, b) => a - b);
    const delivered = final.received - startReceived;
    const rss = await server.rssMiB();

    return [
      `### Webhooks on ${backend}, delivery ${values.thread ? 'on a worker thread' : 'on the event loop'}`,
      '',
      `Machine: ${machine()}. Load generator, receiver and server share the machine` +
        (process.env.BENCH_SERVER_CPUS
          ? ` (server process, all its threads, on CPUs ${process.env.BENCH_SERVER_CPUS})`
          : '') +
        '.',
      '',
      table([...off, ...on].sort((a, b) => a.name.localeCompare(b.name))),
      '',
      `Throughput with one subscribed endpoint: ${Math.round(mean(on))}/s against ${Math.round(mean(off))}/s without ` +
        `(mean of ${rounds} alternating ${duration} s rounds each): **${(ratio * 100).toFixed(1)}%** (floor 90%).`,
      '',
      `Delivered while each "on" round ran (the rest, the backlog, after it): ` +
        backlogs
          .map((b) =>
            // A few requests still in flight as a round ends are not counted by autocannon, yet
            // make users and deliveries: delivered-by-the-end can exceed the count.
            b.atEnd >= b.expected
              ? `${b.atEnd.toLocaleString('en')} of ${b.expected.toLocaleString('en')} (all, no backlog)`
              : `${b.atEnd.toLocaleString('en')} of ${b.expected.toLocaleString('en')} ` +
                `(backlog ${(b.expected - b.atEnd).toLocaleString('en')}, delivered ${(b.drainMs / 1000).toFixed(1)} s later)`,
          )
          .join('; ') +
        '.',
      '',
      `Delivery lag at ${Math.round(sent / offeredSeconds)} events/s for ${lagSeconds} s (${delivered.toLocaleString('en')} of ` +
        `${sent.toLocaleString('en')} events delivered, ${bulkErrors} bulk errors): p50 ${percentile(lags, 50)} ms, ` +
        `p99 **${percentile(lags, 99)} ms** (floor < 1000 ms), max ${lags.at(-1)} ms. Server RSS after the run: ${rss} MiB. ` +
        `The receiver saw ${final.connections} connections for ${final.received.toLocaleString('en')} deliveries (keep-alive).`,
      '',
    ].join('\n');
  } finally {
    await server.stop();
    await receiver.close();
  }
}
