/**
 * The claim loop every consumer of the outbox shares (webhook delivery, mail): due deliveries of the
 * consumer's endpoints (by endpoint id prefix) are claimed with a lease, so that with several
 * instances each attempt is made by exactly one of them and a dead instance's claims come back when
 * their leases expire. Only as many are claimed as there are free slots (`concurrency`); endpoints
 * already at `endpointConcurrency` attempts are left out of the claim, and what an endpoint gets
 * beyond its limit waits in its lanes, so one slow endpoint never holds up the others. Subclasses make
 * the attempts.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import type { OutboxDelivery, OutboxRepository } from '../store/ports.js';

export interface OutboxWorkerOptions {
  /** Which endpoints' deliveries this worker claims (`wh_`, `mail_`). */
  endpointPrefix: string;
  concurrency: number;
  endpointConcurrency: number;
  pollMs: number;
  /** How long a claim lasts: the longest an attempt may take, waits in its lane included. */
  leaseMs: number;
  log: { warn(obj: object, msg: string): void };
  /** Names the consumer in log lines. */
  label: string;
}

/**
 * How long a wake-up waits before claiming, so that a burst of new deliveries is claimed in one
 * statement rather than one each (a few ms of lag for a fraction of the store work).
 */
const WAKE_DELAY_MS = 15;

export abstract class OutboxWorker {
  /** Who holds this instance's leases: unique per process. */
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly perEndpoint = new Map<string, number>();
  protected running = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private wakePending = false;

  protected constructor(
    protected readonly outbox: OutboxRepository,
    private readonly loop: OutboxWorkerOptions,
  ) {}

  /** One attempt of a claimed delivery; must record its outcome and never throw. */
  protected abstract attempt(delivery: OutboxDelivery): Promise<void>;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops claiming and waits until the attempts in flight are over. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.ticking;
    await Promise.allSettled([...this.inFlight]);
  }

  /** New deliveries were enqueued: claim shortly (a burst is claimed in one go). */
  wake(): void {
    this.claimSoon(WAKE_DELAY_MS);
  }

  /** A slot freed: claim again now (more may be due; a busy endpoint was left out of the last claim). */
  private kick(): void {
    this.claimSoon(0);
  }

  /** Claims within `delayMs`, or right after the claim under way; never schedules two. */
  private claimSoon(delayMs: number): void {
    if (!this.running) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (delayMs > 0 && this.wakePending) return;
    this.wakePending = true;
    this.schedule(delayMs);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.wakePending = false;
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        if (!this.running) return;
        if (this.again) {
          this.again = false;
          this.schedule(0);
        } else {
          this.schedule(this.loop.pollMs);
        }
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const free = this.loop.concurrency - this.inFlight.size;
    if (free <= 0) return;
    const busy = [...this.perEndpoint]
      .filter(([, n]) => n >= this.loop.endpointConcurrency)
      .map(([id]) => id);
    let claimed: OutboxDelivery[];
    try {
      claimed = await this.outbox.claimDue(new Date(), free, this.loop.leaseMs, this.owner, {
        endpointPrefix: this.loop.endpointPrefix,
        excludeEndpoints: busy,
      });
    } catch (err) {
      this.loop.log.warn({ err }, `${this.loop.label} could not claim due deliveries; trying again`);
      return;
    }
    // Per endpoint, in order: what exceeds an endpoint's limit waits here for its turn.
    const queues = new Map<string, OutboxDelivery[]>();
    for (const delivery of claimed) {
      const queue = queues.get(delivery.endpoint_id) ?? [];
      queue.push(delivery);
      queues.set(delivery.endpoint_id, queue);
    }
    for (const [endpointId, queue] of queues) {
      const slots = Math.max(1, this.loop.endpointConcurrency - (this.perEndpoint.get(endpointId) ?? 0));
      for (let lane = 0; lane < Math.min(slots, queue.length); lane += 1) this.track(endpointId, queue);
    }
    if (claimed.length === free) this.again = true; // there may be more due
  }

  /** One lane of an endpoint: its queued deliveries, one after another. */
  private track(endpointId: string, queue: OutboxDelivery[]): void {
    this.perEndpoint.set(endpointId, (this.perEndpoint.get(endpointId) ?? 0) + 1);
    const lane = (async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await this.attempt(next);
    })().finally(() => {
      this.inFlight.delete(lane);
      const left = (this.perEndpoint.get(endpointId) ?? 1) - 1;
      if (left > 0) this.perEndpoint.set(endpointId, left);
      else this.perEndpoint.delete(endpointId);
      this.kick();
    });
    this.inFlight.add(lane);
  }
}

/** The next wait of a retry schedule with ±`jitter` (a fraction), or undefined after the last. */
export function retryWait(
  schedule: readonly number[],
  attempts: number,
  random: () => number,
  jitter = 0.1,
): number | undefined {
  const wait = schedule[attempts - 1];
  return wait === undefined ? undefined : Math.round(wait * (1 + jitter * (2 * random() - 1)));
}
