/**
 * The webhook signatures as receivers check them: the Standard Webhooks headers with the
 * `standardwebhooks` library's own verify, for a generated `whsec_` secret and for a secret a user
 * brought, one secret or two (a rotation); `X-Signature` with the receiver code of shared/API.md as
 * written there; a changed body or timestamp fails both.
 */
import { describe, expect, it } from '@jest/globals';
import crypto from 'node:crypto';

import { Webhook } from 'standardwebhooks';

import {
  generateWebhookSecret,
  signWebhook,
  validateWebhookSecret,
} from '../../src/events/webhook-signing.js';

const USER_SECRET = 'your_webhook_secret';
const body = JSON.stringify({
  event: 'user.created',
  type: 'user.created',
  timestamp: '2025-01-20T16:45:30Z',
  data: { user: { id: 'usr_1', email: 'newuser@company.com', first_name: 'Jöhn' } },
  webhook_id: 'wh_abc123',
});

/** The library's verifier for a secret, by the key rule: `whsec_` decoded, anything else raw. */
const verifier = (secret: string) =>
  secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });

type ReceiverReq = { body: Buffer; headers: Record<string, string | undefined> };
type ReceiverRes = { status(code: number): { json(body: unknown): unknown } };

/**
 * The Express handler of shared/API.md, its body unchanged (prettier would rewrap it): `req.body`
 * is the Buffer `express.raw` gives, `SECRET` the endpoint's secret. Returns the status it answered.
 */
function apiMdReceiver(SECRET: string, req: ReceiverReq): number {
  let answered = 0;
  const res: ReceiverRes = { status: (code) => ((answered = code), { json: (answer) => answer }) };
  // prettier-ignore
  ((req: ReceiverReq, res: ReceiverRes) => {
  const expected = crypto.createHmac('sha256', SECRET).update(req.body.toString()).digest('hex');
  const given = String(req.headers['x-signature'] ?? '');
  if (given.length !== expected.length ||
      !crypto.timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(expected, 'hex')))
    return res.status(401).json({ error: 'Invalid signature' });
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the handler's own line, kept
  const event = JSON.parse(req.body.toString()); // switch on event.event (some read event.type)
  res.status(200).json({ received: true });
  })(req, res);
  return answered;
}

describe('generateWebhookSecret', () => {
  it('makes whsec_ and the base64 of 32 random bytes, different each time, valid by the rule', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32);
    expect(generateWebhookSecret()).not.toBe(secret);
    expect(validateWebhookSecret(secret)).toBeNull();
  });
});

