/** /v2/webhooks: subscribed endpoints, their secrets, test pings and deliveries (scope webhook:manage). */
import { z } from 'zod';

import type { WebhookService } from '../services/webhooks.js';
import type { OutboxDelivery, WebhookRecord } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import {
  CreateWebhook,
  Pagination,
  UpdateWebhook,
  Webhook,
  WebhookDelivery,
  deliveryListQuery,
  pageQuery,
  offsetPagination,
} from './schemas.js';
import { contextOf } from './users-routes.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export const toApiWebhook = (webhook: WebhookRecord) => ({
  webhook_id: webhook.id,
  url: webhook.url,
  events: webhook.events,
  description: webhook.description,
  active: webhook.active,
  disabled_reason: webhook.disabled_reason,
  failing_since: iso(webhook.failing_since),
  previous_secret_expires_at: iso(webhook.previous_secret_expires_at),
  created_at: webhook.created_at.toISOString(),
  updated_at: webhook.updated_at.toISOString(),
});

const toApiDelivery = (d: OutboxDelivery & { event_type: string | null }) => ({
  id: d.id,
  event_id: d.event_id,
  event_type: d.event_type,
  status: d.status,
  attempts: d.attempts,
  response_status: d.last_status,
  latency_ms: d.latency_ms,
  next_attempt_at: iso(d.next_attempt_at),
  last_error: d.last_error,
  created_at: d.created_at.toISOString(),
  updated_at: d.updated_at.toISOString(),
  finished_at: iso(d.finished_at),
});

const idParam = z.object({ id: z.string().min(1).max(64) });
const WithSecret = Webhook.extend({ secret: z.string().describe('The signing secret, shown this once') });

