/**
 * Webhook endpoints behind /v2/webhooks: who subscribes to which events, their signing secrets
 * (encrypted at rest with the key-encryption secret, rotated with a 24-hour overlap), the checks a
 * URL must pass before it is saved (scheme, and the SSRF guard of src/http/outbound.ts), and the
 * subscriptions the EventRecorder fans events out to. Every change is audited. The delivery worker
 * (src/events/webhook-delivery.ts) sends what the recorder enqueues.
 */
import { AppError } from '../errors/app-error.js';
import { isEventType, newEvent } from '../events/catalog.js';
import {
  eventActor,
  type EventRecorder,
  type Subscription,
  type SubscriptionSource,
} from '../events/recorder.js';
import { generateWebhookSecret, validateWebhookSecret } from '../events/webhook-signing.js';
import { checkOutboundUrl, OutboundError, type OutboundResolver } from '../http/outbound.js';
import type { KeyCipher } from '../oidc/keys/key-cipher.js';
import type {
  DeliveryStatus,
  DurableStore,
  EventBus,
  OutboxDelivery,
  OutboxPage,
  WebhookPatch,
  WebhookRecord,
} from '../store/ports.js';
import { QueryError } from '../store/query.js';
import { newId } from '../store/ids.js';
import type { AuditService } from './audit.js';
import type { Context } from './users.js';

/** In a webhook's `events`, every type of the catalog. */
export const ALL_EVENTS = '*';
/** How long the previous secret keeps signing after a rotation. */
export const SECRET_OVERLAP_MS = 24 * 3600 * 1000;
/** The bus channel on which instances hear that the subscriptions changed. */
export const WEBHOOK_CHANGES_CHANNEL = 'webhooks:changed';
/** The longest the subscriptions of an instance lag a change it did not hear of. */
const SUBSCRIPTIONS_TTL_MS = 5000;

export interface WebhookOptions {
  allowHttp: boolean;
  allowPrivateNetworks: boolean;
  /** Resolver for the URL check (tests); node's dns.lookup otherwise. */
  lookup?: OutboundResolver;
  now?: () => Date;
}

export interface WebhookInput {
  url: string;
  events: string[];
  secret?: string;
  active?: boolean;
  description?: string | null;
}

export type WebhookUpdate = Partial<Omit<WebhookInput, 'secret'>>;

export class WebhookService implements SubscriptionSource {
  private cached: { at: number; subscriptions: Subscription[] } | undefined;
  private loading: Promise<Subscription[]> | undefined;
  private generation = 0;
  private readonly now: () => Date;
  /** Told of every change of an endpoint (the delivery worker drops its copy). */
  readonly changes = new Set<(webhookId: string) => void>();

  constructor(
    private readonly store: DurableStore,
    private readonly bus: EventBus,
    private readonly cipher: KeyCipher,
    private readonly audit: AuditService,
    private readonly recorder: EventRecorder,
    private readonly options: WebhookOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    bus.subscribe(WEBHOOK_CHANGES_CHANNEL, (id) => this.forget(id));
  }

  private forget(webhookId: string): void {
    this.generation += 1;
    this.cached = undefined;
    for (const listener of this.changes) listener(webhookId);
  }

