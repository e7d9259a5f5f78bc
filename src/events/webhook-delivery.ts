/**
 * Webhook delivery: the worker that sends what the EventRecorder enqueued in the outbox.
 *
 * - Claims: due deliveries are claimed from the outbox with a lease (OutboxRepository.claimDue), so
 *   with several instances each attempt is made by exactly one of them; a lease that expires
 *   (the instance died) makes the delivery claimable again, and pending ones resume after a restart.
 *   Only as many are claimed as there are free slots (WEBHOOK_CONCURRENCY), and endpoints already at
 *   WEBHOOK_ENDPOINT_CONCURRENCY attempts are left out of the claim, so a slow endpoint never holds
 *   up the others. The lease covers the longest local wait plus one attempt's deadline.
 * - Hand-off: the deliveries of this instance's own new events skip the claim: the recorder stores
 *   them leased to this worker and hands them over once durable (OutboxWorker.reserveHandOff).
 * - Attempts: through the outbound client (src/http/outbound.ts: SSRF guard against the address
 *   actually connected to, WEBHOOK_TIMEOUT_MS deadline, no redirects followed), signed by
 *   webhook-signing.ts. `webhook-id` is the delivery id, the same for an event and an endpoint on
 *   every attempt, so receivers can de-duplicate. With `thread` (WEBHOOK_DELIVERY_THREAD) the
 *   signing and sending happen on a worker thread (webhook-thread.ts), which also applies the
 *   concurrency limits; everything else, outcomes included, stays here.
 * - Outcomes: a 2xx succeeds; 410 Gone makes the delivery dead and disables the endpoint; anything
 *   else (another status, a redirect, a timeout, a refused address) fails and is retried after the
 *   next wait of WEBHOOK_RETRY_SCHEDULE with ±10% jitter, then dead. An endpoint whose attempts
 *   have all failed for WEBHOOK_DISABLE_AFTER_FAILING_S is disabled, with an audit entry saying why.
 * - Retention: finished deliveries and events older than EVENT_RETENTION_DAYS are purged hourly.
 */
import type { WebhookOutcome } from '../observability/metrics.js';
import {
  createOutboundAgents,
  outboundRequest,
  OutboundError,
  type OutboundAgents,
  type OutboundErrorReason,
  type OutboundResolver,
} from '../http/outbound.js';
import type { OutboxDelivery, OutboxRepository, WebhookRecord } from '../store/ports.js';
import type { WebhookService } from '../services/webhooks.js';
import { fromOutboxEvent, webhookBody, type DomainEvent } from './catalog.js';
import { OutboxWorker, retryWait } from './outbox-worker.js';
import { signWebhook } from './webhook-signing.js';
import { WebhookThread } from './webhook-thread-client.js';

export interface DeliveryWorkerOptions {
  timeoutMs: number;
  /** Waits before each retry, in milliseconds. */
  schedule: readonly number[];
  allowHttp: boolean;
  allowPrivateNetworks: boolean;
  concurrency: number;
  endpointConcurrency: number;
  disableAfterFailingMs: number;
  pollMs: number;
  retentionDays: number;
  userAgent: string;
  /**
   * Sign and send on a worker thread of this process (WEBHOOK_DELIVERY_THREAD) rather than on the
   * event loop; `lookup` is then not used (the thread resolves with the system resolver).
   */
  thread?: boolean;
  lookup?: OutboundResolver;
  /** An event this instance recorded lately, kept in memory (EventRecorder.recent). */
  recentEvent?: (id: string) => DomainEvent | undefined;
  /** Random number in [0, 1) for the jitter (tests pin it). */
  random?: () => number;
  observe?: (outcome: WebhookOutcome, seconds: number) => void;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

/** Only webhook endpoints' deliveries; other consumers of the outbox (mail) claim their own. */
const WEBHOOK_ENDPOINTS = 'wh_';
const PURGE_INTERVAL_MS = 3_600_000;
/** How long an endpoint (and its decrypted secrets) is used from memory; changes drop it at once. */
const ENDPOINT_CACHE_MS = 1000;
/** With the delivery thread: attempts held here per request the thread may have on the wire. */
const THREAD_HELD = 8;

export class WebhookDeliveryWorker extends OutboxWorker {
  private purgeTimer: NodeJS.Timeout | undefined;
  private readonly random: () => number;
  /** Aborted by stop(): attempts in flight end at once and are recorded as failed (retried later). */
  private stopping = new AbortController();
  private agents: OutboundAgents | undefined;
  private thread: WebhookThread | undefined;
  private readonly endpoints = new Map<string, { at: number; webhook: WebhookRecord; secrets: string[] }>();

