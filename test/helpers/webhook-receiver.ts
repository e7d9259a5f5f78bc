/**
 * A real webhook receiver for delivery tests: a node:http server on 127.0.0.1 and an ephemeral port
 * that records every request (method, path, lowercased headers, raw body, time received) and answers
 * each from a script. The script is called with the request's number (1 for the first request the
 * receiver gets, whatever its path) and the recorded request, and returns the answer:
 *
 * - `{ status, headers?, body?, delayMs? }`: `body` a string sent as is, or a value sent as JSON;
 *   `delayMs` waits that long before answering (a slow receiver);
 * - a fetch `Response` (its status, headers and text are sent);
 * - `'hang'`: no answer ever; the connection stays open until close().
 *
 * `receiverScripts` has the usual ones. Without a script every request gets 200.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  /** 1 for the first request received, 2 for the second, ... */
  n: number;
  method: string;
  /** The path without the query. */
  path: string;
  /** The path with the query, as sent. */
  target: string;
  /** Names lowercased; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The raw body as received (UTF-8). */
  body: string;
  receivedAt: Date;
}

export type ReceiverAnswer =
  'hang' | Response | { status: number; headers?: Record<string, string>; body?: unknown; delayMs?: number };

export type ReceiverScript = (n: number, req: ReceivedRequest) => ReceiverAnswer | Promise<ReceiverAnswer>;

export interface WebhookReceiver {
  /** The base URL, `http://127.0.0.1:<port>`; deliver to `url + '/any/path'`. */
  url: string;
  /** Every request received so far, in order. */
  requests: ReceivedRequest[];
  /** Resolves with the requests once at least `count` have arrived; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Closes the server and every connection, hanging ones included. */
  close(): Promise<void>;
}

export const receiverScripts = {
  alwaysOk: (): ReceiverScript => () => ({ status: 200, body: { received: true } }),
  /** 500 to the first `failures` requests (two by default), then 200. */
  failThenOk:
    (failures = 2): ReceiverScript =>
    (n) =>
      n <= failures
        ? { status: 500, body: { error: 'temporarily broken' } }
        : { status: 200, body: { received: true } },
  /** 410 Gone: the receiver says the endpoint no longer exists. */
  gone: (): ReceiverScript => () => ({ status: 410, body: { error: 'gone' } }),
  /** 302 to another path of the same receiver (absolute URL); that path answers 200. */
  redirect:
    (to = '/redirected'): ReceiverScript =>
    (_n, req) =>
      req.path === to
        ? { status: 200, body: { received: true } }
        : { status: 302, headers: { location: `http://${req.headers.host}${to}` } },
  hang: (): ReceiverScript => () => 'hang',
};

function recordHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

async function send(res: ServerResponse, answer: Exclude<ReceiverAnswer, 'hang'>): Promise<void> {
  if (answer instanceof Response) {
    const text = await answer.text();
    res.writeHead(answer.status, Object.fromEntries(answer.headers.entries()));
    res.end(text);
    return;
  }
  if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
  if (res.destroyed) return; // the sender gave up waiting
  const text =
    answer.body === undefined
      ? ''
      : typeof answer.body === 'string'
        ? answer.body
        : JSON.stringify(answer.body);
  const type =
    answer.body === undefined || typeof answer.body === 'string'
      ? {}
      : { 'content-type': 'application/json' };
  res.writeHead(answer.status, { ...type, ...answer.headers });
  res.end(text);
}

export async function startReceiver(
  script: ReceiverScript = receiverScripts.alwaysOk(),
): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const target = req.url ?? '/';
      const recorded: ReceivedRequest = {
        n: requests.length + 1,
        method: req.method ?? '',
        path: new URL(target, 'http://receiver').pathname,
        target,
        headers: recordHeaders(req),
        body: Buffer.concat(chunks).toString('utf8'),
        receivedAt: new Date(),
      };
      requests.push(recorded);
      for (const wake of [...waiters]) wake();
      Promise.resolve()
        .then(() => script(recorded.n, recorded))
        .then((answer) => (answer === 'hang' ? undefined : send(res, answer)))
        .catch((err: unknown) => {
          if (!res.headersSent && !res.destroyed) {
            res.writeHead(599, { 'content-type': 'text/plain' });
            res.end(`receiver script failed: ${String(err)}`);
          }
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const waitFor = (count: number, timeoutMs = 5000) =>
    new Promise<ReceivedRequest[]>((resolve, reject) => {
      const check = () => {
        if (requests.length < count) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(requests.slice());
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`webhook receiver: ${requests.length} of ${count} requests after ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    waitFor,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