  private async changed(webhookId: string): Promise<void> {
    this.forget(webhookId);
    await this.bus.publish(WEBHOOK_CHANGES_CHANNEL, webhookId).catch(() => undefined);
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Subscriptions (SubscriptionSource)                                                         */
  /* ----------------------------------------------------------------------------------------- */

  async current(): Promise<readonly Subscription[]> {
    const cached = this.cached;
    if (cached && Date.now() - cached.at < SUBSCRIPTIONS_TTL_MS) return cached.subscriptions;
    this.loading ??= this.load().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async load(): Promise<Subscription[]> {
    const generation = this.generation;
    const active = await this.store.webhooks.listActive();
    const subscriptions = active.map((webhook): Subscription => {
      const all = webhook.events.includes(ALL_EVENTS);
      const types = new Set(webhook.events);
      // ping goes only to the endpoint it is sent to (see test()).
      return { endpointId: webhook.id, accepts: (type) => type !== 'ping' && (all || types.has(type)) };
    });
    if (generation === this.generation) this.cached = { at: Date.now(), subscriptions };
    return subscriptions;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Checks                                                                                     */
  /* ----------------------------------------------------------------------------------------- */

  private async checkUrl(url: string): Promise<void> {
    try {
      await checkOutboundUrl(url, {
        allowHttp: this.options.allowHttp,
        allowPrivateNetworks: this.options.allowPrivateNetworks,
        lookup: this.options.lookup,
        // Well inside the request's own deadline (REQUEST_TIMEOUT_MS).
        timeoutMs: 2000,
      });
    } catch (err) {
      if (!(err instanceof OutboundError)) throw err;
      throw new AppError('WEBHOOK_URL_REFUSED', {
        message: `The webhook URL is refused: ${err.message}`,
        details: [{ field: 'url', issue: refusal(err), provided: url }],
      });
    }
  }

  private checkEvents(events: string[]): string[] {
    const unknown = events.filter((e) => e !== ALL_EVENTS && !isEventType(e));
    if (unknown.length > 0) {
      throw new AppError('VALIDATION_ERROR', {
        message: 'Unknown event types',
        details: unknown.map((e) => ({
          field: 'events',
          issue: 'Not an event type of the catalog',
          provided: e,
        })),
      });
    }
    return [...new Set(events)];
  }

  private seal(webhookId: string, secret: string): string {
    return this.cipher.encrypt(secret, `webhook:${webhookId}`);
  }

  /** The secrets that sign a delivery now: the current one, and the previous one within its overlap. */
  secretsOf(webhook: WebhookRecord): string[] {
    const secrets = [this.cipher.decrypt(webhook.secret, `webhook:${webhook.id}`)];
    if (
      webhook.previous_secret &&
      webhook.previous_secret_expires_at &&
      webhook.previous_secret_expires_at.getTime() > this.now().getTime()
    ) {
      secrets.push(this.cipher.decrypt(webhook.previous_secret, `webhook:${webhook.id}`));
    }
    return secrets;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Endpoints                                                                                  */
  /* ----------------------------------------------------------------------------------------- */

  async create(input: WebhookInput, context: Context): Promise<{ webhook: WebhookRecord; secret?: string }> {
    const events = this.checkEvents(input.events);
    if (input.secret !== undefined) {
      const problem = validateWebhookSecret(input.secret);
      if (problem) {
        throw new AppError('VALIDATION_ERROR', { details: [{ field: 'secret', issue: problem }] });
      }
    }
    await this.checkUrl(input.url);
    const id = newId('wh');
    const secret = input.secret ?? generateWebhookSecret();
    const webhook = await this.store.webhooks.create({
      id,
      url: input.url,
      events,
      description: input.description ?? null,
      active: input.active ?? true,
      secret: this.seal(id, secret),
    });
    await this.changed(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.created',
      target_type: 'webhook',
      target_id: id,
      before: null,
      after: auditable(webhook),
    });
    return { webhook, ...(input.secret === undefined ? { secret } : {}) };
  }

  async list(page: { limit: number; offset: number }): Promise<{ items: WebhookRecord[]; total: number }> {
    const [items, total] = await Promise.all([this.store.webhooks.list(page), this.store.webhooks.count()]);
    return { items, total };
  }

  async get(id: string): Promise<WebhookRecord> {
    const webhook = await this.store.webhooks.findById(id);
    if (!webhook) throw new AppError('WEBHOOK_NOT_FOUND');
    return webhook;
  }

  async update(id: string, patch: WebhookUpdate, context: Context): Promise<WebhookRecord> {
    const before = await this.get(id);
    const change: WebhookPatch = {};
    if (patch.events !== undefined) change.events = this.checkEvents(patch.events);
    if (patch.url !== undefined && patch.url !== before.url) {
      await this.checkUrl(patch.url);
      change.url = patch.url;
    }
    if (patch.description !== undefined) change.description = patch.description;
    if (patch.active !== undefined) {
      change.active = patch.active;
      // Turned on again by someone: whatever disabled it is over; its failures count afresh.
      if (patch.active) Object.assign(change, { disabled_reason: null, failing_since: null });
    }
    const after = await this.store.webhooks.update(id, change);
    if (!after) throw new AppError('WEBHOOK_NOT_FOUND');
    await this.changed(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.updated',
      target_type: 'webhook',
      target_id: id,
      before: auditable(before),
      after: auditable(after),
    });
    return after;
  }

  async remove(id: string, context: Context): Promise<void> {
    const before = await this.get(id);
    if (!(await this.store.webhooks.remove(id))) throw new AppError('WEBHOOK_NOT_FOUND');
    await this.changed(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.deleted',
      target_type: 'webhook',
      target_id: id,
      before: auditable(before),
      after: null,
    });
  }

  /** A new secret; the previous one keeps signing for 24 hours. Returns the new secret (shown once). */
  async rotateSecret(id: string, context: Context): Promise<{ webhook: WebhookRecord; secret: string }> {
    const before = await this.get(id);
    const secret = generateWebhookSecret();
    const expires = new Date(this.now().getTime() + SECRET_OVERLAP_MS);
    const after = await this.store.webhooks.update(id, {
      secret: this.seal(id, secret),
      previous_secret: before.secret,
      previous_secret_expires_at: expires,
    });
    if (!after) throw new AppError('WEBHOOK_NOT_FOUND');
    await this.changed(id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.secret_rotated',
      target_type: 'webhook',
      target_id: id,
      details: { previous_secret_expires_at: expires.toISOString() },
    });
    return { webhook: after, secret };
  }

