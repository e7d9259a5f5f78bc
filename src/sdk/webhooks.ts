/**
 * Verifying the webhooks Latchkey sends. Each delivery is a POST whose raw JSON body is signed twice:
 *
 * - Standard Webhooks: `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`
 *   (space-separated `v1,<base64>` entries, one per secret: during a secret rotation the new and the
 *   previous secret both sign). The signature is computed with the `standardwebhooks` package.
 * - `X-Signature`: the lowercase hex HMAC-SHA256 of the raw body with the current secret.
 *
 * verifyWebhook checks the Standard Webhooks headers when they are present (and then only them:
 * they also bind the id and the time, which protects against replays) and falls back to
 * `X-Signature` when they are absent. The key rule matches the server's: for Standard Webhooks a
 * secret starting with `whsec_` stands for the bytes its base64 after the prefix decodes to, and any
 * other secret for its UTF-8 bytes; for `X-Signature` the key is the secret string as given, UTF-8.
 *
 * Signatures must be checked over the exact bytes received: parse the JSON only afterwards.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

import { Webhook } from 'standardwebhooks';

/** The event names Latchkey sends; other names may be added, so handle unknown ones gracefully. */
export type KnownWebhookEventType =
  | 'user.created'
  | 'user.updated'
  | 'user.deleted'
  | 'user.restored'
  | 'user.login'
  | 'user.login_failed'
  | 'user.locked'
  | 'user.role_changed'
  | 'user.password_changed'
  | 'api_key.created'
  | 'api_key.revoked'
  | 'api_key.rotated'
  | 'client.created'
  | 'client.updated'
  | 'client.deleted'
  | 'role.created'
  | 'role.updated'
  | 'role.deleted'
  | 'ping';

/** A delivered event: `event` and `type` carry the same name. */
export interface WebhookEvent<TData = Record<string, unknown>> {
  event: KnownWebhookEventType | (string & {});
  type: KnownWebhookEventType | (string & {});
  /** When the event happened (ISO 8601); a retried delivery keeps it. */
  timestamp: string;
  data: TData;
  /** The webhook endpoint the delivery is for. */
  webhook_id: string;
}

export type WebhookVerificationReason =
  'missing_signature' | 'bad_signature' | 'timestamp_too_old' | 'timestamp_in_future' | 'invalid_payload';

export class WebhookVerificationError extends Error {
  readonly reason: WebhookVerificationReason;

  constructor(reason: WebhookVerificationReason, message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
  }
}

export interface VerifyWebhookOptions {
  /** How far `webhook-timestamp` may be from now, either way, in seconds. Default 300. */
  toleranceSeconds?: number;
  /** The time to check against; default the current time. */
  now?: Date;
}

export type WebhookHeaders = Record<string, string | string[] | undefined> | Headers;

const DEFAULT_TOLERANCE_SECONDS = 300;

function headerReader(headers: WebhookHeaders): (name: string) => string | undefined {
  if (typeof Headers !== 'undefined' && headers instanceof Headers) {
    return (name) => headers.get(name) ?? undefined;
  }
  const lowered = new Map<string, string | string[] | undefined>();
  for (const [name, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    lowered.set(name.toLowerCase(), value);
  }
  return (name) => {
    const value = lowered.get(name);
    const text = Array.isArray(value) ? value.join(' ') : value;
    return text === undefined || text === '' ? undefined : text;
  };
}

/** The Standard Webhooks signer for a secret, by the key rule in the header of this module. */
function standardWebhook(secret: string): Webhook {
  return secret.startsWith('whsec_')
    ? new Webhook(secret)
    : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function verifyStandard(
  body: Uint8Array,
  id: string,
  timestampHeader: string,
  signatureHeader: string,
  secrets: readonly string[],
  options: VerifyWebhookOptions,
): void {
  if (!/^\d{1,12}$/.test(timestampHeader)) {
    throw new WebhookVerificationError('bad_signature', 'webhook-timestamp is not a unix time in seconds');
  }
  const timestamp = Number(timestampHeader);
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  // The library's verify() reads the real clock and fixes its tolerance at five minutes, so the
  // time is checked here (honouring `now` and `toleranceSeconds`) and the signature is computed
  // with the library's sign() and compared in constant time with each entry of the header.
  if (now - timestamp > tolerance) {
    throw new WebhookVerificationError('timestamp_too_old', 'webhook-timestamp is older than the tolerance');
  }
  if (timestamp - now > tolerance) {
    throw new WebhookVerificationError('timestamp_in_future', 'webhook-timestamp is too far in the future');
  }
  const encoder = new TextEncoder();
  const given = signatureHeader
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => encoder.encode(entry));
  const at = new Date(timestamp * 1000);
  let matched = false;
  for (const secret of secrets) {
    let expected: Uint8Array;
    try {
      expected = encoder.encode(standardWebhook(secret).sign(id, at, body));
    } catch {
      continue; // a whsec_ secret that is not base64 can match nothing
    }
    for (const entry of given) if (sameBytes(entry, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError('bad_signature', 'no webhook-signature entry matches');
}

function verifyXSignature(body: Uint8Array, given: string, secrets: readonly string[]): void {
  const text = given.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) {
    throw new WebhookVerificationError('bad_signature', 'X-Signature is not a hex HMAC-SHA256');
  }
  const givenBytes = Buffer.from(text, 'hex');
  let matched = false;
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(body).digest();
    if (sameBytes(givenBytes, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError('bad_signature', 'X-Signature does not match');
}

function parsePayload<TData>(body: Uint8Array): WebhookEvent<TData> {
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    throw new WebhookVerificationError('invalid_payload', 'the body is not JSON');
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new WebhookVerificationError('invalid_payload', 'the body is not a JSON object');
  }
  const fields = payload as Record<string, unknown>;
  const name = typeof fields.event === 'string' ? fields.event : fields.type;
  if (typeof name !== 'string' || name === '') {
    throw new WebhookVerificationError('invalid_payload', 'the body names no event');
  }
  return { ...fields, event: fields.event ?? name, type: fields.type ?? name } as WebhookEvent<TData>;
}

/**
 * Checks a delivery's signature over its raw body and returns the parsed event, or throws a
 * WebhookVerificationError. `secret` is the endpoint's secret; pass two (new first) while you
 * rotate it on your side. `headers` may be Node's `req.headers` or a fetch `Headers`.
 */
export function verifyWebhook<TData = Record<string, unknown>>(
  rawBody: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string | readonly string[],
  options: VerifyWebhookOptions = {},
): WebhookEvent<TData> {
  const secrets = (typeof secret === 'string' ? [secret] : [...secret]).filter((s) => s !== '');
  if (secrets.length === 0) throw new TypeError('verifyWebhook needs the webhook secret');
  const body = typeof rawBody === 'string' ? new TextEncoder().encode(rawBody) : rawBody;
  const header = headerReader(headers);
  const signature = header('webhook-signature');
  const id = header('webhook-id');
  const timestamp = header('webhook-timestamp');
  if (signature !== undefined || id !== undefined || timestamp !== undefined) {
    if (signature === undefined || id === undefined || timestamp === undefined) {
      throw new WebhookVerificationError(
        'missing_signature',
        'webhook-id, webhook-timestamp and webhook-signature must all be present',
      );
    }
    verifyStandard(body, id, timestamp, signature, secrets, options);
  } else {
    const xSignature = header('x-signature');
    if (xSignature === undefined) {
      throw new WebhookVerificationError('missing_signature', 'the request carries no webhook signature');
    }
    verifyXSignature(body, xSignature, secrets);
  }
  return parsePayload<TData>(body);
}
