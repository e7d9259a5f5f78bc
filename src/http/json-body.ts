/**
 * Reads a JSON request body strictly: at most `limit` bytes (refused from Content-Length before a
 * byte is read, and counted while reading), UTF-8 only (invalid sequences are refused, never
 * replaced with U+FFFD), and parsed with JSON.parse, which keeps keys such as "__proto__" as plain
 * own properties (schemas then refuse or accept them by name). Bodies of other media types are left
 * unread (the route answers 415 when it expects JSON).
 */
import type { Context, Next } from 'koa';

import { AppError } from '../errors/app-error.js';

export interface JsonBodyOptions {
  /** Largest body in bytes. */
  limit: number;
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

function hasBody(ctx: Context): boolean {
  const length = ctx.get('Content-Length');
  if (length) return length !== '0';
  return Boolean(ctx.get('Transfer-Encoding'));
}

/** The request's media type and charset parameter, lower-cased. */
function mediaType(ctx: Context): { type: string; charset: string | undefined } {
  const [type = '', ...params] = ctx.get('Content-Type').split(';');
  const charset = params
    .map((p) => p.trim().toLowerCase())
    .find((p) => p.startsWith('charset='))
    ?.slice('charset='.length)
    .replace(/^"|"$/g, '');
  return { type: type.trim().toLowerCase(), charset };
}

function tooLarge(ctx: Context): AppError {
  // The rest of the body is not wanted: end the connection rather than read it to reuse it.
  ctx.set('Connection', 'close');
  return new AppError('PAYLOAD_TOO_LARGE');
}

async function readLimited(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('Content-Length') || Number.NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(ctx);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(ctx);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and parses a JSON body; exported for the parts of the server that read bodies themselves. */
export function parseJsonBytes(bytes: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new AppError('INVALID_ENCODING');
  }
  // A body of whitespace alone is no JSON text (RFC 8259): refused, never read as {} (a PUT of
  // preferences would otherwise replace them with nothing). An empty body is no body at all.
  try {
    return JSON.parse(text);
  } catch {
    // SyntaxError, or RangeError for nesting deeper than the parser's stack; neither is echoed
    // (the message may quote the body, and bodies carry passwords).
    throw new AppError('MALFORMED_JSON');
  }
}

export function jsonBody(options: JsonBodyOptions) {
  return async function readJsonBody(ctx: Context, next: Next): Promise<void> {
    if (ctx.method === 'GET' || ctx.method === 'HEAD' || ctx.method === 'OPTIONS' || !hasBody(ctx)) {
      return next();
    }
    const { type, charset } = mediaType(ctx);
    if (JSON_TYPE.test(type)) {
      // RFC 8259: JSON exchanged between systems is UTF-8; a body declared otherwise is refused.
      if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', {
          message: 'JSON bodies must be UTF-8 (charset=utf-8, or no charset)',
        });
      }
      ctx.request.body = parseJsonBytes(await readLimited(ctx, options.limit));
    }
    return next();
  };
}
