/**
 * Express middleware receiving Latchkey webhooks (see ../webhooks.ts): it verifies the delivery over
 * its raw body; on success the event is in `req.webhook` and `next` is called; otherwise it answers
 * 401 `{ error: { code: 'WEBHOOK_SIGNATURE_INVALID', message } }` itself.
 *
 * Mount it with `express.raw({ type: 'application/json' })` in front, so that `req.body` is the
 * Buffer of the exact bytes received: a JSON parser in front re-serializes nothing the signature
 * could be checked over, and the middleware then passes an error to `next`. With no body parser at
 * all, it reads the raw body from the request stream itself.
 */
import {
  verifyWebhook,
  type VerifyWebhookOptions,
  type WebhookEvent,
  type WebhookHeaders,
} from '../webhooks.js';
import { DEFAULT_BODY_LIMIT, readRawBody, webhookRefusal, type RawBodyStream } from './raw-body.js';

declare global {
  // Express reads its request type from this global namespace; adding the field types `req.webhook`.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      webhook?: WebhookEvent;
    }
  }
}

/** The parts of Express's request and response the middleware uses. */
export interface WebhookExpressRequest extends RawBodyStream {
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
  webhook?: WebhookEvent;
}

export interface WebhookExpressResponse {
  status(code: number): unknown;
  json(body: unknown): unknown;
}

export interface WebhookMiddlewareOptions extends VerifyWebhookOptions {
  /** The largest body read from the stream when no parser ran first, in bytes. Default 1 MiB. */
  limit?: number;
}

export type WebhookExpressMiddleware = (
  req: WebhookExpressRequest,
  res: WebhookExpressResponse,
  next: (err?: unknown) => void,
) => void;

async function rawBodyOf(req: WebhookExpressRequest, limit: number): Promise<string | Uint8Array> {
  if (typeof req.body === 'string' || req.body instanceof Uint8Array) return req.body;
  if (req.body === undefined && !req.readableEnded) return readRawBody(req, limit);
  throw new Error(
    'webhookExpress needs the raw body: mount express.raw({ type: "application/json" }) in front of it, not a JSON parser',
  );
}

/** `secret` is the endpoint's secret (or two, new first, while you rotate it). */
export function webhookExpress(
  secret: string | readonly string[],
  options: WebhookMiddlewareOptions = {},
): WebhookExpressMiddleware {
  const limit = options.limit ?? DEFAULT_BODY_LIMIT;
  return (req, res, next) => {
    rawBodyOf(req, limit)
      .then((body) => {
        req.webhook = verifyWebhook(body, req.headers as WebhookHeaders, secret, options);
        next();
      })
      .catch((err: unknown) => {
        const refusal = webhookRefusal(err);
        if (!refusal) return next(err);
        res.status(refusal.status);
        res.json(refusal.body);
      });
  };
}
