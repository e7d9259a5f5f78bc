/**
 * Where services record domain events. `record(change, build)` runs a change through the durable
 * store and appends the events built from its result to the outbox, with one delivery per
 * subscribed webhook endpoint, as one unit (DurableStore.atomically: one transaction where the
 * backend has them). It resolves once all of that is durable, so a request is answered only after
 * its events are recorded; then the in-process consumers (analytics rollups, the delivery worker's
 * wake-up) hear of the events. A consumer that fails is logged and never fails the change.
 *
 * Where this instance delivers webhooks (handOffTo), the webhook deliveries of the unit are stored
 * already leased to its delivery worker, as many as the worker has room for, and handed to it once
 * the unit is durable: no claim statement, no wake-up wait. The rest is enqueued unleased and the
 * workers are woken to claim it.
 */
import type { DurableStore, EventActor, NewDelivery, OutboxDelivery, OutboxEvent } from '../store/ports.js';
import type { Actor } from '../services/audit.js';
import { deliveryId } from '../store/outbox-shared.js';
import { toOutboxEvent, type DomainEvent, type EventType } from './catalog.js';
import type { HandOff } from './outbox-worker.js';

/** A consumer that hears of events once they are durable (analytics rollups, for one). */
export interface EventConsumer {
  readonly name: string;
  consume(events: readonly DomainEvent[]): Promise<void>;
}

/** An endpoint that wants some event types: one delivery per matching event is enqueued for it. */
export interface Subscription {
  endpointId: string;
  accepts(type: EventType): boolean;
}

export interface SubscriptionSource {
  /** The subscriptions in force now (a cached list: this runs for every recorded event). */
  current(): Promise<readonly Subscription[]>;
}

export interface RecorderLog {
  warn(obj: object, msg: string): void;
}

/** The event actor of an audit actor. */
export function eventActor(actor: Actor): EventActor {
  return { type: actor.actor_type, id: actor.actor_id };
}

/** How many recorded events an instance keeps at hand for its delivery worker. */
const RECENT_EVENTS = 10_000;

export const SYSTEM_ACTOR: EventActor = { type: 'system', id: 'latchkey' };

/**
 * An outbox event for one consumer's endpoint only (an e-mail to send): recorded with the change,
 * never fanned out to webhooks nor given to the event consumers.
 */
export interface DirectRecord {
  event: OutboxEvent;
  endpointId: string;
}

/** Who takes webhook deliveries at enqueue (the instance's delivery worker). */
export interface HandOffTaker {
  reserveHandOff(wanted: number): HandOff | undefined;
}

export class EventRecorder {
  private readonly consumers: EventConsumer[] = [];
  private subscriptions: SubscriptionSource | undefined;
  private taker: HandOffTaker | undefined;

  constructor(
    private readonly store: DurableStore,
    private readonly log?: RecorderLog,
  ) {}

  /** Where the subscriptions come from (the webhook service, once it exists). */
  subscribeFrom(source: SubscriptionSource): void {
    this.subscriptions = source;
  }

  /** The worker that makes the first attempt of the webhook deliveries this instance enqueues. */
  handOffTo(taker: HandOffTaker): void {
    this.taker = taker;
  }

  addConsumer(consumer: EventConsumer): void {
    this.consumers.push(consumer);
  }

  /**
   * Runs `change`, then records what `build` makes of its result. `change` must only call the
   * durable store's repositories (see DurableStore.atomically); with `build` returning no event
   * nothing is recorded. `direct` adds records for one endpoint each (mail), in the same unit.
   */
  async record<T>(
    change: () => Promise<T>,
    build: (result: T) => DomainEvent[],
    direct?: (result: T) => DirectRecord[],
  ): Promise<T> {
    const subscriptions = (await this.subscriptions?.current()) ?? [];
    let events: DomainEvent[] = [];
    let enqueued = false;
    let unleased: string[] | undefined;
    let handOff: HandOff | undefined;
    let leased: NewDelivery[] = [];
    let leasedIds: string[] = [];
    let result: T;
    try {
      result = await this.store.atomically(async () => {
        handOff?.cancel();
        handOff = undefined;
        leased = [];
        leasedIds = [];
        unleased = undefined;
        const value = await change();
        events = build(value);
        const directs = direct?.(value) ?? [];
        if (events.length > 0 || directs.length > 0) {
          await this.store.outbox.append([...events.map(toOutboxEvent), ...directs.map((d) => d.event)]);
          const fanned = fanOut(events, subscriptions);
          handOff = fanned.length > 0 ? this.taker?.reserveHandOff(fanned.length) : undefined;
          leased = handOff ? fanned.slice(0, handOff.count) : [];
          const rest = [
            ...(handOff ? fanned.slice(handOff.count) : fanned),
            ...directs.map((d) => ({
              event_id: d.event.id,
              endpoint_id: d.endpointId,
              now: d.event.timestamp,
            })),
          ];
          if (handOff && leased.length > 0) {
            leasedIds = await this.store.outbox.enqueueLeased(leased, handOff);
            enqueued = true;
          }
          if (rest.length > 0) {
            await this.store.outbox.enqueueQuietly(rest);
            enqueued = true;
            unleased = [...new Set(rest.map((d) => d.endpoint_id))];
          }
        }
        return value;
      });
    } catch (err) {
      handOff?.cancel();
      throw err;
    }
    if (enqueued) this.remember(events);
    if (handOff) handOff.accept(handedOver(leased, leasedIds, handOff));
    if (unleased) this.wake(unleased);
    if (events.length > 0) await this.recorded(events);
    return result;
  }

