/**
 * Traffic for shutdown tests: a steady load of concurrent requests that records every answer, a
 * request held open mid-flight (its headers received by the server, its body not yet sent), and a
 * check whether a port still accepts connections.
 */
import { connect } from 'node:net';

export interface LoadRequest {
  path: string;
  headers?: Record<string, string>;
}

export interface LoadResult {
  path: string;
  /** 0 when no HTTP answer came at all. */
  status: number;
  error?: string;
  at: number;
}

/** `concurrency` workers sending `requests` in turn, one after another each, until stopped. */
export class LoadGenerator {
  readonly results: LoadResult[] = [];
  private running = true;
  private readonly workers: Promise<void>[];

  constructor(baseUrl: string, requests: LoadRequest[], concurrency: number) {
    let next = 0;
    this.workers = Array.from({ length: concurrency }, async () => {
      while (this.running) {
        const request = requests[next++ % requests.length]!;
        try {
          const res = await fetch(new URL(request.path, baseUrl), { headers: request.headers });
          await res.arrayBuffer();
          this.results.push({ path: request.path, status: res.status, at: Date.now() });
        } catch (err) {
          const cause = (err as { cause?: { code?: string } }).cause?.code;
          this.results.push({
            path: request.path,
            status: 0,
            error: `${(err as Error).message}${cause ? ` (${cause})` : ''}`,
            at: Date.now(),
          });
        }
      }
    });
  }

  /** Waits (up to `deadlineMs`) until `predicate` holds; returns whether it did. */
  async waitFor(predicate: () => boolean, deadlineMs: number): Promise<boolean> {
    const end = Date.now() + deadlineMs;
    while (!predicate()) {
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  /** Lets every worker finish its current request, then resolves. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface HeldRequest {
  /** Sends the body and resolves with the answer, read until the server closes the connection. */
  finish(): Promise<RawAnswer>;
}

/**
 * Opens a connection to `baseUrl` and sends a request's head with `Expect: 100-continue`, holding
 * back its body. Resolves once the server answered "100 Continue": by then the server has parsed the
 * request and is handling it, so the request is in flight in every sense a shutdown cares about.
 */
export function holdRequest(
  baseUrl: string,
  request: { method: string; path: string; headers: Record<string, string>; body: string },
  deadlineMs = 10_000,
): Promise<HeldRequest> {
  const url = new URL(baseUrl);
  const socket = connect(Number(url.port), url.hostname);
  let received = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  const ended = new Promise<void>((resolve) => {
    socket.once('close', () => {
      closed = true;
      resolve();
    });
  });
  socket.on('error', () => undefined); // the answer (or its absence) is what the caller checks

  const head = [
    `${request.method} ${request.path} HTTP/1.1`,
    ...Object.entries({
      ...request.headers,
      expect: '100-continue',
      'content-length': String(Buffer.byteLength(request.body)),
    }).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  socket.write(head);

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      clearInterval(watch);
      socket.destroy();
      reject(new Error(`no "100 Continue" within ${deadlineMs} ms; received: ${received}`));
    }, deadlineMs);
    const watch = setInterval(() => {
      if (closed) {
        clearTimeout(timer);
        clearInterval(watch);
        reject(new Error(`the connection closed before "100 Continue"; received: ${received}`));
      }
      if (!/^HTTP\/1\.1 100 Continue\r\n\r\n/.test(received)) return;
      clearTimeout(timer);
      clearInterval(watch);
      resolve({
        finish: async () => {
          received = '';
          socket.write(request.body);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            ended,
            new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs))),
          ]);
          clearTimeout(timer);
          if (!closed) {
            socket.destroy();
            throw new Error(`the server kept the connection open ${deadlineMs} ms; received: ${received}`);
          }
          const split = received.indexOf('\r\n\r\n');
          if (split < 0) throw new Error(`no answer before the connection closed; received: ${received}`);
          const [statusLine, ...headerLines] = received.slice(0, split).split('\r\n');
          const headers: Record<string, string> = {};
          for (const line of headerLines) {
            const colon = line.indexOf(':');
            headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
          }
          return {
            status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1] ?? 0),
            headers,
            body: received.slice(split + 4),
          };
        },
      });
    }, 10);
  });
}

/** Whether a new TCP connection to `baseUrl`'s port is refused (nothing listens any more). */
export function refusesConnections(baseUrl: string): Promise<boolean> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