  constructor(
    outbox: OutboxRepository,
    private readonly webhooks: WebhookService,
    private readonly options: DeliveryWorkerOptions,
  ) {
    // With the thread, the limits on requests at once are the thread's; this loop holds several
    // times as many, so that the event loop's turns (each result comes back in one, each next
    // attempt leaves in one) do not pace an endpoint's requests while the event loop is busy.
    const held = options.thread ? THREAD_HELD : 1;
    // The longest an attempt waits here or in the thread's queue: its endpoint's share, or all the
    // instance holds, sent so many at a time.
    const waits = Math.max(
      Math.ceil(options.concurrency / options.endpointConcurrency),
      options.thread ? THREAD_HELD : 0,
    );
    super(outbox, {
      endpointPrefix: WEBHOOK_ENDPOINTS,
      concurrency: options.concurrency * held,
      endpointConcurrency: options.endpointConcurrency * held,
      pollMs: options.pollMs,
      leaseMs: (waits + 1) * options.timeoutMs + 5000,
      log: options.log,
      label: 'webhook delivery',
    });
    this.random = options.random ?? Math.random;
    webhooks.changes.add((id) => this.endpoints.delete(id));
  }

  /** The endpoint and the secrets signing for it now, from memory for up to ENDPOINT_CACHE_MS. */
  private async endpoint(id: string): Promise<{ webhook: WebhookRecord; secrets: string[] } | null> {
    const cached = this.endpoints.get(id);
    if (cached && Date.now() - cached.at < ENDPOINT_CACHE_MS) return cached;
    const webhook = await this.webhooks.find(id);
    if (!webhook) {
      this.endpoints.delete(id);
      return null;
    }
    return this.remember(webhook);
  }

  private remember(webhook: WebhookRecord) {
    const entry = { at: Date.now(), webhook, secrets: this.webhooks.secretsOf(webhook) };
    this.endpoints.set(webhook.id, entry);
    return entry;
  }

  override start(): void {
    if (this.running) return;
    this.stopping = new AbortController();
    if (this.options.thread) {
      this.thread = new WebhookThread({
        timeoutMs: this.options.timeoutMs,
        allowHttp: this.options.allowHttp,
        allowPrivateNetworks: this.options.allowPrivateNetworks,
        concurrency: this.options.concurrency,
        endpointConcurrency: this.options.endpointConcurrency,
      });
    } else {
      this.agents = createOutboundAgents({ maxSocketsPerHost: this.options.endpointConcurrency });
    }
    super.start();
    this.purgeTimer = setInterval(() => void this.purge(), PURGE_INTERVAL_MS);
    this.purgeTimer.unref();
  }

  /** Stops claiming, cuts the attempts in flight short and waits until they are recorded. */
  override async stop(): Promise<void> {
    clearInterval(this.purgeTimer);
    this.stopping.abort();
    this.thread?.abort();
    await super.stop();
    this.agents?.destroy();
    this.agents = undefined;
    await this.thread?.close();
    this.thread = undefined;
    this.endpoints.clear();
  }

  /** One attempt; never throws (a store error leaves the lease to expire and the attempt is retried). */
  protected async attempt(delivery: OutboxDelivery): Promise<void> {
    const started = performance.now();
    try {
      const recent = this.options.recentEvent?.(delivery.event_id);
      const [known, stored] = await Promise.all([
        this.endpoint(delivery.endpoint_id),
        recent ? undefined : this.outbox.getEvent(delivery.event_id),
      ]);
      const event = recent ?? (stored ? fromOutboxEvent(stored) : undefined);
      if (!known) return await this.dead(delivery, null, 'the endpoint was deleted', started);
      const { webhook, secrets } = known;
      if (!event) return await this.dead(delivery, null, 'the event is no longer stored', started);
      if (!webhook.active && event.type !== 'ping') {
        return await this.dead(delivery, null, 'the endpoint is disabled', started);
      }
      const body = webhookBody(event, webhook.id);
      const response = await this.send(delivery, webhook, event.type, body, secrets);
      let status: number | null = null;
      let error: string;
      if ('status' in response) {
        status = response.status;
        if (status >= 200 && status < 300) {
          await this.outbox.complete(delivery.id, this.owner, {
            status,
            latency_ms: Math.round(response.latencyMs),
          });
          this.options.observe?.('succeeded', seconds(started));
          if (webhook.failing_since) {
            await this.webhooks.attemptSucceeded(webhook);
            this.endpoints.delete(webhook.id);
          }
          return;
        }
        if (status === 410) {
          await this.dead(delivery, status, 'the endpoint answered 410 Gone', started);
          await this.webhooks.disable(webhook, 'the endpoint answered 410 Gone');
          this.options.log.warn(
            { webhook_id: webhook.id },
            'webhook disabled: the endpoint answered 410 Gone',
          );
          return;
        }
        const location = response.location;
        error =
          status >= 300 && status < 400
            ? `the endpoint answered ${status} (redirects are not followed${location ? `: to ${location.slice(0, 200)}` : ''})`
            : `the endpoint answered ${status}`;
      } else {
        error = `${response.reason}: ${response.message}`;
      }
      await this.failed(delivery, webhook, status, error, started);
    } catch (err) {
      this.options.log.error(
        { err, delivery_id: delivery.id },
        'webhook attempt could not be recorded; it is retried once its lease expires',
      );
    }
  }

