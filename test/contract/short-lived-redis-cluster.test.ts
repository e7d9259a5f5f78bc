/**
 * The artifact and counter store contract on a Redis Cluster of three masters, where a script whose
 * keys span hash slots fails with CROSSSLOT: the suite passing proves every script stays in one slot.
 * Also: where the keys land, and the event bus between two connections through the cluster.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { Cluster } from 'ioredis';

import { loadConfig } from '../../src/config/load-config.js';
import { createStores } from '../../src/store/create-stores.js';
import { openRedisShortLived } from '../../src/store/redis/index.js';
import {
  REDIS_CLUSTER_NODES,
  clusterNodeUrls,
  describeWithBackend,
  tempDir,
  uniqueName,
} from '../helpers/backends.js';
import { describeShortLivedContract } from './artifact-store.contract.js';

/** Every key under `prefix` on every master (SCAN sees one node only). */
async function keysUnder(cluster: Cluster, prefix: string): Promise<string[]> {
  const pattern = `${prefix.replace(/[*?[\]\\{}]/g, '\\$&')}*`;
  const found: string[] = [];
  for (const node of cluster.nodes('master')) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      found.push(...keys);
      cursor = next;
    } while (cursor !== '0');
  }
  return found;
}

async function openInspector(nodes: string[]): Promise<Cluster> {
  const inspector = new Cluster(
    nodes.map((n) => ({ host: new URL(n).hostname, port: Number(new URL(n).port) })),
    { lazyConnect: true, enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 1 } },
  );
  await inspector.connect();
  return inspector;
}

describeWithBackend(
  'artifact and counter store contract: redis cluster',
  'REDIS_CLUSTER_NODES',
  REDIS_CLUSTER_NODES,
  (nodes) => {
    const clusterNodes = clusterNodeUrls(nodes);
    const keyPrefix = `${uniqueName('lk_test')}:`;
    // A separate client inspects what the adapter left behind, as an operator would.
    let inspector: Cluster | undefined;

    describeShortLivedContract({
      open: async () => {
        const stores = await openRedisShortLived({ clusterNodes, keyPrefix, connectTimeoutMs: 3000 });
        try {
          inspector = await openInspector(clusterNodes);
        } catch (err) {
          await stores.artifacts.close();
          throw err;
        }
        return stores;
      },
      entriesWithoutExpiry: async () => {
        const keys = await keysUnder(inspector!, keyPrefix);
        const ttls = await Promise.all(keys.map((key) => inspector!.ttl(key)));
        return keys.filter((_, i) => ttls[i] === -1);
      },
      destroy: async () => {
        if (!inspector) return;
        // One DEL per key: a DEL of several keys must stay in one slot too.
        await Promise.all((await keysUnder(inspector, keyPrefix)).map((key) => inspector!.del(key)));
        await inspector.quit();
      },
    });
  },
);

