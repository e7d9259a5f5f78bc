/**
 * Picks and opens the adapters the configuration asks for: MONGODB_URI → mongo durable store,
 * REDIS_URL → redis artifacts and counters, and the embedded SQLite file in DATA_DIR for whatever is
 * left. Drivers are loaded only when used, so the embedded default starts small.
 */
import type { Config } from '../config/load-config.js';
import { EmbeddedArtifactStore } from './embedded/artifact-store.js';
import { EmbeddedCounterStore } from './embedded/counter-store.js';
import { EmbeddedDatabase } from './embedded/database.js';
import { EmbeddedDurableStore } from './embedded/durable-store.js';
import { LocalEventBus } from './local-event-bus.js';
import type { MongoDurableStore } from './mongo/durable-store.js';
import type { ArtifactStore, CounterStore, DurableStore, EventBus, Stores } from './ports.js';

export type StoreConfig = Pick<
  Config,
  'dataDir' | 'mongodbUri' | 'redisUrl' | 'redisKeyPrefix' | 'embeddedSweepIntervalS' | 'nodeEnv'
> &
  Partial<Pick<Config, 'userCacheTtlS'>>;

export async function createStores(config: StoreConfig): Promise<Stores> {
  let embedded: EmbeddedDatabase | undefined;
  const embeddedDb = () => (embedded ??= EmbeddedDatabase.open(config.dataDir));
  const sweepIntervalMs = config.embeddedSweepIntervalS * 1000;
  const opened: { close(): Promise<void> }[] = [];

  try {
    let durable: DurableStore;
    let mongo: MongoDurableStore | undefined;
    if (config.mongodbUri) {
      const { openMongoDurableStore } = await import('./mongo/index.js');
      durable = mongo = await openMongoDurableStore({ uri: config.mongodbUri });
    } else {
      durable = new EmbeddedDurableStore(embeddedDb());
    }
    opened.push(durable);

    let artifacts: ArtifactStore;
    let counters: CounterStore;
    let events: EventBus;
    if (config.redisUrl) {
      const { openRedisShortLived } = await import('./redis/index.js');
      const redis = await openRedisShortLived({
        url: config.redisUrl,
        keyPrefix: config.redisKeyPrefix,
      });
      ({ artifacts, counters, events } = redis);
      // The subscriber connection closes before the shared one.
      opened.push(redis.events, artifacts);
    } else {
      const embeddedCounters = new EmbeddedCounterStore(embeddedDb(), { sweepIntervalMs });
      artifacts = new EmbeddedArtifactStore(embeddedDb(), { sweepIntervalMs });
      counters = embeddedCounters;
      events = new LocalEventBus();
      opened.push(artifacts, embeddedCounters);
    }

    // Users by id from memory, changes announced on the bus (the embedded store has its own cache).
    mongo?.cacheUsers(events, (config.userCacheTtlS ?? 0) * 1000);

    // Outside production the schema follows the code on start; production runs `npm run migrate`.
    if (config.nodeEnv !== 'production') await durable.migrate();

    let closing: Promise<void> | undefined;
    return {
      durable,
      artifacts,
      counters,
      events,
      close: () => (closing ??= closeAll(opened)),
    };
  } catch (err) {
    await closeAll(opened);
    throw err;
  }
}

async function closeAll(stores: { close(): Promise<void> }[]): Promise<void> {
  const results = await Promise.allSettled(stores.map((s) => s.close()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