  /** Signs and sends one attempt, here or on the delivery thread: its response, or why there was none. */
  private async send(
    delivery: OutboxDelivery,
    webhook: WebhookRecord,
    type: string,
    body: string,
    secrets: string[],
  ): Promise<
    | { status: number; latencyMs: number; location?: string }
    | { reason: OutboundErrorReason; message: string }
  > {
    const headers = {
      'content-type': 'application/json',
      'user-agent': this.options.userAgent,
      'x-event-type': type,
    };
    if (this.thread) {
      return this.thread.send({
        endpointId: webhook.id,
        url: webhook.url,
        msgId: delivery.id,
        body,
        secrets,
        headers,
      });
    }
    try {
      const response = await outboundRequest(webhook.url, {
        method: 'POST',
        headers: { ...signWebhook({ msgId: delivery.id, timestamp: new Date(), body, secrets }), ...headers },
        body,
        timeoutMs: this.options.timeoutMs,
        allowHttp: this.options.allowHttp,
        allowPrivateNetworks: this.options.allowPrivateNetworks,
        lookup: this.options.lookup,
        maxBodyBytes: 64 * 1024,
        signal: this.stopping.signal,
        ...(this.agents ? { agents: this.agents } : {}),
      });
      const location = response.headers.location;
      return {
        status: response.status,
        latencyMs: response.latencyMs,
        ...(location ? { location: String(location) } : {}),
      };
    } catch (err) {
      if (!(err instanceof OutboundError)) throw err;
      return { reason: err.reason, message: err.message };
    }
  }

  private async dead(delivery: OutboxDelivery, status: number | null, error: string, started: number) {
    await this.outbox.fail(delivery.id, this.owner, {
      error,
      status,
      latency_ms: Math.round(performance.now() - started),
      dead: true,
    });
    this.options.observe?.('dead', seconds(started));
  }

  private async failed(
    delivery: OutboxDelivery,
    webhook: WebhookRecord,
    status: number | null,
    error: string,
    started: number,
  ): Promise<void> {
    const now = new Date();
    const wait = retryWait(this.options.schedule, delivery.attempts, this.random);
    const latency_ms = Math.round(performance.now() - started);
    if (wait === undefined) {
      await this.outbox.fail(delivery.id, this.owner, { error, status, latency_ms, dead: true });
      this.options.observe?.('dead', seconds(started));
    } else {
      await this.outbox.fail(delivery.id, this.owner, {
        error,
        status,
        latency_ms,
        next_attempt_at: new Date(now.getTime() + wait),
      });
      this.options.observe?.('failed', seconds(started));
    }
    const marked = webhook.failing_since ? webhook : await this.webhooks.attemptFailed(webhook, now);
    if (marked !== webhook) this.remember(marked);
    const since = marked.failing_since;
    if (marked.active && since && now.getTime() - since.getTime() >= this.options.disableAfterFailingMs) {
      const reason = `every attempt failed since ${since.toISOString()} (last: ${error})`;
      await this.webhooks.disable(marked, reason);
      this.options.log.warn({ webhook_id: webhook.id, reason }, 'webhook disabled: failing for too long');
    }
  }

  /** Deletes finished deliveries and events past the retention period. */
  async purge(now = new Date()): Promise<{ events: number; deliveries: number } | undefined> {
    try {
      const cutoff = new Date(now.getTime() - this.options.retentionDays * 86_400_000);
      const purged = await this.outbox.purgeOlderThan(cutoff);
      if (purged.events || purged.deliveries)
        this.options.log.info(purged, 'purged old events and deliveries');
      return purged;
    } catch (err) {
      this.options.log.warn({ err }, 'the outbox purge failed; it runs again in an hour');
      return undefined;
    }
  }
}

const seconds = (started: number) => (performance.now() - started) / 1000;
