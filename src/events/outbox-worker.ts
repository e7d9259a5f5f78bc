/**
 * The claim loop every consumer of the outbox shares (webhook delivery, mail): due deliveries of the
 * consumer's endpoints (by endpoint id prefix) are claimed with a lease, so that with several
 * instances each attempt is made by exactly one of them and a dead instance's claims come back when
 * their leases expire. Only as many are claimed as there are free slots (`concurrency`); endpoints
 * already at `endpointConcurrency` attempts are left out of the claim, and what an endpoint gets
 * beyond its limit waits in its lanes, so one slow endpoint never holds up the others. Subclasses make
 * the attempts.
 *
 * Hand-off: deliveries this instance enqueues itself can skip the claim. The recorder reserves room
 * here before its unit (reserveHandOff), stores those deliveries already leased to this worker
 * (OutboxRepository.enqueueLeased) and, once the unit is durable, hands them over: they go straight
 * into their endpoint's lanes. Room is what is left of `concurrency` after the deliveries this worker
 * holds (claimed or handed over, not yet recorded), so its waits stay within the lease as a claim's
 * do; what does not fit is enqueued unleased and claimed as usual. A hand-off this worker never
 * takes (it stopped, the process died) is claimed by anyone once its lease expires.
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

/** Room reserved for deliveries about to be enqueued leased to this worker (see the top). */
export interface HandOff {
  readonly owner: string;
  /** The lease to store them with. */
  readonly until: Date;
  /** How many of them this worker takes (the first `count`). */
  readonly count: number;
  /** The unit is durable: these deliveries (at most `count`) are this worker's to attempt. */
  accept(deliveries: OutboxDelivery[]): void;
  /** The unit failed or stored fewer: the room is given back. */
  cancel(): void;
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
  /** Handed-over deliveries per endpoint, waiting for a lane of theirs. */
  private readonly handed = new Map<string, OutboxDelivery[]>();
  /** Deliveries claimed or handed over and not yet attempted to the end. */
  private held = 0;
  /** Room promised to hand-offs under way. */
  private reserved = 0;
  /** The endpoints the last claim left out, when it found nothing more due beside them. */
  private nothingDueBeside: Set<string> | undefined;
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

  /**
   * Room for up to `wanted` deliveries enqueued leased to this worker, or undefined when it is not
   * running or is full. Exactly one of accept or cancel must follow.
   */
  reserveHandOff(wanted: number): HandOff | undefined {
    if (!this.running) return undefined;
    const count = Math.min(wanted, this.loop.concurrency - this.held - this.reserved);
    if (count <= 0) return undefined;
    this.reserved += count;
    let open = true;
    const close = (): boolean => {
      if (!open) return false;
      open = false;
      this.reserved -= count;
      return true;
    };
    return {
      owner: this.owner,
      until: new Date(Date.now() + this.loop.leaseMs),
      count,
      accept: (deliveries) => {
        if (close()) this.takeOver(deliveries.slice(0, count));
      },
      cancel: () => void close(),
    };
  }

  /** Handed-over deliveries into their endpoints' lanes (new lanes up to the endpoint's limit). */
  private takeOver(deliveries: OutboxDelivery[]): void {
    // Stopped meanwhile: the leases expire and the deliveries are claimed again.
    if (!this.running || deliveries.length === 0) return;
    this.held += deliveries.length;
    const touched = new Set<string>();
    for (const delivery of deliveries) {
      let queue = this.handed.get(delivery.endpoint_id);
      if (!queue) {
        queue = [];
        this.handed.set(delivery.endpoint_id, queue);
      }
      queue.push(delivery);
      touched.add(delivery.endpoint_id);
    }
    for (const endpointId of touched) {
      const queue = this.handed.get(endpointId)!;
      const free = this.loop.endpointConcurrency - (this.perEndpoint.get(endpointId) ?? 0);
      for (let lane = 0; lane < Math.min(free, queue.length); lane += 1) this.track(endpointId, queue);
    }
  }

  /**
   * New deliveries were enqueued (`endpoints`: for these only): claim shortly (a burst is claimed in
   * one go). Not when they all went to endpoints at their limit that the last claim found nothing
   * due beside: such a claim could only scan their backlog again to find nothing; their lanes claim
   * again as they free up.
   */
  wake(endpoints?: readonly string[]): void {
    const nothingElse = this.nothingDueBeside;
    if (
      endpoints &&
      nothingElse &&
      endpoints.every(
        (id) => nothingElse.has(id) && (this.perEndpoint.get(id) ?? 0) >= this.loop.endpointConcurrency,
      )
    )
      return;
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
    this.held += claimed.length;
    this.nothingDueBeside = claimed.length < free ? new Set(busy) : undefined;
    if (claimed.length === free) this.again = true; // there may be more due
  }

  /** One lane of an endpoint: its queued deliveries, then those handed over, one after another. */
  private track(endpointId: string, queue: OutboxDelivery[]): void {
    this.perEndpoint.set(endpointId, (this.perEndpoint.get(endpointId) ?? 0) + 1);
    const next = () => queue.shift() ?? this.handed.get(endpointId)?.shift();
    const lane = (async () => {
      for (let delivery = next(); delivery; delivery = next()) {
        try {
          await this.attempt(delivery);
        } finally {
          this.held -= 1;
        }
      }
    })().finally(() => {
      if (this.handed.get(endpointId)?.length === 0) this.handed.delete(endpointId);
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