export function registerWebhookRoutes(api: ApiRouter, webhooks: WebhookService): void {
  api.add({
    method: 'post',
    path: '/webhooks',
    operationId: 'createWebhook',
    summary: 'Subscribe an endpoint to events',
    description:
      'The URL is checked at once: https (http only outside production), and every address it resolves to must be public unless WEBHOOK_ALLOW_PRIVATE_NETWORKS is set. Without `secret` one is generated (`whsec_…`) and returned this once.',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    body: CreateWebhook,
    responses: {
      201: {
        description: 'The endpoint (with `secret` when the server generated it)',
        schema: Webhook.extend({ secret: z.string().optional() }),
      },
    },
    errors: ['VALIDATION_ERROR', 'MISSING_REQUIRED_FIELD', 'WEBHOOK_URL_REFUSED'],
    async handler({ body, principal, ctx }) {
      const { webhook, secret } = await webhooks.create(body, contextOf(ctx, principal));
      return {
        status: 201,
        body: { ...toApiWebhook(webhook), ...(secret ? { secret } : {}) },
        headers: { Location: `/v2/webhooks/${webhook.id}` },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/webhooks',
    operationId: 'listWebhooks',
    summary: 'List webhook endpoints',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    query: z.object({ limit: pageQuery.limit, offset: pageQuery.offset }),
    responses: {
      200: {
        description: 'A page of endpoints, oldest first',
        schema: z.object({ data: z.array(Webhook), pagination: Pagination }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const { items, total } = await webhooks.list({ limit: query.limit, offset: query.offset });
      return {
        status: 200,
        body: {
          data: items.map(toApiWebhook),
          pagination: offsetPagination(total, query.limit, query.offset, items.length),
        },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/webhooks/{id}',
    operationId: 'getWebhook',
    summary: 'Get a webhook endpoint',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    responses: { 200: { description: 'The endpoint', schema: Webhook } },
    errors: ['WEBHOOK_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiWebhook(await webhooks.get(params.id)) };
    },
  });

  api.add({
    method: 'put',
    path: '/webhooks/{id}',
    operationId: 'updateWebhook',
    summary: 'Update a webhook endpoint (partial)',
    description:
      'Setting `active: true` on an endpoint the server disabled turns it on again and clears the reason.',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    body: UpdateWebhook,
    responses: { 200: { description: 'The updated endpoint', schema: Webhook } },
    errors: ['WEBHOOK_NOT_FOUND', 'VALIDATION_ERROR', 'WEBHOOK_URL_REFUSED'],
    async handler({ params, body, principal, ctx }) {
      return {
        status: 200,
        body: toApiWebhook(await webhooks.update(params.id, body, contextOf(ctx, principal))),
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/webhooks/{id}',
    operationId: 'deleteWebhook',
    summary: 'Delete a webhook endpoint',
    description: 'Deliveries still due to it become dead at their next attempt.',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    responses: { 200: { description: 'Deleted', schema: z.object({ message: z.string() }) } },
    errors: ['WEBHOOK_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      await webhooks.remove(params.id, contextOf(ctx, principal));
      return { status: 200, body: { message: 'Webhook deleted' } };
    },
  });

  api.add({
    method: 'post',
    path: '/webhooks/{id}/test',
    operationId: 'testWebhook',
    summary: 'Send a ping event to the endpoint',
    description:
      'Records a `ping` event for this endpoint only and delivers it like any other (see its deliveries).',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    responses: { 202: { description: 'The ping delivery, queued', schema: WebhookDelivery } },
    errors: ['WEBHOOK_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const delivery = await webhooks.test(params.id, contextOf(ctx, principal));
      return { status: 202, body: toApiDelivery({ ...delivery, event_type: 'ping' }) };
    },
  });

  api.add({
    method: 'post',
    path: '/webhooks/{id}/secret',
    operationId: 'rotateWebhookSecret',
    summary: 'Rotate the signing secret',
    description:
      'Returns a new secret (shown this once). For 24 hours deliveries carry signatures by both the new and the previous secret in `webhook-signature`; `X-Signature` uses the new one.',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    responses: { 200: { description: 'The endpoint and its new secret', schema: WithSecret } },
    errors: ['WEBHOOK_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const { webhook, secret } = await webhooks.rotateSecret(params.id, contextOf(ctx, principal));
      return { status: 200, body: { ...toApiWebhook(webhook), secret } };
    },
  });

  api.add({
    method: 'get',
    path: '/webhooks/{id}/deliveries',
    operationId: 'listWebhookDeliveries',
    summary: 'List the deliveries to an endpoint',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: idParam,
    query: deliveryListQuery,
    responses: {
      200: {
        description: 'Newest first',
        schema: z.object({
          data: z.array(WebhookDelivery),
          pagination: z.object({ limit: z.number().int(), next_cursor: z.string().nullable() }),
        }),
      },
    },
    errors: ['WEBHOOK_NOT_FOUND', 'VALIDATION_ERROR', 'INVALID_CURSOR'],
    async handler({ params, query }) {
      const page = await webhooks.deliveries(params.id, {
        limit: query.limit,
        ...(query.cursor ? { cursor: query.cursor } : {}),
        ...(query.status ? { status: query.status } : {}),
      });
      return {
        status: 200,
        body: {
          data: page.items.map(toApiDelivery),
          pagination: { limit: query.limit, next_cursor: page.next_cursor },
        },
      };
    },
  });

  api.add({
    method: 'post',
    path: '/webhooks/{id}/deliveries/{delivery_id}/retry',
    operationId: 'retryWebhookDelivery',
    summary: 'Retry a failed or dead delivery now',
    tag: 'Webhooks',
    scope: 'webhook:manage',
    params: z.object({ id: z.string().min(1).max(64), delivery_id: z.string().min(1).max(64) }),
    responses: { 202: { description: 'The delivery, due again now', schema: WebhookDelivery } },
    errors: ['WEBHOOK_NOT_FOUND', 'DELIVERY_NOT_FOUND', 'CONFLICT'],
    async handler({ params, principal, ctx }) {
      const delivery = await webhooks.retryDelivery(params.id, params.delivery_id, contextOf(ctx, principal));
      return { status: 202, body: toApiDelivery({ ...delivery, event_type: null }) };
    },
  });
}
