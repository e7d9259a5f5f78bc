/**
 * JSON bodies at the token, introspection and revocation endpoints. oidc-provider reads only
 * application/x-www-form-urlencoded there, yet many clients post JSON. For exactly those paths, a
 * POST with Content-Type application/json is read here (bounded in size, UTF-8 only), must be one
 * JSON object whose values are strings (or arrays of strings, a repeated parameter), and is handed
 * to the provider re-encoded as a form body, so the parameters meet the same validation and errors
 * as a form would. Anything else answers the OAuth error `invalid_request` (400).
 */
import type { Context, Next } from 'koa';

/** The provider's own limit for form bodies. */
export const JSON_FORM_BODY_LIMIT = 56 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

class BadJsonBody extends Error {}

function refuse(ctx: Context, description: string): void {
  ctx.status = 400;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error: 'invalid_request', error_description: description };
}

async function readBounded(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('Content-Length') || Number.NaN);
  if (Number.isFinite(declared) && declared > limit) throw new BadJsonBody('request body is too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BadJsonBody('request body is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** The JSON text as form parameters, or why it cannot be one. */
export function jsonToForm(bytes: Buffer): URLSearchParams {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch {
    // Neither the parser's message nor the body is echoed: bodies carry secrets.
    throw new BadJsonBody('request body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BadJsonBody('request body must be a JSON object');
  }
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    const values = Array.isArray(value) ? (value as unknown[]) : [value];
    for (const one of values) {
      if (typeof one !== 'string') {
        throw new BadJsonBody(`parameter ${name} must be a string or an array of strings`);
      }
      form.append(name, one);
    }
  }
  return form;
}

function isJson(ctx: Context): { json: boolean; charset?: string } {
  const [type = '', ...params] = ctx.get('Content-Type').split(';');
  if (type.trim().toLowerCase() !== 'application/json') return { json: false };
  const charset = params
    .map((p) => p.trim().toLowerCase())
    .find((p) => p.startsWith('charset='))
    ?.slice('charset='.length)
    .replace(/^"|"$/g, '');
  return { json: true, charset };
}

export function jsonFormBody(paths: readonly string[], limit = JSON_FORM_BODY_LIMIT) {
  const accepted = new Set(paths);
  return async function acceptJsonBody(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'POST' || !accepted.has(ctx.path)) return next();
    const { json, charset } = isJson(ctx);
    if (!json) return next();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return refuse(ctx, 'JSON request bodies must be UTF-8');
    }
    let form: Buffer;
    try {
      form = Buffer.from(jsonToForm(await readBounded(ctx, limit)).toString());
    } catch (err) {
      if (!(err instanceof BadJsonBody)) throw err;
      if (err.message.includes('too large')) ctx.set('Connection', 'close');
      return refuse(ctx, err.message);
    }
    // The provider reads the request stream itself; the original one is consumed, so it is shown a
    // replay of the form body in its place (on this request object only, and only while it runs).
    const req = ctx.req;
    req.headers['content-type'] = 'application/x-www-form-urlencoded';
    req.headers['content-length'] = String(form.length);
    delete req.headers['transfer-encoding'];
    Object.defineProperty(req, 'readable', { value: true, configurable: true });
    Object.defineProperty(req, 'iterator', {
      value: async function* replay() {
        yield form;
      },
      configurable: true,
    });
    try {
      await next();
    } finally {
      delete (req as { readable?: unknown }).readable;
      delete (req as { iterator?: unknown }).iterator;
    }
  };
}
