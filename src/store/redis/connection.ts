/**
 * The one ioredis client the redis adapters share: how it is opened and verified, how commands fail
 * when Redis is gone, how Lua scripts are run, and how it is closed. The client is a standalone (or
 * Sentinel-fronted) Redis given by one URL, or a Redis Cluster given by its seed nodes; both get the
 * same deadlines, the same fast failure while disconnected and the same reconnection pace.
 */
import { Cluster, Redis, ReplyError, type ClusterOptions, type RedisOptions } from 'ioredis';

import { StoreUnavailableError } from '../errors.js';
import type { LuaScript } from './scripts.js';

export interface RedisConnectionOptions {
  /** A redis:// or rediss:// URL of one server; or else `clusterNodes`. */
  url?: string;
  /**
   * Seed nodes of a Redis Cluster, each a redis:// or rediss:// URL (`redis://host:port`); the first
   * one's scheme, user name and password apply to every node the cluster announces.
   */
  clusterNodes?: readonly string[];
  /** How long opening may take. */
  timeoutMs: number;
  /** How long any later command may wait for its reply (ioredis rejects it then). */
  commandTimeoutMs?: number;
  /** A key name under the deployment's prefix, for the read-only capability check (ACLs may limit keys). */
  probeKey: string;
  /** Connection errors after opening (ioredis reconnects on its own); commands reject either way. */
  onError?: (err: Error) => void;
}

/** Settles like `work`, or rejects once `ms` have passed without an answer. */
async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Nothing is queued while disconnected, so come back quickly rather than backing off to 5 s; the
 * jitter keeps a fleet of instances from reconnecting in step.
 */
const reconnectDelay = (attempt: number) => Math.min(attempt * 100, 1000) + Math.floor(Math.random() * 100);

/** What every connection to a Redis server gets, standalone or one node of a cluster. */
function serverOptions(options: RedisConnectionOptions): RedisOptions {
  return {
    connectTimeout: options.timeoutMs,
    commandTimeout: options.commandTimeoutMs ?? options.timeoutMs,
    maxRetriesPerRequest: 1,
    // A command whose reply was lost may already have run; sending it again could count twice.
    autoResendUnfulfilledCommands: false,
    // disconnect() ends a socket that may already be dead and keeps a timer alive until this passes.
    disconnectTimeout: 500,
  };
}

/** Host and port of each seed node, and the credentials and TLS of the first, for ioredis' Cluster. */
function clusterSeeds(nodes: readonly string[]): {
  startup: { host: string; port: number }[];
  redisOptions: RedisOptions;
} {
  const startup = nodes.map((node) => {
    const url = new URL(node);
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 6379) };
  });
  const first = new URL(nodes[0]!);
  return {
    startup,
    redisOptions: {
      ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
      ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
      ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  };
}

/** A cluster client: the shared one (fails fast like the standalone client) or a subscriber. */
function createClusterClient(
  options: RedisConnectionOptions,
  overrides: { subscriber?: boolean } = {},
): Cluster {
  const { startup, redisOptions } = clusterSeeds(options.clusterNodes ?? []);
  const base = { ...serverOptions(options), ...redisOptions };
  const clusterOptions: ClusterOptions = overrides.subscriber
    ? {
        // As the standalone subscriber: waits for the cluster and resubscribes after a failover.
        enableOfflineQueue: true,
        clusterRetryStrategy: reconnectDelay,
        redisOptions: { ...base, maxRetriesPerRequest: null },
      }
    : {
        lazyConnect: true,
        enableOfflineQueue: false,
        clusterRetryStrategy: reconnectDelay,
        // Reading the slot map must end within the opening deadline too.
        slotsRefreshTimeout: options.timeoutMs,
        // ioredis would resend a command after a lost connection or CLUSTERDOWN, up to 16 times 100 ms:
        // past the deadline, and a lost reply may mean the command ran (a counter would count twice).
        // Fail at once as on one server; a redirection (MOVED, after a failover) is still followed.
        retryDelayOnFailover: 0,
        retryDelayOnClusterDown: 0,
        // Replicas may lag; a counter read there could miss the increment just made.
        scaleReads: 'master',
        enableAutoPipelining: true,
        redisOptions: base,
      };
  return new Cluster(startup, clusterOptions);
}

