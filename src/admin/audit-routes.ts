/** /v2/audit: the audit trail, newest first, filterable. */
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import type { AuditService } from '../services/audit.js';
import type { AuditEntry as AuditRecord } from '../store/ports.js';
import { and, decodeCursor, encodeCursor, keysetAfter, totalOrder, type Expr } from '../store/query.js';
import type { ApiRouter } from './api-router.js';
import { pageQuery, Pagination, plainText, timestamp } from './schemas.js';

const AuditEntry = z.object({
  id: z.string(),
  timestamp,
  actor: z.object({ type: z.string(), id: z.string(), client_id: z.string().nullable() }),
  action: z.string(),
  target: z.object({ type: z.string(), id: z.string().nullable() }),
  request_id: z.string().nullable(),
  ip_address: z.string().nullable(),
  user_agent: z.string().nullable(),
  changes: z.record(z.string(), z.unknown()).nullable(),
  details: z.record(z.string(), z.unknown()).nullable(),
});

const toApiEntry = (e: AuditRecord) => ({
  id: e.id,
  timestamp: e.timestamp.toISOString(),
  actor: { type: e.actor_type, id: e.actor_id, client_id: e.actor_client_id },
  action: e.action,
  target: { type: e.target_type, id: e.target_id },
  request_id: e.request_id,
  ip_address: e.ip_address,
  user_agent: e.user_agent,
  changes: e.changes,
  details: e.details,
});

const instant = z.iso
  .datetime({ offset: true, error: 'Must be an RFC 3339 timestamp' })
  .transform((s) => new Date(s));
const text = plainText(200);

export function registerAuditRoutes(api: ApiRouter, audit: AuditService): void {
  api.add({
    method: 'get',
    path: '/audit',
    operationId: 'listAuditEntries',
    summary: 'List audit entries',
    description: 'Every mutation made through the API, and sign-ins, newest first.',
    tag: 'Audit',
    scope: 'audit:read',
    query: z.object({
      ...pageQuery,
      action: text.optional().describe('For example user.created; a trailing * matches a prefix (user.*)'),
      actor_id: text.optional(),
      target_type: text.optional(),
      target_id: text.optional(),
      request_id: text.optional(),
      since: instant.optional(),
      until: instant.optional(),
    }),
    responses: {
      200: {
        description: 'A page of entries',
        schema: z.object({ data: z.array(AuditEntry), pagination: Pagination }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const parts: Expr[] = [];
      for (const field of ['actor_id', 'target_type', 'target_id', 'request_id'] as const) {
        const value = query[field];
        if (value) parts.push({ field, op: 'eq', value });
      }
      if (query.action?.endsWith('*')) {
        const prefix = query.action.slice(0, -1);
        parts.push(
          { field: 'action', op: 'gte', value: prefix },
          { field: 'action', op: 'lt', value: `${prefix}\u{10FFFF}` },
        );
      } else if (query.action) {
        parts.push({ field: 'action', op: 'eq', value: query.action });
      }
      if (query.since) parts.push({ field: 'timestamp', op: 'gte', value: query.since });
      if (query.until) parts.push({ field: 'timestamp', op: 'lt', value: query.until });
      const order = totalOrder(undefined, { field: 'timestamp', dir: 'desc' });
      let after: Expr | undefined;
      if (query.cursor) {
        const values = decodeCursor(query.cursor, order.length);
        if (!values)
          throw new AppError('INVALID_CURSOR', {
            details: [{ field: 'cursor', issue: 'Not a cursor of this list' }],
          });
        after = keysetAfter(order, values);
      }
      const where = and(...parts);
      const [rows, total] = await Promise.all([
        audit.list({
          where: and(where, after),
          sort: order,
          limit: query.limit + 1,
          offset: after ? 0 : query.offset,
        }),
        audit.count({ where }),
      ]);
      const items = rows.slice(0, query.limit);
      const hasMore = rows.length > query.limit;
      const last = items.at(-1);
      return {
        status: 200,
        body: {
          data: items.map(toApiEntry),
          pagination: {
            total,
            limit: query.limit,
            offset: query.offset,
            has_more: hasMore,
            next_cursor: hasMore && last ? encodeCursor([last.timestamp, last.id]) : null,
          },
        },
      };
    },
  });
}
