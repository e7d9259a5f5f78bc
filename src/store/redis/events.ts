/**
 * Cross-instance notifications over Redis pub/sub (cache invalidation). Delivery is at most once:
 * an instance that is disconnected at the moment misses the message, which is why every cache that
 * listens also expires its entries after a short time.
 */
import type { Cluster, Redis } from 'ioredis';

import type { EventBus } from '../ports.js';
import type { RedisConnection } from './connection.js';
import type { KeyLayout } from './keys.js';

export class RedisEventBus implements EventBus {
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private sub: Redis | Cluster | undefined;

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: KeyLayout,
    private readonly onError?: (err: Error) => void,
  ) {}

  async publish(channel: string, message: string): Promise<void> {
    await this.redis.publish(this.keys.channel(channel), message);
  }

  subscribe(channel: string, handler: (message: string) => void): () => void {
    const full = this.keys.channel(channel);
    let set = this.handlers.get(full);
    if (!set) {
      set = new Set();
      this.handlers.set(full, set);
      void this.connection()
        .subscribe(full)
        .catch((err: Error) => this.onError?.(err));
    }
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  private connection(): Redis | Cluster {
    if (!this.sub) {
      const sub = this.redis.subscriber(this.onError);
      sub.on('message', (channel: string, message: string) => {
        for (const handler of this.handlers.get(channel) ?? []) handler(message);
      });
      this.sub = sub;
    }
    return this.sub;
  }

  async close(): Promise<void> {
    const sub = this.sub;
    this.sub = undefined;
    if (!sub) return;
    try {
      await sub.quit();
    } catch {
      sub.disconnect();
    }
  }
}
