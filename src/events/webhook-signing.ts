/**
 * Signing of webhook deliveries (shared/API.md, "Webhooks"). Every delivery carries two signatures
 * over the same raw JSON body, so that both kinds of receivers in use can check it:
 *
 * - Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), computed by the
 *   `standardwebhooks` package: HMAC-SHA256 of `<id>.<unix seconds>.<body>`, base64, as `v1,<sig>`.
 *   The header lists one entry per secret, space-separated: during a secret rotation the current
 *   and the previous secret both sign, so receivers holding either one accept the delivery.
 * - `X-Signature`: the lowercase hex HMAC-SHA256 of the raw body with the current secret only,
 *   which is what the receiver example of API.md checks.
 *
 * The key rule (the SDK's verifyWebhook applies the same one):
 * - Standard Webhooks: a secret starting with `whsec_` (the form generateWebhookSecret makes) is
 *   used as the bytes its base64 text after the prefix decodes to, as the `standardwebhooks`
 *   package does by default; any other secret (users may bring their own, such as
 *   "your_webhook_secret") is used as its raw UTF-8 bytes (the package's `{ format: 'raw' }`).
 * - `X-Signature`: the HMAC key is always the secret string exactly as given, as UTF-8, prefix and
 *   all (`crypto.createHmac('sha256', secret)` in the receiver example).
 */
import { createHmac, randomBytes } from 'node:crypto';

import { Webhook } from 'standardwebhooks';

export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/** A new secret in the Standard Webhooks form: `whsec_` and the base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return WEBHOOK_SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** The Standard Webhooks signer for a secret, following the key rule above. */
export function standardWebhook(secret: string): Webhook {
  return secret.startsWith(WEBHOOK_SECRET_PREFIX)
    ? new Webhook(secret)
    : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
}

/** The `X-Signature` value: lowercase hex HMAC-SHA256 of the raw body, keyed by the secret's UTF-8. */
export function xSignature(body: string, secret: string): string {
  return createHmac('sha256', secret).update(body, 'utf8').digest('hex');
}

export interface SignWebhookInput {
  /** The delivery's message id (`webhook-id`), the same on every retry of that delivery. */
  msgId: string;
  /** When this attempt is sent; `webhook-timestamp` is its unix time in whole seconds. */
  timestamp: Date;
  /** The exact raw body sent. */
  body: string;
  /** The current secret first, then (during a rotation) the previous one. */
  secrets: string[];
}

/** The signature headers of one delivery attempt (lowercase names). */
export function signWebhook(input: SignWebhookInput): Record<string, string> {
  const { msgId, timestamp, body, secrets } = input;
  if (secrets.length === 0) throw new Error('signWebhook needs at least one secret');
  if (!msgId || /[\s.]/.test(msgId))
    throw new Error('webhook message id must be non-empty, without dots or spaces');
  const signatures = secrets.map((secret) => standardWebhook(secret).sign(msgId, timestamp, body));
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': signatures.join(' '),
    'x-signature': xSignature(body, secrets[0]!),
  };
}

const PRINTABLE_NO_SPACE = /^[\x21-\x7e]+$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The rule for a secret a user supplies: 16 to 256 printable ASCII characters without spaces; one
 * starting with `whsec_` must be base64 after the prefix that decodes to 24 to 64 bytes. Returns
 * what is wrong, or null when the secret is acceptable.
 */
export function validateWebhookSecret(secret: unknown): string | null {
  if (typeof secret !== 'string') return 'secret must be a string';
  if (secret.length < 16 || secret.length > 256) return 'secret must be 16 to 256 characters long';
  if (!PRINTABLE_NO_SPACE.test(secret)) return 'secret must be printable ASCII without spaces';
  if (secret.startsWith(WEBHOOK_SECRET_PREFIX)) {
    const encoded = secret.slice(WEBHOOK_SECRET_PREFIX.length);
    if (encoded.length % 4 !== 0 || !BASE64.test(encoded))
      return 'a whsec_ secret must be base64 after the prefix';
    const bytes = Buffer.from(encoded, 'base64');
    if (bytes.toString('base64') !== encoded) return 'a whsec_ secret must be base64 after the prefix';
    if (bytes.length < 24 || bytes.length > 64) return 'a whsec_ secret must decode to 24 to 64 bytes';
  }
  return null;
}