describeWithBackend(
  'redis cluster: key slots and the event bus',
  'REDIS_CLUSTER_NODES',
  REDIS_CLUSTER_NODES,
  (nodes) => {
    const clusterNodes = clusterNodeUrls(nodes);
    const keyPrefix = `${uniqueName('lk_test')}:`;
    const opened: Awaited<ReturnType<typeof openRedisShortLived>>[] = [];
    let inspector: Cluster;

    beforeAll(async () => {
      for (let i = 0; i < 2; i += 1) {
        opened.push(await openRedisShortLived({ clusterNodes, keyPrefix, connectTimeoutMs: 3000 }));
      }
      inspector = await openInspector(clusterNodes);
    });
    afterAll(async () => {
      if (inspector) {
        await Promise.all((await keysUnder(inspector, keyPrefix)).map((key) => inspector.del(key)));
        await inspector.quit();
      }
      for (const stores of opened) {
        await stores.events.close();
        await stores.artifacts.close();
      }
    });

    it('keeps every artifact key in one slot and every counter key in another', async () => {
      const [{ artifacts, counters }] = opened as [(typeof opened)[number]];
      const grantId = uniqueName('grant');
      await artifacts.adapterFor('Session').upsert('s1', { uid: 'u1', accountId: 'acc1', exp: 0 }, 60);
      await artifacts.adapterFor('AccessToken').upsert('t1', { grantId, accountId: 'acc1' }, 60);
      await artifacts.adapterFor('DeviceCode').upsert('d1', { grantId, userCode: 'UC-1' }, 60);
      await counters.admit({
        windows: [{ key: 'rl:hour:x', windowSeconds: 60, limit: 10 }],
        quota: {
          key: 'q:x',
          now: new Date(),
          quota: 5,
          credits: 0,
          periodEnd: new Date(Date.now() + 60_000),
          amount: 1,
        },
      });
      await counters.addDistinct([{ key: 'hll:x', members: ['m'], ttlSeconds: 60 }]);
      await counters.addLabels('labels:x', ['l'], 60);

      const keys = await keysUnder(inspector, keyPrefix);
      const slotOf = async (key: string) => Number(await inspector.cluster('KEYSLOT', key));
      const artifactSlots = new Set(
        await Promise.all(keys.filter((k) => k.startsWith(`${keyPrefix}{a}`)).map(slotOf)),
      );
      const counterSlots = new Set(
        await Promise.all(keys.filter((k) => k.startsWith(`${keyPrefix}{c}`)).map(slotOf)),
      );
      // Session, uid, account index, two tokens, grant index, user code; counter, quota, hll, labels.
      expect(keys.filter((k) => k.startsWith(`${keyPrefix}{a}`))).toHaveLength(7);
      expect(keys.filter((k) => k.startsWith(`${keyPrefix}{c}`))).toHaveLength(4);
      expect(keys).toHaveLength(11);
      expect(artifactSlots.size).toBe(1);
      expect(counterSlots.size).toBe(1);
      expect([...artifactSlots][0]).not.toBe([...counterSlots][0]);

      // Revocation walks the indexes within that slot.
      await artifacts.adapterFor('AccessToken').revokeByGrantId(grantId);
      expect(await artifacts.adapterFor('DeviceCode').findByUserCode('UC-1')).toBeUndefined();
      expect(await artifacts.revokeByAccountId('acc1')).toBe(1);
      expect(await artifacts.adapterFor('Session').findByUid('u1')).toBeUndefined();
    });

    it('is what the server opens when REDIS_CLUSTER_NODES is set', async () => {
      const dir = tempDir();
      const config = loadConfig({
        env: {
          REDIS_CLUSTER_NODES: nodes,
          REDIS_KEY_PREFIX: keyPrefix,
          DATA_DIR: dir.path,
          NODE_ENV: 'test',
        },
      });
      const stores = await createStores(config);
      try {
        expect(stores.artifacts.kind).toBe('redis');
        expect(stores.counters.kind).toBe('redis');
        await stores.artifacts.adapterFor('Session').upsert('from-config', { uid: 'u-config' }, 60);
        const keys = await keysUnder(inspector, `${keyPrefix}{a}Session:from-config`);
        expect(keys).toEqual([`${keyPrefix}{a}Session:from-config`]);
        expect(await stores.artifacts.adapterFor('Session').findByUid('u-config')).toEqual({
          uid: 'u-config',
        });
      } finally {
        await stores.close();
        dir.remove();
      }
    });

    it('delivers a message published on one connection to a subscriber on another', async () => {
      const [a, b] = opened as [(typeof opened)[number], (typeof opened)[number]];
      const heard: string[] = [];
      const stop = b.events.subscribe('cluster-test', (message) => heard.push(message));
      // Subscribing completes in the background; publish until B's connection hears A's messages.
      for (let i = 0; i < 100 && !heard.includes('probe'); i += 1) {
        await a.events.publish('cluster-test', 'probe');
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(heard).toContain('probe');
      await a.events.publish('cluster-test', 'after');
      for (let i = 0; i < 100 && !heard.includes('after'); i += 1) {
        await new Promise((r) => setTimeout(r, 20));
      }
      stop();
      expect(heard).toContain('after');
    });
  },
);
