/**
 * Koa middleware receiving Latchkey webhooks (see ../webhooks.ts): it verifies the delivery over its
 * raw body; on success the event is in `ctx.state.webhook` and later middleware runs; otherwise it
 * answers 401 `{ error: { code: 'WEBHOOK_SIGNATURE_INVALID', message } }` itself.
 *
 * The raw body is `ctx.request.rawBody` when a body parser in front kept it (@koa/bodyparser does);
 * with no body parser in front, the middleware reads it from the request stream itself.
 */
import { verifyWebhook, type WebhookEvent, type WebhookHeaders } from '../webhooks.js';
import { DEFAULT_BODY_LIMIT, readRawBody, webhookRefusal, type RawBodyStream } from './raw-body.js';
import type { WebhookMiddlewareOptions } from './webhook-express.js';

/** The part of a Koa context the middleware uses. */
export interface WebhookKoaContext {
  req: RawBodyStream & { headers: Record<string, string | string[] | undefined> };
  request: { rawBody?: string; body?: unknown };
  status: number;
  body: unknown;
  /** Any state type: the event is added as `webhook`. */
  state: object;
}

/** For typing Koa apps: `new Koa<WebhookKoaState>()` or `Router<WebhookKoaState>`. */
export interface WebhookKoaState<TData = Record<string, unknown>> {
  webhook: WebhookEvent<TData>;
}

export type WebhookKoaMiddleware = (ctx: WebhookKoaContext, next: () => Promise<unknown>) => Promise<void>;

async function rawBodyOf(ctx: WebhookKoaContext, limit: number): Promise<string | Uint8Array> {
  if (typeof ctx.request.rawBody === 'string') return ctx.request.rawBody;
  if (ctx.request.body === undefined && !ctx.req.readableEnded) return readRawBody(ctx.req, limit);
  throw new Error(
    'webhookKoa needs the raw body: put no body parser in front, or one that keeps ctx.request.rawBody',
  );
}

/** `secret` is the endpoint's secret (or two, new first, while you rotate it). */
export function webhookKoa(
  secret: string | readonly string[],
  options: WebhookMiddlewareOptions = {},
): WebhookKoaMiddleware {
  const limit = options.limit ?? DEFAULT_BODY_LIMIT;
  return async (ctx, next) => {
    let event: WebhookEvent;
    try {
      const body = await rawBodyOf(ctx, limit);
      event = verifyWebhook(body, ctx.req.headers as WebhookHeaders, secret, options);
    } catch (err) {
      const refusal = webhookRefusal(err);
      if (!refusal) throw err;
      ctx.status = refusal.status;
      ctx.body = refusal.body;
      return;
    }
    (ctx.state as { webhook?: WebhookEvent }).webhook = event;
    await next();
  };
}
