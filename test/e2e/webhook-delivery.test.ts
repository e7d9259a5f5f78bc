/**
 * Webhook delivery across server processes: events acknowledged by a process killed with SIGKILL
 * are delivered once it is started again (from the outbox, whether no attempt had started or one
 * was in flight and its lease had to expire), and two instances sharing Redis and MongoDB deliver
 * each event once per endpoint, whichever instance recorded it.
 */
import { afterAll, describe, expect, it } from '@jest/globals';

import { describeWithRedisAndMongo, tempDir } from '../helpers/backends.js';
import {
  call,
  CLUSTER_ADMIN_SCOPE,
  clientCredentialsToken,
  clusterEnv,
  clusterStores,
  removeClusterData,
  startInstance,
  stopInstance,
  type Instance,
} from '../helpers/cluster.js';
import { startReceiver, type ReceiverAnswer, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const SCOPE = `${CLUSTER_ADMIN_SCOPE} webhook:manage`;
const SECRET = 'e2e-webhook-secret-0123456789';

const fast = {
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_POLL_MS: '100',
  WEBHOOK_TIMEOUT_MS: '500',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms,200ms',
  WEBHOOK_CONCURRENCY: '4',
  WEBHOOK_ENDPOINT_CONCURRENCY: '4',
  LOG_LEVEL: 'warn',
};

async function createUsers(baseUrl: string, token: string, count: number, tag: string): Promise<string[]> {
  // Five at a time: enough to interleave with deliveries, without 20 parallel writes pushing FerretDB
  // past its 2 s store deadline on a loaded two-core machine (a 503 is then the right answer, but
  // not what these tests are about).
  const ids: string[] = [];
  for (let start = 0; start < count; start += 5) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(5, count - start) }, async (_, j) => {
        const i = start + j;
        const res = await call(baseUrl, 'POST', '/v2/users', {
          token,
          json: { email: `${tag}-${i}-${Date.now()}@example.com`, first_name: 'E', last_name: String(i) },
        });
        expect(res.status).toBe(201);
        return res.body.id as string;
      }),
    );
    ids.push(...batch);
  }
  return ids;
}

const createdIds = (r: WebhookReceiver) =>
  r.requests
    .map((q) => JSON.parse(q.body) as { event: string; data: { user?: { id: string } } })
    .filter((p) => p.event === 'user.created')
    .map((p) => p.data.user!.id);

