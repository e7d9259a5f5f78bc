/** /v2/mail/messages: the e-mail the server sent or tries to send, and why it failed (scope mail:read). */
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import { MAIL_ENDPOINT, Mailer } from '../mail/mailer.js';
import { QueryError } from '../store/query.js';
import type { DurableStore, OutboxDelivery } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import { deliveryListQuery, MailMessage } from './schemas.js';

const toApiMessage = (d: OutboxDelivery, summary: ReturnType<typeof Mailer.summary>) => ({
  id: d.id,
  to: summary?.to ?? null,
  subject: summary?.subject ?? null,
  kind: summary?.kind ?? null,
  status: d.status,
  attempts: d.attempts,
  last_error: d.last_error,
  smtp_status: d.last_status,
  next_attempt_at: d.next_attempt_at?.toISOString() ?? null,
  created_at: d.created_at.toISOString(),
  updated_at: d.updated_at.toISOString(),
  sent_at: d.status === 'succeeded' ? (d.finished_at?.toISOString() ?? null) : null,
});

export function registerMailRoutes(api: ApiRouter, store: DurableStore): void {
  api.add({
    method: 'get',
    path: '/mail/messages',
    operationId: 'listMailMessages',
    summary: 'List e-mail messages and how sending them went',
    description:
      'Newest first. `status=dead` lists the messages given up on (after the last retry of MAIL_RETRY_SCHEDULE, or a permanent 5xx answer), with the reason in `last_error`. Bodies are never shown: they carry sign-in links.',
    tag: 'Mail',
    scope: 'mail:read',
    query: deliveryListQuery,
    responses: {
      200: {
        description: 'Newest first',
        schema: z.object({
          data: z.array(MailMessage),
          pagination: z.object({ limit: z.number().int(), next_cursor: z.string().nullable() }),
        }),
      },
    },
    errors: ['VALIDATION_ERROR', 'INVALID_CURSOR'],
    async handler({ query }) {
      let page;
      try {
        page = await store.outbox.list({
          endpoint_id: MAIL_ENDPOINT,
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
      const events = await Promise.all(page.items.map((d) => store.outbox.getEvent(d.event_id)));
      return {
        status: 200,
        body: {
          data: page.items.map((d, i) => toApiMessage(d, Mailer.summary(events[i] ?? null))),
          pagination: { limit: query.limit, next_cursor: page.next_cursor },
        },
      };
    },
  });
}