describe('signWebhook', () => {
  const now = new Date();

  it.each([
    ['a generated whsec_ secret', generateWebhookSecret()],
    ['a secret the user supplied', USER_SECRET],
  ])('signs with %s so that standardwebhooks verifies it', (_label, secret) => {
    const headers = signWebhook({ msgId: 'msg_1', timestamp: now, body, secrets: [secret] });
    expect(Object.keys(headers).sort()).toEqual([
      'webhook-id',
      'webhook-signature',
      'webhook-timestamp',
      'x-signature',
    ]);
    expect(headers['webhook-id']).toBe('msg_1');
    expect(headers['webhook-timestamp']).toBe(String(Math.floor(now.getTime() / 1000)));
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(verifier(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(verifier(secret).verify(Buffer.from(body), headers)).toEqual(JSON.parse(body));
  });

  it('uses a whsec_ secret decoded and any other secret as its UTF-8 bytes', () => {
    const secret = generateWebhookSecret();
    const key = Buffer.from(secret.slice(6), 'base64');
    const ts = Math.floor(now.getTime() / 1000);
    const sig = (k: Buffer | string) =>
      'v1,' + crypto.createHmac('sha256', k).update(`msg_1.${ts}.${body}`).digest('base64');
    expect(
      signWebhook({ msgId: 'msg_1', timestamp: now, body, secrets: [secret] })['webhook-signature'],
    ).toBe(sig(key));
    const unicode = 'sécret-du-crochet-web';
    expect(
      signWebhook({ msgId: 'msg_1', timestamp: now, body, secrets: [unicode] })['webhook-signature'],
    ).toBe(sig(Buffer.from(unicode, 'utf8')));
  });

  it('signs with both secrets during a rotation: a receiver holding either one verifies', () => {
    for (const [current, previous] of [
      [generateWebhookSecret(), generateWebhookSecret()],
      [generateWebhookSecret(), USER_SECRET],
      ['a-new-user-secret-1234', USER_SECRET],
    ] as const) {
      const headers = signWebhook({ msgId: 'msg_2', timestamp: now, body, secrets: [current, previous] });
      expect(headers['webhook-signature']!.split(' ')).toHaveLength(2);
      expect(verifier(current).verify(body, headers)).toEqual(JSON.parse(body));
      expect(verifier(previous).verify(body, headers)).toEqual(JSON.parse(body));
      expect(() => verifier(generateWebhookSecret()).verify(body, headers)).toThrow(/No matching signature/);
      // X-Signature is the current secret's only.
      expect(apiMdReceiver(current, { body: Buffer.from(body), headers })).toBe(200);
      expect(apiMdReceiver(previous, { body: Buffer.from(body), headers })).toBe(401);
    }
  });

  it.each([
    ['a generated whsec_ secret', generateWebhookSecret()],
    ['a secret the user supplied', USER_SECRET],
  ])('makes the X-Signature that the API.md receiver accepts, with %s', (_label, secret) => {
    const headers = signWebhook({ msgId: 'msg_3', timestamp: now, body, secrets: [secret] });
    expect(headers['x-signature']).toMatch(/^[0-9a-f]{64}$/);
    expect(apiMdReceiver(secret, { body: Buffer.from(body), headers })).toBe(200);
    expect(apiMdReceiver('some-other-secret-0000', { body: Buffer.from(body), headers })).toBe(401);
  });

  it('fails both schemes for a changed body, and the Standard Webhooks one for a changed timestamp or id', () => {
    const secret = generateWebhookSecret();
    const headers = signWebhook({ msgId: 'msg_4', timestamp: now, body, secrets: [secret] });
    const tampered = body.replace('newuser@company.com', 'attacker@evil.test');
    expect(() => verifier(secret).verify(tampered, headers)).toThrow(/No matching signature/);
    expect(apiMdReceiver(secret, { body: Buffer.from(tampered), headers })).toBe(401);

    const moved = { ...headers, 'webhook-timestamp': String(Number(headers['webhook-timestamp']) - 1) };
    expect(() => verifier(secret).verify(body, moved)).toThrow(/No matching signature/);
    const otherId = { ...headers, 'webhook-id': 'msg_5' };
    expect(() => verifier(secret).verify(body, otherId)).toThrow(/No matching signature/);
  });

  it('refuses to sign without a secret or with an unusable message id', () => {
    expect(() => signWebhook({ msgId: 'msg_1', timestamp: now, body, secrets: [] })).toThrow();
    expect(() => signWebhook({ msgId: '', timestamp: now, body, secrets: [USER_SECRET] })).toThrow();
    expect(() => signWebhook({ msgId: 'a.b', timestamp: now, body, secrets: [USER_SECRET] })).toThrow();
  });
});

describe('validateWebhookSecret', () => {
  it.each([
    USER_SECRET,
    'x'.repeat(16),
    'x'.repeat(256),
    '!#$%&()*+,-./0123456789:;<=>?@[]^_`{|}~',
    'whsec_' + crypto.randomBytes(24).toString('base64'),
    'whsec_' + crypto.randomBytes(64).toString('base64'),
  ])('accepts %s', (secret) => {
    expect(validateWebhookSecret(secret)).toBeNull();
  });

  it.each([
    ['too short', 'x'.repeat(15)],
    ['too long', 'x'.repeat(257)],
    ['with a space', 'my webhook secret'],
    ['with a newline', 'my_webhook_secret\n'],
    ['not ASCII', 'sécret-du-crochet-web'],
    ['whsec_ that is not base64', 'whsec_not*base64*at*all*here'],
    ['whsec_ of too few bytes', 'whsec_' + crypto.randomBytes(16).toString('base64')],
    ['whsec_ of too many bytes', 'whsec_' + crypto.randomBytes(65).toString('base64')],
    ['whsec_ with bad padding', 'whsec_' + crypto.randomBytes(32).toString('base64').replace('=', '')],
  ])('refuses a secret %s', (_label, secret) => {
    expect(validateWebhookSecret(secret)).toEqual(expect.any(String));
  });

  it('refuses what is not a string', () => {
    expect(validateWebhookSecret(undefined)).toEqual(expect.any(String));
    expect(validateWebhookSecret(1234567890123456)).toEqual(expect.any(String));
  });
});
