/**
 * Webhook benchmark: what recording and delivering events costs, against a receiver on loopback
 * that answers 200 at once (in this process).
 *
 * 1. POST /v2/users flat out (autocannon, 16 connections), alternately without any webhook endpoint
 *    and with one subscribed to user.created, two rounds each, in one server run: the ratio of the
 *    means is the cost of webhooks on the write path (floor: 90%).
 * 2. Delivery lag at a steady 500 events/s (bulk creations of 100 users every 200 ms): for each
 *    event, the time from its timestamp (taken when it is recorded, just before the commit) to the
 *    receiver having its request (floor: p99 < 1 s).
 *
 * Usage: npm run bench -- webhooks [--duration S] [--lag-seconds S] [--mongo URI] [--redis URL]
 */
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

import { adminToken, machine, measure, percentile, startServer, table, type Measurement } from './lib.ts';

interface Receiver {
  url: string;
  lags: number[];
  received: number;
  close(): Promise<void>;
}

/**
 * A receiver that answers 200 at once and costs as little CPU as an HTTP/1.1 server can (it shares
 * the two cores with the server): a bare TCP server reading keep-alive requests by Content-Length.
 * It parses bodies only while lags are being measured.
 */
async function startReceiver(): Promise<Receiver & { measureLag: boolean }> {
  const state = { lags: [] as number[], received: 0, measureLag: false };
  const OK = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n');
  const server = createNetServer((socket) => {
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        const body = buffered.subarray(end + 4, end + 4 + length);
        buffered = buffered.subarray(end + 4 + length);
        state.received += 1;
        if (state.measureLag) {
          const { timestamp } = JSON.parse(body.toString()) as { timestamp: string };
          state.lags.push(Date.now() - Date.parse(timestamp));
        }
        socket.write(OK);
      }
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    get lags() {
      return state.lags;
    },
    get received() {
      return state.received;
    },
    get measureLag() {
      return state.measureLag;
    },
    set measureLag(on: boolean) {
      state.measureLag = on;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function runWebhookBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      'lag-seconds': { type: 'string', default: '20' },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const lagSeconds = Number(values['lag-seconds']);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const receiver = await startReceiver();
  const server = await startServer({
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
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
      while (receiver.received < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    };

    await measure('warm-up', { ...base, duration: 5, requests: [create] });
    const off: Measurement[] = [];
    const on: Measurement[] = [];
    for (let round = 0; round < 2; round += 1) {
      off.push(await measure('POST /v2/users, no webhook endpoint', { ...base, requests: [create] }));
      await subscribe();
      const before = receiver.received;
      const measured = await measure('POST /v2/users, one endpoint subscribed', {
        ...base,
        requests: [create],
      });
      on.push(measured);
      await drain(before + measured.requests - measured.errors);
      await unsubscribe();
    }
    const mean = (rows: Measurement[]) => rows.reduce((sum, r) => sum + r.requestsPerSecond, 0) / rows.length;
    const ratio = mean(on) / mean(off);

    // Delivery lag at 500 events/s: 100 users every 200 ms through the bulk endpoint.
    await subscribe();
    receiver.lags.length = 0;
    receiver.measureLag = true;
    const startReceived = receiver.received;
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
    const lags = [...receiver.lags].sort((a, b) => a - b);
    const delivered = receiver.received - startReceived;
    const rss = await server.rssMiB();

    return [
      `### Webhooks on ${backend}`,
      '',
      `Machine: ${machine()}. Load generator, receiver and server share the machine.`,
      '',
      table([...off, ...on].sort((a, b) => a.name.localeCompare(b.name))),
      '',
      `Throughput with one subscribed endpoint: ${Math.round(mean(on))}/s against ${Math.round(mean(off))}/s without ` +
        `(mean of two alternating ${duration} s rounds each): **${(ratio * 100).toFixed(1)}%** (floor 90%).`,
      '',
      `Delivery lag at ${Math.round(sent / offeredSeconds)} events/s for ${lagSeconds} s (${delivered.toLocaleString('en')} of ` +
        `${sent.toLocaleString('en')} events delivered, ${bulkErrors} bulk errors): p50 ${percentile(lags, 50)} ms, ` +
        `p99 **${percentile(lags, 99)} ms** (floor < 1000 ms), max ${lags.at(-1)} ms. Server RSS after the run: ${rss} MiB.`,
      '',
    ].join('\n');
  } finally {
    await server.stop();
    await receiver.close();
  }
}
