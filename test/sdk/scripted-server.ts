/**
 * A real node:http server on 127.0.0.1 and an ephemeral port that answers each path from a script:
 * a queue of answers, the last one repeating. An answer can also drop the connection (a network
 * error for the client) or never come (a timeout). Every request is recorded.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScriptedAnswer =
  { status: number; headers?: Record<string, string>; body?: unknown } | 'drop' | 'hang';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface ScriptedServer {
  url: string;
  requests: RecordedRequest[];
  /** Sets the answers for `method path` (path without the query). */
  script(method: string, path: string, answers: ScriptedAnswer[]): void;
  reset(): void;
  close(): Promise<void>;
}

export async function startScriptedServer(): Promise<ScriptedServer> {
  const scripts = new Map<string, ScriptedAnswer[]>();
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      requests.push({ method: req.method ?? '', path, headers: req.headers, body });
      const queue = scripts.get(`${req.method} ${path}`);
      const answer = queue ? (queue.length > 1 ? queue.shift()! : queue[0]!) : { status: 404 };
      if (answer === 'drop') {
        req.socket.destroy();
        return;
      }
      if (answer === 'hang') return;
      const payload = answer.body === undefined ? '' : JSON.stringify(answer.body);
      res.writeHead(answer.status, {
        ...(payload ? { 'content-type': 'application/json' } : {}),
        ...answer.headers,
      });
      res.end(payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script: (method, path, answers) => scripts.set(`${method} ${path}`, [...answers]),
    reset: () => {
      scripts.clear();
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An error envelope as Latchkey sends it. */
export function envelope(code: string, message: string, extra: Record<string, unknown> = {}) {
  return { error: { code, message, request_id: 'req_test123', timestamp: '2026-01-20T16:45:30Z', ...extra } };
}
