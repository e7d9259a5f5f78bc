import { Redis } from 'ioredis';

import { openRedisShortLived } from '../../src/store/redis/index.js';
import { REDIS_URL, describeWithBackend, uniqueName } from '../helpers/backends.js';
import { describeShortLivedContract } from './artifact-store.contract.js';

/** Every key under `prefix`, read page by page with SCAN (glob characters in the prefix escaped). */
async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

describeWithBackend('artifact and counter store contract: redis', 'REDIS_URL', REDIS_URL, (url) => {
  const keyPrefix = `${uniqueName('lk_test')}:`;
  // A separate client inspects what the adapter left behind, as an operator would.
  let inspector: Redis | undefined;

  describeShortLivedContract({
    open: async () => {
      const stores = await openRedisShortLived({ url, keyPrefix, connectTimeoutMs: 3000 });
      try {
        inspector = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
        await inspector.connect();
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
      const keys = await keysUnder(inspector, keyPrefix);
      if (keys.length > 0) await inspector.del(...keys);
      await inspector.quit();
    },
  });
});
