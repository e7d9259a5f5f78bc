/**
 * A small HTTP load balancer for tests that run several server processes as one service. Every
 * instance is reached through the balancer's one address, so they all serve the same issuer origin
 * (cookies, redirects and discovery URLs are the balancer's, as behind a real one).
 *
 * Where a request goes: to the backend named in its `X-Test-Backend` header (removed before
 * forwarding), else to `target` when that names a backend, else round robin over the backends whose
 * readiness probe last answered 200 (all of them when none did, or when probing is off).
 *
 * A request is retried on the next backend only when its connection failed before any byte of a
 * response arrived (refused, reset, closed), which is what a real balancer does for an instance that
 * stopped accepting. A request sent to a named backend is never retried. Anything else the caller
 * sees as it happened; a failure after the response began ends the caller's connection.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const BACKEND_HEADER = 'x-test-backend';

/** Connection errors that mean "no response came at all": safe to send the request elsewhere. */
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  BACKEND_HEADER,
];

export interface Forwarded {
  backend: string;
  method: string;
  path: string;
  status: number;
  /** Date.now() when the response ended. */
  at: number;
}

export interface Retried {
  backend: string;
  method: string;
  path: string;
  code: string;
  at: number;
}

export interface Failed {
  backend: string | undefined;
  method: string;
  path: string;
  reason: string;
  at: number;
}

/**
 * Longer than the server's own store-check timeout (2 s), so a slow store reads as the 503 the
 * server answers, not as a backend that is down.
 */
const PROBE_TIMEOUT_MS = 5000;

/** A change in a backend's readiness as the balancer's probe saw it. */
export interface ProbeChange {
  backend: string;
  status: number | 'down';
  at: number;
}

interface BackendState {
  name: string;
  url: URL;
  agent: http.Agent;
  healthy: boolean;
  lastProbe: number | 'down' | undefined;
  probing: boolean;
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

export class LoadBalancer {
  /** A backend name, or 'round-robin'. */
  target = 'round-robin';
  readonly forwarded: Forwarded[] = [];
  readonly retried: Retried[] = [];
  readonly failed: Failed[] = [];
  readonly probes: ProbeChange[] = [];

