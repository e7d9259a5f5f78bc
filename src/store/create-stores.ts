/**
 * Picks and opens the adapters the configuration asks for: MONGODB_URI → mongo durable store,
 * REDIS_URL or REDIS_CLUSTER_NODES → redis artifacts and counters, and the embedded SQLite file in DATA_DIR for whatever is
 * left. Drivers are loaded only when used, so the embedded default starts small.
 */
import type { Config } from '../config/load-config.js';
import { EmbeddedArtifactStore } from './embedded/artifact-store.js';
import { EmbeddedCounterStore } from './embedded/counter-store.js';
import { EmbeddedDatabase } from './embedded/database.js';
import { EmbeddedDurableStore } from './embedded/durable-store.js';
import { LocalEventBus } from './local-event-bus.js';
import type { MongoDurableStore } from './mongo/durable-store.js';
import { isSqliteUnavailable } from './embedded/failures.js';
import { BackendGuard, guardStores, type GuardedStores } from './guarded-stores.js';
import { isMongoUnavailable } from './mongo/failures.js';
import type { ArtifactStore, CounterStore, DurableStore, EventBus, Stores } from './ports.js';

export type StoreConfig = Pick<
  Config,
  'dataDir' | 'mongodbUri' | 'redisUrl' | 'redisKeyPrefix' | 'embeddedSweepIntervalS' | 'nodeEnv'
> &
  Partial<
    Pick<
      Config,
      | 'redisClusterNodes'
      | 'userCacheTtlS'
      | 'redisTimeoutMs'
      | 'mongodbTimeoutMs'
      | 'storeBreakerFailures'
      | 'storeBreakerProbeMs'
    >
  >;

/** The defaults of config/defaults.env, for callers (tests, tools) that pass a partial config. */
const RESILIENCE_DEFAULTS = {
  redisTimeoutMs: 1000,
  mongodbTimeoutMs: 2000,
  storeBreakerFailures: 5,
  storeBreakerProbeMs: 500,
};

export async function createStores(config: StoreConfig): Promise<GuardedStores> {
  const resilience = { ...RESILIENCE_DEFAULTS, ...definedOf(config) };
  let embedded: EmbeddedDatabase | undefined;
  const embeddedDb = () => (embedded ??= EmbeddedDatabase.open(config.dataDir));
  const sweepIntervalMs = config.embeddedSweepIntervalS * 1000;
  const opened: { close(): Promise<void> }[] = [];

  try {
    let durable: DurableStore;
    let mongo: MongoDurableStore | undefined;
    if (config.mongodbUri) {
      const { openMongoDurableStore } = await import('./mongo/index.js');
      durable = mongo = await openMongoDurableStore({
        uri: config.mongodbUri,
        operationTimeoutMs: resilience.mongodbTimeoutMs,
      });
    } else {
      durable = new EmbeddedDurableStore(embeddedDb());
    }
    opened.push(durable);

    let artifacts: ArtifactStore;
    let counters: CounterStore;
    let events: EventBus;
    if (config.redisUrl || config.redisClusterNodes) {
      const { openRedisShortLived } = await import('./redis/index.js');
      const redis = await openRedisShortLived({
        url: config.redisUrl,
        clusterNodes: config.redisClusterNodes,
        keyPrefix: config.redisKeyPrefix,
        commandTimeoutMs: resilience.redisTimeoutMs,
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
    const raw: Stores = {
      durable,
      artifacts,
      counters,
      events,
      close: () => (closing ??= closeAll(opened)),
    };
    const guard = (backend: 'embedded' | 'mongo' | 'redis', ping: () => Promise<void>) =>
      new BackendGuard({
        backend,
        deadlineMs:
          backend === 'mongo'
            ? resilience.mongodbTimeoutMs
            : backend === 'redis'
              ? resilience.redisTimeoutMs
              : undefined,
        // The Redis adapter already turns every connection failure into StoreUnavailableError.
        isUnavailable:
          backend === 'mongo'
            ? isMongoUnavailable
            : backend === 'embedded'
              ? isSqliteUnavailable
              : () => false,
        ping,
        failureThreshold: resilience.storeBreakerFailures,
        probeIntervalMs: resilience.storeBreakerProbeMs,
        ...(backend === 'embedded' && embedded
          ? { around: (operation: () => unknown) => embedded!.call(operation) }
          : {}),
      });
    const durableGuard = guard(durable.kind, () => durable.ping());
    const shortLivedGuard =
      artifacts.kind === 'embedded' && durable.kind === 'embedded'
        ? durableGuard
        : guard(artifacts.kind, () => artifacts.ping());
    return guardStores(raw, { durable: durableGuard, shortLived: shortLivedGuard });
  } catch (err) {
    await closeAll(opened);
    throw err;
  }
}

function definedOf(config: StoreConfig): Partial<typeof RESILIENCE_DEFAULTS> {
  return Object.fromEntries(
    Object.keys(RESILIENCE_DEFAULTS)
      .map((key) => [key, config[key as keyof typeof RESILIENCE_DEFAULTS]])
      .filter(([, value]) => value !== undefined),
  );
}

async function closeAll(stores: { close(): Promise<void> }[]): Promise<void> {
  const results = await Promise.allSettled(stores.map((s) => s.close()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