  /** Told after events were recorded and deliveries enqueued (the delivery worker wakes up). */
  readonly wakeups = new Set<(endpoints?: readonly string[]) => void>();
  /**
   * The events this instance recorded lately, by id, so that its delivery worker need not read them
   * back from the store (bounded; an event not here is read from the outbox).
   */
  private readonly recentlyRecorded = new Map<string, DomainEvent>();

  /** A recently recorded event of this instance, if it is still remembered. */
  recent(id: string): DomainEvent | undefined {
    return this.recentlyRecorded.get(id);
  }

  private remember(events: readonly DomainEvent[]): void {
    for (const event of events) this.recentlyRecorded.set(event.id, event);
    while (this.recentlyRecorded.size > RECENT_EVENTS) {
      this.recentlyRecorded.delete(this.recentlyRecorded.keys().next().value!);
    }
  }

  /** Wakes whoever delivers (a retry was asked for); `endpoints`: only these got new deliveries. */
  wake(endpoints?: readonly string[]): void {
    for (const listener of this.wakeups) listener(endpoints);
  }

  /** Records one event for one endpoint only (a webhook's test ping); returns its delivery. */
  async deliverTo(endpointId: string, event: DomainEvent): Promise<OutboxDelivery> {
    const [delivery] = await this.store.atomically(async () => {
      await this.store.outbox.append([toOutboxEvent(event)]);
      const now = new Date(event.timestamp);
      return this.store.outbox.enqueue([
        { event_id: event.id, endpoint_id: endpointId, now, next_attempt_at: now },
      ]);
    });
    this.wake();
    return delivery!;
  }

  /** Records events that follow no change of ours (a sign-in, a failed one, a ping). */
  async emit(...events: DomainEvent[]): Promise<void> {
    await this.record(
      async () => undefined,
      () => events,
    );
  }

  private async recorded(events: readonly DomainEvent[]): Promise<void> {
    await Promise.all(
      this.consumers.map(async (consumer) => {
        try {
          await consumer.consume(events);
        } catch (err) {
          this.log?.warn(
            { err, consumer: consumer.name, events: events.map((e) => e.id) },
            'an event consumer failed; the events are recorded',
          );
        }
      }),
    );
  }
}

/** The deliveries stored leased by a hand-off, as a claim would have returned them. */
function handedOver(
  leased: readonly NewDelivery[],
  ids: readonly string[],
  handOff: HandOff,
): OutboxDelivery[] {
  const stored = new Set(ids);
  const deliveries: OutboxDelivery[] = [];
  for (const input of leased) {
    const id = deliveryId(input.event_id, input.endpoint_id);
    if (!stored.has(id)) continue;
    stored.delete(id);
    const now = input.now ?? new Date();
    deliveries.push({
      id,
      event_id: input.event_id,
      endpoint_id: input.endpoint_id,
      status: 'pending',
      attempts: 1,
      next_attempt_at: input.next_attempt_at ?? now,
      lease_owner: handOff.owner,
      lease_expires_at: handOff.until,
      last_status: null,
      last_error: null,
      latency_ms: null,
      created_at: now,
      updated_at: now,
      finished_at: null,
    });
  }
  return deliveries;
}

/** One delivery per (event, subscribed endpoint). */
export function fanOut(
  events: readonly DomainEvent[],
  subscriptions: readonly Subscription[],
): NewDelivery[] {
  const deliveries: NewDelivery[] = [];
  for (const event of events) {
    const now = new Date(event.timestamp);
    for (const subscription of subscriptions) {
      if (subscription.accepts(event.type))
        deliveries.push({
          event_id: event.id,
          endpoint_id: subscription.endpointId,
          now,
          next_attempt_at: now,
        });
    }
  }
  return deliveries;
}
