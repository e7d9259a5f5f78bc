/**
 * The one ioredis client the redis adapters share: how it is opened and verified, how commands fail
 * when Redis is gone, how Lua scripts are run, and how it is closed.
 */
import { Redis, ReplyError } from 'ioredis';

import { StoreUnavailableError } from '../errors.js';
import type { LuaScript } from './scripts.js';

export interface RedisConnectionOptions {
  url: string;
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

export class RedisConnection {
  private closing: Promise<void> | undefined;

  private constructor(private readonly client: Redis) {}

  /** Connects, then checks that the server answers and supports what the adapters need. */
  static async open(options: RedisConnectionOptions): Promise<RedisConnection> {
    const client = new Redis(options.url, {
      // Connect explicitly, so a failure rejects open() instead of surfacing on the first command.
      lazyConnect: true,
      connectTimeout: options.timeoutMs,
      commandTimeout: options.commandTimeoutMs ?? options.timeoutMs,
      // Nothing waits for a connection that is not there: a request fails fast and the caller answers
      // 503, rather than piling up behind a dead server.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // Nothing is queued while disconnected, so come back quickly rather than backing off to 5 s;
      // the jitter keeps a fleet of instances from reconnecting in step.
      retryStrategy: (attempt) => Math.min(attempt * 100, 1000) + Math.floor(Math.random() * 100),
      // A command whose reply was lost may already have run; sending it again could count twice.
      autoResendUnfulfilledCommands: false,
      // disconnect() ends a socket that may already be dead and keeps a timer alive until this passes.
      disconnectTimeout: 500,
      // Commands issued in the same event-loop turn (by concurrent requests, or the two counters of
      // one rate check) go out in one write: fewer system calls per request under load.
      enableAutoPipelining: true,
    });
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
      throw new StoreUnavailableError(`redis at ${redactUrl(options.url)} is not usable: ${reason}`, {
        cause: err,
      });
    }
    return new RedisConnection(client);
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
  subscriber(onError?: (err: Error) => void): Redis {
    const sub = this.client.duplicate({
      lazyConnect: false,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });
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
async function probeCommands(client: Redis, probeKey: string): Promise<void> {
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
