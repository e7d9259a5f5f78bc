/**
 * The redis short-lived store: oidc-provider artifacts and windowed counters over one shared ioredis
 * connection, on one Redis server or a Redis Cluster. The only entry point; the composition root
 * imports it lazily, so ioredis loads only when REDIS_URL or REDIS_CLUSTER_NODES is set.
 */
import type { ArtifactStore, CounterStore, EventBus } from '../ports.js';
import { RedisArtifactStore } from './artifact-store.js';
import { RedisConnection } from './connection.js';
import { RedisCounterStore } from './counter-store.js';
import { RedisEventBus } from './events.js';
import { keyLayout } from './keys.js';

export interface RedisShortLivedOptions {
  /** redis:// or rediss:// URL, with credentials and database number if needed; or else `clusterNodes`. */
  url?: string;
  /** Seed nodes of a Redis Cluster (redis:// or rediss:// URLs); keys then carry hash tags (keys.ts). */
  clusterNodes?: readonly string[];
  /** Prepended to every key (for example `latchkey:`), so deployments can share a Redis. */
  keyPrefix: string;
  /** How long opening may wait for Redis. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** How long each command may wait for its reply once open. Default 1000 ms. */
  commandTimeoutMs?: number;
  /** Connection errors after opening (for logging); ioredis reconnects by itself meanwhile. */
  onConnectionError?: (err: Error) => void;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_COMMAND_TIMEOUT_MS = 1000;

/**
 * Opens one connection and resolves once Redis has answered; rejects with StoreUnavailableError when
 * it does not within the timeout. Closing `artifacts` closes the connection the counters share.
 */
export async function openRedisShortLived(options: RedisShortLivedOptions): Promise<{
  artifacts: ArtifactStore;
  counters: CounterStore;
  events: EventBus & { close(): Promise<void> };
}> {
  const cluster = (options.clusterNodes?.length ?? 0) > 0;
  // A brace in the prefix would move or empty the hash tag that keeps each script in one slot.
  if (cluster && /[{}]/.test(options.keyPrefix)) {
    throw new RangeError('on a Redis Cluster the key prefix must not contain "{" or "}"');
  }
  const keys = keyLayout(options.keyPrefix, { cluster });
  const connection = await RedisConnection.open({
    url: options.url,
    clusterNodes: options.clusterNodes,
    timeoutMs: options.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    probeKey: keys.counter('probe'),
    onError: options.onConnectionError,
  });
  return {
    artifacts: new RedisArtifactStore(connection, keys),
    counters: new RedisCounterStore(connection, keys),
    events: new RedisEventBus(connection, keys, options.onConnectionError),
  };
}
