/**
 * The webhook receiver helper of the delivery tests (test/helpers/webhook-receiver.ts): what it
 * records, the answers of its scripts over real HTTP, waitFor, and a close() that ends hanging
 * connections too.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { request } from 'node:http';

import { receiverScripts, startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

let receiver: WebhookReceiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

const post = (url: string, body = '{"event":"ping"}', init: RequestInit = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Webhook-Id': 'msg_1' },
    body,
    ...init,
  });

describe('startReceiver', () => {
  it('answers 200 by default and records method, path, lowercased headers, raw body and time', async () => {
    receiver = await startReceiver();
    expect(receiver.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const before = Date.now();
    const res = await post(`${receiver.url}/hooks/users?x=1`, '{"event":"ping", "data":{"name":"Zoë"}}');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: true });
    const [first] = await receiver.waitFor(1);
    expect(first).toMatchObject({
      n: 1,
      method: 'POST',
      path: '/hooks/users',
      target: '/hooks/users?x=1',
      body: '{"event":"ping", "data":{"name":"Zoë"}}',
    });
    expect(first!.headers['content-type']).toBe('application/json');
    expect(first!.headers['webhook-id']).toBe('msg_1');
    expect(first!.receivedAt.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(receiver.requests).toHaveLength(1);
  });

  it('answers 500 twice and then 200', async () => {
    receiver = await startReceiver(receiverScripts.failThenOk());
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(receiver.url)).status);
    expect(statuses).toEqual([500, 500, 200, 200]);
    expect(receiver.requests.map((r) => r.n)).toEqual([1, 2, 3, 4]);
  });

  it('answers 410 Gone', async () => {
    receiver = await startReceiver(receiverScripts.gone());
    expect((await post(receiver.url)).status).toBe(410);
  });

  it('redirects with 302 to another path, which answers 200', async () => {
    receiver = await startReceiver(receiverScripts.redirect('/moved'));
    const res = await post(`${receiver.url}/hooks`, undefined, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${receiver.url}/moved`);
    const followed = await post(`${receiver.url}/hooks`);
    expect(followed.status).toBe(200);
    expect(receiver.requests.map((r) => r.path)).toEqual(['/hooks', '/hooks', '/moved']);
  });

  it('never answers a hanging request, and close() still ends its connection', async () => {
    receiver = await startReceiver(receiverScripts.hang());
    await expect(post(receiver.url, undefined, { signal: AbortSignal.timeout(300) })).rejects.toThrow();
    // A client that keeps waiting: close() must not wait for it.
    const ended = new Promise<string>((resolve) => {
      const req = request(`${receiver!.url}/slow`, { method: 'POST' }, () => resolve('answered'));
      req.on('error', () => resolve('closed'));
      req.end('{}');
    });
    await receiver.waitFor(2);
    const started = Date.now();
    await receiver.close();
    receiver = undefined;
    expect(await ended).toBe('closed');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('sends scripted answers: delayed ones, fetch Responses, and a 599 when the script throws', async () => {
    receiver = await startReceiver((n) => {
      if (n === 1) return { status: 202, body: 'later', delayMs: 200 };
      if (n === 2) return new Response('{"ok":1}', { status: 201, headers: { 'x-receiver': 'yes' } });
      throw new Error('broken script');
    });
    const started = Date.now();
    const delayed = await post(receiver.url);
    expect(delayed.status).toBe(202);
    expect(await delayed.text()).toBe('later');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    const response = await post(receiver.url);
    expect(response.status).toBe(201);
    expect(response.headers.get('x-receiver')).toBe('yes');
    expect(await response.text()).toBe('{"ok":1}');
    expect((await post(receiver.url)).status).toBe(599);
  });

  it('waitFor resolves for requests already there and rejects when too few arrive in time', async () => {
    receiver = await startReceiver();
    await post(receiver.url);
    expect(await receiver.waitFor(1, 100)).toHaveLength(1);
    const later = receiver.waitFor(2, 2000);
    await post(receiver.url);
    expect(await later).toHaveLength(2);
    await expect(receiver.waitFor(3, 100)).rejects.toThrow('2 of 3 requests after 100 ms');
  });
});