  private readonly backends = new Map<string, BackendState>();
  private next = 0;
  private probeTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  /** Listens on 127.0.0.1; `probeIntervalMs` > 0 checks each backend's GET /health/ready that often. */
  static async start(options: { probeIntervalMs?: number } = {}): Promise<LoadBalancer> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const balancer = new LoadBalancer(server, `http://127.0.0.1:${port}`);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      balancer.handle(req, res).catch((err: Error) => {
        balancer.failed.push({
          backend: undefined,
          method: req.method ?? '',
          path: req.url ?? '',
          reason: err.message,
          at: Date.now(),
        });
        res.destroy();
      });
    });
    if (options.probeIntervalMs) {
      balancer.probeTimer = setInterval(() => balancer.probeAll(), options.probeIntervalMs);
    }
    return balancer;
  }

  add(name: string, url: string): void {
    this.backends.set(name, {
      name,
      url: new URL(url),
      agent: new http.Agent({ keepAlive: true }),
      healthy: true,
      lastProbe: undefined,
      probing: false,
    });
  }

  /** Takes a backend out for good (its port may be reused by a later process). */
  remove(name: string): void {
    this.backends.get(name)?.agent.destroy();
    this.backends.delete(name);
  }

  /** Requests `backend` answered, optionally only those matching `method` and a path prefix. */
  servedBy(backend: string, method?: string, pathPrefix?: string): Forwarded[] {
    return this.forwarded.filter(
      (f) =>
        f.backend === backend &&
        (method === undefined || f.method === method) &&
        (pathPrefix === undefined || f.path.startsWith(pathPrefix)),
    );
  }

  /** Requests answered since `mark` (a length of `forwarded` taken earlier). */
  since(mark: number): Forwarded[] {
    return this.forwarded.slice(mark);
  }

  async close(): Promise<void> {
    clearInterval(this.probeTimer);
    for (const b of this.backends.values()) b.agent.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private probeAll(): void {
    for (const b of this.backends.values()) {
      if (b.probing) continue;
      b.probing = true;
      const record = (status: number | 'down') => {
        b.probing = false;
        b.healthy = status === 200;
        if (status !== b.lastProbe) this.probes.push({ backend: b.name, status, at: Date.now() });
        b.lastProbe = status;
      };
      const req = http.get(
        new URL('/health/ready', b.url),
        { agent: false, timeout: PROBE_TIMEOUT_MS },
        (res) => {
          res.resume();
          res.once('end', () => record(res.statusCode ?? 0));
        },
      );
      req.once('timeout', () => req.destroy(new Error('probe timed out')));
      req.once('error', () => record('down'));
    }
  }

  private candidates(req: IncomingMessage): { list: BackendState[]; pinned: boolean } {
    const header = req.headers[BACKEND_HEADER];
    const named = typeof header === 'string' ? header : this.target !== 'round-robin' ? this.target : '';
    if (named) {
      const b = this.backends.get(named);
      if (!b) throw new Error(`no backend named ${named}`);
      return { list: [b], pinned: true };
    }
    const all = [...this.backends.values()];
    const healthy = all.filter((b) => b.healthy);
    const pool = healthy.length > 0 ? healthy : all;
    const start = this.next++ % Math.max(1, pool.length);
    return { list: [...pool.slice(start), ...pool.slice(0, start)], pinned: false };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const { list, pinned } = this.candidates(req);
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    for (const [i, backend] of list.entries()) {
      const outcome = await this.forward(backend, req, body, res);
      if (outcome === 'answered') return;
      const last = pinned || i === list.length - 1;
      if (!last && RETRYABLE.has(outcome.code)) {
        this.retried.push({ backend: backend.name, method, path, code: outcome.code, at: Date.now() });
        continue;
      }
      this.failed.push({ backend: backend.name, method, path, reason: outcome.code, at: Date.now() });
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`bad gateway: ${outcome.code}\n`);
      return;
    }
    this.failed.push({ backend: undefined, method, path, reason: 'no backend', at: Date.now() });
    res.writeHead(503, { 'content-type': 'text/plain' }).end('no backend\n');
  }

  /** Sends one attempt; 'answered' once a response began, else the connection error's code. */
  private forward(
    backend: BackendState,
    req: IncomingMessage,
    body: Buffer,
    res: ServerResponse,
  ): Promise<'answered' | { code: string }> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const headers = withoutHopByHop(req.headers);
    if (body.length > 0 || req.headers['content-length'] !== undefined) {
      headers['content-length'] = String(body.length);
    }
    return new Promise((resolve) => {
      let answered = false;
      const upstream = http.request(new URL(path, backend.url), { method, headers, agent: backend.agent });
      upstream.once('response', (answer) => {
        answered = true;
        resolve('answered');
        res.writeHead(answer.statusCode ?? 502, withoutHopByHop(answer.headers));
        let finished = false;
        const fail = (reason: string) => {
          if (finished) return;
          finished = true;
          this.failed.push({ backend: backend.name, method, path, reason, at: Date.now() });
          res.destroy();
        };
        answer.on('data', (chunk: Buffer) => res.write(chunk));
        answer.once('aborted', () => fail('response aborted'));
        answer.once('error', (err) => fail(`response failed: ${err.message}`));
        answer.once('end', () => {
          if (finished) return;
          finished = true;
          res.end();
          this.forwarded.push({
            backend: backend.name,
            method,
            path,
            status: answer.statusCode ?? 0,
            at: Date.now(),
          });
        });
      });
      upstream.on('error', (err: NodeJS.ErrnoException) => {
        if (!answered) resolve({ code: err.code ?? err.message });
      });
      upstream.end(body);
    });
  }
}