  /** Sends a `ping` event to this endpoint only (active or not); resolves with its delivery. */
  async test(id: string, context: Context): Promise<OutboxDelivery> {
    const webhook = await this.get(id);
    const event = newEvent('ping', eventActor(context.actor), {
      message: `Test delivery to ${webhook.url}`,
    });
    const delivery = await this.recorder.deliverTo(webhook.id, event);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.tested',
      target_type: 'webhook',
      target_id: id,
      details: { event_id: event.id, delivery_id: delivery.id },
    });
    return delivery;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Deliveries                                                                                 */
  /* ----------------------------------------------------------------------------------------- */

  async deliveries(
    id: string,
    query: { limit: number; cursor?: string; status?: DeliveryStatus },
  ): Promise<OutboxPage<OutboxDelivery & { event_type: string | null }>> {
    await this.get(id);
    let page: OutboxPage<OutboxDelivery>;
    try {
      page = await this.store.outbox.list({
        endpoint_id: id,
        limit: query.limit,
        ...(query.cursor ? { cursor: query.cursor } : {}),
        ...(query.status ? { status: query.status } : {}),
      });
    } catch (err) {
      if (err instanceof QueryError) {
        throw new AppError('INVALID_CURSOR', {
          details: [{ field: 'cursor', issue: 'Not a cursor of this list', provided: query.cursor }],
        });
      }
      throw err;
    }
    const events = await Promise.all(page.items.map((d) => this.store.outbox.getEvent(d.event_id)));
    return {
      items: page.items.map((d, i) => ({ ...d, event_type: events[i]?.type ?? null })),
      next_cursor: page.next_cursor,
    };
  }

  async retryDelivery(id: string, deliveryId: string, context: Context): Promise<OutboxDelivery> {
    await this.get(id);
    const delivery = await this.store.outbox.get(deliveryId);
    if (!delivery || delivery.endpoint_id !== id) throw new AppError('DELIVERY_NOT_FOUND');
    const retried = await this.store.outbox.retry(deliveryId, this.now());
    if (!retried) {
      throw new AppError('CONFLICT', {
        message: `Only a failed or dead delivery can be retried; this one is ${delivery.status}`,
        details: [{ field: 'delivery_id', issue: `Status is ${delivery.status}`, provided: deliveryId }],
      });
    }
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'webhook.delivery_retried',
      target_type: 'webhook',
      target_id: id,
      details: { delivery_id: deliveryId, event_id: delivery.event_id },
    });
    this.recorder.wake();
    return retried;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* What the delivery worker reports                                                           */
  /* ----------------------------------------------------------------------------------------- */

  /** The endpoint as delivery sees it (fresh from the store). */
  find(id: string): Promise<WebhookRecord | null> {
    return this.store.webhooks.findById(id);
  }

  /** An attempt failed: the first failure of a run starts the failing clock. */
  async attemptFailed(webhook: WebhookRecord, at: Date): Promise<WebhookRecord> {
    if (webhook.failing_since) return webhook;
    return (await this.store.webhooks.update(webhook.id, { failing_since: at })) ?? webhook;
  }

  async attemptSucceeded(webhook: WebhookRecord): Promise<void> {
    if (webhook.failing_since) await this.store.webhooks.update(webhook.id, { failing_since: null });
  }

  /** The server turns an endpoint off (410 Gone, failing for days), with an audit entry saying why. */
  async disable(webhook: WebhookRecord, reason: string): Promise<void> {
    const after = await this.store.webhooks.update(webhook.id, { active: false, disabled_reason: reason });
    if (!after) return;
    await this.changed(webhook.id);
    await this.audit.record({
      actor_type: 'system',
      actor_id: 'webhook-delivery',
      actor_client_id: null,
      action: 'webhook.disabled',
      target_type: 'webhook',
      target_id: webhook.id,
      before: { active: webhook.active },
      after: { active: false },
      details: { reason },
    });
  }
}

/** What an audit entry shows of an endpoint: never a secret. */
function auditable(webhook: WebhookRecord): Record<string, unknown> {
  return {
    url: webhook.url,
    events: webhook.events,
    description: webhook.description,
    active: webhook.active,
  };
}

/** The error detail for a refused URL. */
function refusal(err: OutboundError): string {
  switch (err.reason) {
    case 'blocked_address':
      return 'Resolves to a private, loopback, link-local or metadata address';
    case 'scheme_not_allowed':
      return 'Must be an https URL';
    case 'dns_failed':
      return 'The host name does not resolve';
    case 'invalid_url':
      return 'Not a valid URL';
    default:
      return err.message;
  }
}