function createClient(options: RedisConnectionOptions): Redis | Cluster {
  if (options.clusterNodes && options.clusterNodes.length > 0) return createClusterClient(options);
  if (!options.url) throw new Error('redis: either url or clusterNodes is required');
  return new Redis(options.url, {
    ...serverOptions(options),
    // Connect explicitly, so a failure rejects open() instead of surfacing on the first command.
    lazyConnect: true,
    // Nothing waits for a connection that is not there: a request fails fast and the caller answers
    // 503, rather than piling up behind a dead server.
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
    // Commands issued in the same event-loop turn (by concurrent requests, or the two counters of
    // one rate check) go out in one write: fewer system calls per request under load.
    enableAutoPipelining: true,
  });
}

export class RedisConnection {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly client: Redis | Cluster,
    private readonly options: RedisConnectionOptions,
  ) {}

  /** Connects, then checks that the server answers and supports what the adapters need. */
  static async open(options: RedisConnectionOptions): Promise<RedisConnection> {
    const client = createClient(options);
    let lastError: Error | undefined;
    // Without a listener ioredis prints every reconnect failure to the console.
    client.on('error', (err: Error) => {
      lastError = err;
      options.onError?.(err);
    });

    try {
      await withTimeout(
        (async () => {
          await client.connect();
          await client.ping();
          await probeCommands(client, options.probeKey);
        })(),
        options.timeoutMs,
      );
    } catch (err) {
      client.disconnect();
      // connect() only says "Connection is closed."; the error event said why.
      let reason = err instanceof Error ? err.message : String(err);
      if (lastError && lastError !== err) reason += ` (${lastError.message})`;
      const where = options.url
        ? `redis at ${redactUrl(options.url)}`
        : `redis cluster at ${(options.clusterNodes ?? []).map(redactUrl).join(',')}`;
      throw new StoreUnavailableError(`${where} is not usable: ${reason}`, { cause: err });
    }
    return new RedisConnection(client, options);
  }

  async ping(): Promise<void> {
    await this.guard(() => this.client.ping());
  }

  /** Runs a script by its hash, sending the body only when the server does not know it yet. */
  run(script: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.guard(async () => {
      try {
        return await this.client.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (err) {
        // The script cache is empty after a restart or a failover.
        if (!(err instanceof ReplyError) || !(err as Error).message.startsWith('NOSCRIPT')) throw err;
        return await this.client.eval(script.lua, keys.length, ...keys, ...args);
      }
    });
  }

  /** Values of hash fields, null for each field (or the whole key) that is missing. */
  readFields(key: string, fields: string[]): Promise<(string | null)[]> {
    return this.guard(() => this.client.hmget(key, ...fields));
  }

  readString(key: string): Promise<string | null> {
    return this.guard(() => this.client.get(key));
  }

  async del(key: string): Promise<void> {
    await this.guard(() => this.client.del(key));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.guard(() => this.client.publish(channel, message));
  }

  /**
   * A second connection for SUBSCRIBE (a subscribed connection can run nothing else). It queues
   * while disconnected and resubscribes on reconnect (ioredis' default).
   */
  subscriber(onError?: (err: Error) => void): Redis | Cluster {
    // On a cluster, one node carries the subscription; PUBLISH on any node reaches every node.
    const sub =
      this.client instanceof Cluster
        ? createClusterClient(this.options, { subscriber: true })
        : this.client.duplicate({ lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null });
    sub.on('error', (err: Error) => onError?.(err));
    return sub;
  }

  /**
   * Redis answering with an error (a ReplyError: a script bug, a wrong type) is passed on as is;
   * anything else means no answer came (closed, not writable, timed out), which services must be
   * able to tell apart and answer with 503.
   */
  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof ReplyError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new StoreUnavailableError(`redis did not answer: ${reason}`, { cause: err });
    }
  }

  /** Waits for pending replies, then closes; falls back to dropping the socket when Redis is gone. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    })();
    return this.closing;
  }
}

/** PEXPIRETIME (Redis 7.0+) gives counters a window end that every instance agrees on. */
async function probeCommands(client: Redis | Cluster, probeKey: string): Promise<void> {
  try {
    await client.pexpiretime(probeKey);
  } catch (err) {
    if (err instanceof Error && /unknown command/i.test(err.message)) {
      throw new Error('Redis 7.0 or newer is required (PEXPIRETIME is missing)', { cause: err });
    }
    throw err;
  }
}

/** The URL without its password, fit for an error message that may reach a log. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the configured URL';
  }
}
