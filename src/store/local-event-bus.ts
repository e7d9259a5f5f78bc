/** Notifications within one process: what the embedded default needs (it runs a single instance). */
import type { EventBus } from './ports.js';

export class LocalEventBus implements EventBus {
  private readonly handlers = new Map<string, Set<(message: string) => void>>();

  async publish(channel: string, message: string): Promise<void> {
    for (const handler of this.handlers.get(channel) ?? []) handler(message);
  }

  subscribe(channel: string, handler: (message: string) => void): () => void {
    let set = this.handlers.get(channel);
    if (!set) this.handlers.set(channel, (set = new Set()));
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  async close(): Promise<void> {}
}
