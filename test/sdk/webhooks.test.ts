/**
 * The SDK's webhook verification against deliveries signed as the server signs them (signWebhook of
 * src/events/webhook-signing.ts): verifyWebhook with both schemes and both secret forms, a rotation,
 * the timestamp tolerance and every refusal reason; then the Express and Koa middleware in real apps
 * on 127.0.0.1 receiving signed POSTs over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import bodyParser from '@koa/bodyparser';
import express from 'express';
import Koa from 'koa';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { generateWebhookSecret, signWebhook } from '../../src/events/webhook-signing.js';
import {
  verifyWebhook,
  webhookExpress,
  webhookKoa,
  WebhookVerificationError,
  type WebhookKoaState,
  type WebhookVerificationReason,
} from '../../src/sdk/index.js';

const USER_SECRET = 'your_webhook_secret';
const payload = {
  event: 'user.created',
  type: 'user.created',
  timestamp: '2025-01-20T16:45:30Z',
  data: { user: { id: 'usr_1', email: 'newuser@company.com', first_name: 'Zoë', last_name: 'Doe' } },
  webhook_id: 'wh_abc123',
};
const body = JSON.stringify(payload);

function signed(secrets: string[], at = new Date(), text = body): Record<string, string> {
  return signWebhook({ msgId: 'msg_2Lx9', timestamp: at, body: text, secrets });
}

const standardOnly = (headers: Record<string, string>) => {
  const { 'x-signature': _x, ...rest } = headers;
  return rest;
};
const xOnly = (headers: Record<string, string>) => ({ 'x-signature': headers['x-signature']! });

function reasonOf(work: () => unknown): WebhookVerificationReason | undefined {
  try {
    work();
  } catch (err) {
    if (err instanceof WebhookVerificationError) return err.reason;
    throw err;
  }
  return undefined;
}

describe('verifyWebhook', () => {
  describe.each([
    ['a generated whsec_ secret', generateWebhookSecret()],
    ['a secret the user supplied', USER_SECRET],
  ])('with %s', (_label, secret) => {
    it('accepts the Standard Webhooks headers and returns the payload', () => {
      expect(verifyWebhook(body, standardOnly(signed([secret])), secret)).toEqual(payload);
      expect(verifyWebhook(Buffer.from(body), standardOnly(signed([secret])), secret)).toEqual(payload);
    });

    it('accepts X-Signature alone', () => {
      expect(verifyWebhook(body, xOnly(signed([secret])), secret)).toEqual(payload);
    });

    it('refuses either scheme under another secret, or over a changed body', () => {
      const other = generateWebhookSecret();
      expect(reasonOf(() => verifyWebhook(body, standardOnly(signed([secret])), other))).toBe(
        'bad_signature',
      );
      expect(reasonOf(() => verifyWebhook(body, xOnly(signed([secret])), other))).toBe('bad_signature');
      const changed = body.replace('Zoë', 'Zoe');
      expect(reasonOf(() => verifyWebhook(changed, standardOnly(signed([secret])), secret))).toBe(
        'bad_signature',
      );
      expect(reasonOf(() => verifyWebhook(changed, xOnly(signed([secret])), secret))).toBe('bad_signature');
    });
  });

  it('checks only the Standard Webhooks headers when they are there (a bad one is not rescued by X-Signature)', () => {
    const headers = signed([USER_SECRET]);
    headers['webhook-timestamp'] = String(Number(headers['webhook-timestamp']) - 1);
    expect(reasonOf(() => verifyWebhook(body, headers, USER_SECRET))).toBe('bad_signature');
  });

  it('accepts a delivery signed during a rotation with either secret', () => {
    const current = generateWebhookSecret();
    const headers = signed([current, USER_SECRET]);
    expect(verifyWebhook(body, standardOnly(headers), current)).toEqual(payload);
    expect(verifyWebhook(body, standardOnly(headers), USER_SECRET)).toEqual(payload);
    // A receiver rotating on its side passes both of its secrets.
    expect(verifyWebhook(body, standardOnly(signed([USER_SECRET])), [current, USER_SECRET])).toEqual(payload);
    expect(verifyWebhook(body, xOnly(headers), [USER_SECRET, current])).toEqual(payload);
  });

  it('reads fetch Headers, any header case, array values and uppercase hex', () => {
    const secret = generateWebhookSecret();
    const headers = signed([secret]);
    expect(verifyWebhook(body, new Headers(standardOnly(headers)), secret)).toEqual(payload);
    const upper = Object.fromEntries(
      Object.entries(standardOnly(headers)).map(([k, v]) => [k.toUpperCase(), v]),
    );
    expect(verifyWebhook(body, upper, secret)).toEqual(payload);
    expect(
      verifyWebhook(
        body,
        { ...standardOnly(headers), 'webhook-signature': ['v1,bm90IGl0', headers['webhook-signature']!] },
        secret,
      ),
    ).toEqual(payload);
    expect(verifyWebhook(body, { 'X-Signature': headers['x-signature']!.toUpperCase() }, secret)).toEqual(
      payload,
    );
  });

  it('holds the timestamp to 5 minutes either way by default, or to the tolerance given', () => {
    const secret = generateWebhookSecret();
    const now = new Date('2026-03-01T12:00:00Z');
    const at = (seconds: number) => standardOnly(signed([secret], new Date(now.getTime() + seconds * 1000)));
    expect(verifyWebhook(body, at(-300), secret, { now })).toEqual(payload);
    expect(verifyWebhook(body, at(300), secret, { now })).toEqual(payload);
    expect(reasonOf(() => verifyWebhook(body, at(-301), secret, { now }))).toBe('timestamp_too_old');
    expect(reasonOf(() => verifyWebhook(body, at(301), secret, { now }))).toBe('timestamp_in_future');
    expect(verifyWebhook(body, at(-3000), secret, { now, toleranceSeconds: 3600 })).toEqual(payload);
    expect(reasonOf(() => verifyWebhook(body, at(-61), secret, { now, toleranceSeconds: 60 }))).toBe(
      'timestamp_too_old',
    );
    // The real clock when `now` is not given.
    expect(reasonOf(() => verifyWebhook(body, standardOnly(signed([secret], now)), secret))).toBe(
      'timestamp_too_old',
    );
  });

  it('names what is missing or wrong', () => {
    const headers = signed([USER_SECRET]);
    expect(reasonOf(() => verifyWebhook(body, {}, USER_SECRET))).toBe('missing_signature');
    expect(reasonOf(() => verifyWebhook(body, { 'x-signature': '' }, USER_SECRET))).toBe('missing_signature');
    const { 'webhook-id': _id, ...noId } = headers;
    expect(reasonOf(() => verifyWebhook(body, noId, USER_SECRET))).toBe('missing_signature');
    expect(
      reasonOf(() => verifyWebhook(body, { ...headers, 'webhook-timestamp': 'yesterday' }, USER_SECRET)),
    ).toBe('bad_signature');
    expect(reasonOf(() => verifyWebhook(body, { 'x-signature': 'abc' }, USER_SECRET))).toBe('bad_signature');
    for (const text of ['not json', '[1,2]', '{"data":{}}', '"user.created"']) {
      expect(reasonOf(() => verifyWebhook(text, signed([USER_SECRET], new Date(), text), USER_SECRET))).toBe(
        'invalid_payload',
      );
    }
    expect(() => verifyWebhook(body, headers, '')).toThrow(TypeError);
  });

  it('fills `type` from `event` for a payload that carries only `event`', () => {
    const text = JSON.stringify({
      event: 'ping',
      timestamp: payload.timestamp,
      data: {},
      webhook_id: 'wh_1',
    });
    expect(verifyWebhook(text, xOnly(signed([USER_SECRET], new Date(), text)), USER_SECRET)).toMatchObject({
      event: 'ping',
      type: 'ping',
    });
  });
});

interface App {
  url: string;
  received: unknown[];
  close(): Promise<void>;
}

async function listen(server: Server, received: unknown[]): Promise<App> {
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Kind = 'express.raw' | 'express, no parser' | 'koa, no parser' | 'koa with @koa/bodyparser';

function startApp(kind: Kind, secret: string | string[]): Promise<App> {
  const received: unknown[] = [];
  if (kind.startsWith('express')) {
    const app = express();
    const parsers = kind === 'express.raw' ? [express.raw({ type: 'application/json' })] : [];
    app.post('/webhooks', ...parsers, webhookExpress(secret), (req, res) => {
      received.push(req.webhook);
      res.json({ received: true, event: req.webhook?.event });
    });
    return listen(app.listen(0, '127.0.0.1'), received);
  }
  const app = new Koa<WebhookKoaState>();
  if (kind === 'koa with @koa/bodyparser') app.use(bodyParser());
  const guard = webhookKoa(secret);
  app.use(async (ctx, next) => {
    if (ctx.path !== '/webhooks' || ctx.method !== 'POST') return;
    await guard(ctx, next);
  });
  app.use((ctx) => {
    received.push(ctx.state.webhook);
    ctx.body = { received: true, event: ctx.state.webhook.event };
  });
  return listen(app.listen(0, '127.0.0.1'), received);
}

const post = (url: string, headers: Record<string, string>, text = body) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: text });

describe.each<Kind>(['express.raw', 'express, no parser', 'koa, no parser', 'koa with @koa/bodyparser'])(
  'webhook middleware (%s)',
  (kind) => {
    const secret = generateWebhookSecret();
    let app: App;
    beforeAll(async () => {
      app = await startApp(kind, secret);
    });
    afterAll(() => app.close());

    it('passes a signed delivery on with the event, by either scheme', async () => {
      for (const headers of [signed([secret]), standardOnly(signed([secret])), xOnly(signed([secret]))]) {
        const res = await post(app.url, headers);
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ received: true, event: 'user.created' });
      }
      expect(app.received).toEqual([payload, payload, payload]);
    });

    it('accepts a delivery during a rotation signed by the new and the old secret', async () => {
      const res = await post(app.url, signed([generateWebhookSecret(), secret]));
      expect(res.status).toBe(200);
    });

    it.each<[string, () => { headers: Record<string, string>; text?: string }, string]>([
      ['without signature', () => ({ headers: {} }), 'missing_signature'],
      ['signed with another secret', () => ({ headers: signed([generateWebhookSecret()]) }), 'bad_signature'],
      [
        'with a changed body',
        () => ({ headers: signed([secret]), text: body.replace('usr_1', 'usr_2') }),
        'bad_signature',
      ],
      [
        'ten minutes old',
        () => ({ headers: signed([secret], new Date(Date.now() - 600_000)) }),
        'timestamp_too_old',
      ],
    ])('answers 401 to a delivery %s', async (_label, make, reason) => {
      const before = app.received.length;
      const { headers, text } = make();
      const res = await post(app.url, headers, text);
      expect(res.status).toBe(401);
      const answer = (await res.json()) as { error: { code: string; message: string } };
      expect(answer).toEqual({ error: { code: 'WEBHOOK_SIGNATURE_INVALID', message: expect.any(String) } });
      expect(answer.error.message).toMatch(new RegExp(`^${reason}:`));
      expect(app.received).toHaveLength(before);
    });
  },
);

describe('webhookExpress behind a JSON parser', () => {
  let app: App;
  beforeAll(async () => {
    const express_ = express();
    express_.post('/webhooks', express.json(), webhookExpress(USER_SECRET), (_req, res) => {
      res.json({ received: true });
    });
    express_.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ message: err.message });
    });
    app = await listen(express_.listen(0, '127.0.0.1'), []);
  });
  afterAll(() => app.close());

  it('passes an error to next that says to use express.raw', async () => {
    const res = await post(app.url, signed([USER_SECRET]));
    expect(res.status).toBe(500);
    expect(((await res.json()) as { message: string }).message).toMatch(/express\.raw/);
  });
});
