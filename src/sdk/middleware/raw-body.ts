/**
 * Reading a request's raw body for the webhook middleware, when no body parser read it before.
 * Typed structurally (a Node readable stream), so the SDK needs no framework at run time.
 */
import { WebhookVerificationError } from '../webhooks.js';

/** The part of a Node request stream the reader uses. */
export interface RawBodyStream {
  on(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  readableEnded?: boolean;
}

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`the webhook body is larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Deliveries are small; the default limit on a body read here is 1 MiB. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export function readRawBody(stream: RawBodyStream, limit = DEFAULT_BODY_LIMIT): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    stream.on('data', (chunk) => {
      if (failed) return;
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      size += bytes.length;
      if (size > limit) {
        failed = true;
        reject(new BodyTooLargeError(limit));
        return;
      }
      chunks.push(bytes);
    });
    stream.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    stream.on('error', (err) => {
      if (!failed) reject(err);
      failed = true;
    });
  });
}

export interface WebhookRefusal {
  status: number;
  body: { error: { code: string; message: string } };
}

/**
 * The answer of the webhook middleware to a failure: 401 `WEBHOOK_SIGNATURE_INVALID` for a delivery
 * that does not verify, 413 for a body over the limit; null for anything else (a bug to pass on).
 */
export function webhookRefusal(err: unknown): WebhookRefusal | null {
  if (err instanceof WebhookVerificationError) {
    const message = `${err.reason}: ${err.message}`;
    return { status: 401, body: { error: { code: 'WEBHOOK_SIGNATURE_INVALID', message } } };
  }
  if (err instanceof BodyTooLargeError) {
    return { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: err.message } } };
  }
  return null;
}