describe.each(['false', 'true'])(
  'a server killed with SIGKILL delivers what it acknowledged once started again (delivery thread: %s)',
  (thread) => {
    const dir = tempDir('latchkey-webhook-kill-');
    let instance: Instance | undefined;
    let receiver: WebhookReceiver | undefined;
    afterAll(async () => {
      await stopInstance(instance);
      await receiver?.close();
      dir.remove();
    });

    it('delivers pending events after a restart, and an attempt cut off by the kill once its lease expires', async () => {
      let answer: (n: number) => ReceiverAnswer = () => ({ status: 200 });
      receiver = await startReceiver((n) => answer(n));
      // The embedded store in one DATA_DIR, kept across the restarts.
      const env = {
        ...clusterEnv('http://127.0.0.1:1', clusterStores({})),
        ...fast,
        DATA_DIR: dir.path,
        WEBHOOK_DELIVERY_THREAD: thread,
      };

      // 1. Delivery off: the events are only recorded, then the process dies.
      instance = await startInstance('kill-a', { ...env, WEBHOOK_DELIVERY: 'false' });
      let token = await clientCredentialsToken(instance.baseUrl, { scope: SCOPE });
      const hook = await call(instance.baseUrl, 'POST', '/v2/webhooks', {
        token,
        json: { url: receiver.url, events: ['user.created'], secret: SECRET },
      });
      expect(hook.status).toBe(201);
      const first = await createUsers(instance.baseUrl, token, 5, 'pending');
      instance.child.kill('SIGKILL');
      await new Promise((r) => instance!.child.once('exit', r));
      expect(receiver.requests).toHaveLength(0);

      // 2. Started again with delivery on: every acknowledged event arrives.
      instance = await startInstance('kill-b', { ...env });
      await receiver.waitFor(5, 20_000);
      expect(createdIds(receiver).sort()).toEqual([...first].sort());

      // 3. An attempt in flight when the process dies (the receiver holds it): after the restart the
      //    delivery is claimable only when the dead process's lease has expired, then it arrives.
      answer = () => 'hang';
      token = await clientCredentialsToken(instance.baseUrl, { scope: SCOPE });
      const [held] = await createUsers(instance.baseUrl, token, 1, 'in-flight');
      await receiver.waitFor(6, 20_000);
      instance.child.kill('SIGKILL');
      await new Promise((r) => instance!.child.once('exit', r));
      answer = () => ({ status: 200 });
      instance = await startInstance('kill-c', { ...env });
      const until = Date.now() + 30_000;
      while (createdIds(receiver).filter((id) => id === held).length < 2 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const ofHeld = receiver.requests.filter((q) => q.body.includes(held!));
      expect(ofHeld).toHaveLength(2);
      // The retry of the cut-off attempt carries the same webhook-id.
      expect(ofHeld[1]!.headers['webhook-id']).toBe(ofHeld[0]!.headers['webhook-id']);
      // Delivery is at least once: a success the killed process had not yet recorded is sent again,
      // with its webhook-id, so receivers can tell. Six events, six deliveries, whatever was repeated.
      expect(new Set(receiver.requests.map((q) => q.headers['webhook-id'])).size).toBe(6);
      expect(new Set(createdIds(receiver)).size).toBe(6);
      token = await clientCredentialsToken(instance.baseUrl, { scope: SCOPE });
      const list = await call(
        instance.baseUrl,
        'GET',
        `/v2/webhooks/${hook.body.webhook_id}/deliveries?limit=100`,
        {
          token,
        },
      );
      expect(list.body.data).toHaveLength(6);
      expect(list.body.data.every((d: { status: string }) => d.status === 'succeeded')).toBe(true);
    });
  },
);

describeWithRedisAndMongo(
  'two instances on Redis and MongoDB deliver each event once per endpoint',
  (urls) => {
    const stores = clusterStores(urls);
    const instances: Instance[] = [];
    const receivers: WebhookReceiver[] = [];
    afterAll(async () => {
      for (const instance of instances) await stopInstance(instance);
      await Promise.all(receivers.map((r) => r.close()));
      await removeClusterData(stores);
    });

    it('sends every event to every subscribed endpoint exactly once', async () => {
      // A generous attempt deadline: on a loaded machine a 500 ms one can expire after the receiver
      // got the request, and the retry (at least once, same webhook-id) is not what this test is about.
      const env = { ...clusterEnv('http://127.0.0.1:1', stores), ...fast, WEBHOOK_TIMEOUT_MS: '5000' };
      // One delivers on the event loop, the other on its delivery thread.
      instances.push(
        await startInstance('deliver-a', env),
        await startInstance('deliver-b', { ...env, WEBHOOK_DELIVERY_THREAD: 'true' }),
      );
      const [a, b] = instances as [Instance, Instance];
      const tokenA = await clientCredentialsToken(a.baseUrl, { scope: SCOPE });
      const tokenB = await clientCredentialsToken(b.baseUrl, { scope: SCOPE });
      receivers.push(await startReceiver(), await startReceiver());
      for (const r of receivers) {
        const res = await call(a.baseUrl, 'POST', '/v2/webhooks', {
          token: tokenA,
          json: { url: r.url, events: ['user.created'], secret: SECRET },
        });
        expect(res.status).toBe(201);
      }
      // The other instance hears of the new endpoints on the bus (or within its 5 s refresh).
      await new Promise((r) => setTimeout(r, 200));
      const ids = [
        ...(await createUsers(a.baseUrl, tokenA, 20, 'via-a')),
        ...(await createUsers(b.baseUrl, tokenB, 20, 'via-b')),
      ];
      for (const r of receivers) {
        await r.waitFor(40, 30_000);
        // Every instance polls every 100 ms; a duplicate would have arrived by now.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        expect(createdIds(r).sort()).toEqual([...ids].sort());
        expect(new Set(r.requests.map((q) => q.headers['webhook-id'])).size).toBe(40);
      }
    }, 120_000);
  },
);
