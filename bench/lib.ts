/**
 * Shared pieces of the benchmarks: starting the compiled server as a child process with its own data,
 * getting an admin token, running autocannon and summarizing its result, and printing tables.
 * Benchmarks talk HTTP to a real server process, as clients do; nothing here is timed in tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';

import autocannon from 'autocannon';

export const ROOT = join(import.meta.dirname, '..');
export const ADMIN_CLIENT = 'bench-admin';
export const ADMIN_SECRET = 'bench-admin-secret-0123456789abcdefghijklmnop';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  dataDir: string;
  /** Resident memory of the server process in MiB, from /proc. */
  rssMiB(): Promise<number>;
  stop(): Promise<void>;
}

export async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'latchkey-bench-'));
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      ISSUER: url.replace('127.0.0.1', 'localhost'),
      ALLOW_HTTP_ISSUER: 'true',
      TRUST_PROXY: 'true',
      PORT: String(port),
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      COOKIE_KEYS: 'bench-cookie-key-0123456789abcdefghijklmnopqrstuv',
      KEY_ENCRYPTION_SECRET: 'bench-key-encryption-secret-0123456789abcdefghij',
      BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT,
      BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_SECRET,
      RATE_LIMIT_ENTERPRISE_PER_HOUR: '1000000000',
      RATE_LIMIT_ENTERPRISE_BURST: '10000000',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/health/ready`)).ok) break;
    } catch {
      // not up yet
    }
    if (i > 300) throw new Error('server did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    dataDir,
    async rssMiB() {
      const { readFileSync } = await import('node:fs');
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      return Math.round(kb / 1024);
    },
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      if (process.env.BENCH_KEEP_DATA) process.stderr.write(`kept the server's data in ${dataDir}\n`);
      else rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function adminToken(
  url: string,
  scope = 'user:read user:write role:manage client:manage audit:read',
): Promise<string> {
  const res = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${ADMIN_CLIENT}:${ADMIN_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return body.access_token;
}

export interface Measurement {
  name: string;
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  requests: number;
  offeredRate?: number;
}

export async function measure(
  name: string,
  options: autocannon.Options & { offeredRate?: number },
): Promise<Measurement> {
  const result = await autocannon({
    duration: 10,
    connections: 32,
    ...options,
    ...(options.offeredRate ? { overallRate: options.offeredRate } : {}),
  });
  const errors = result.errors + result.timeouts + result.non2xx;
  return {
    name,
    requestsPerSecond: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors,
    requests: result.requests.total,
    offeredRate: options.offeredRate,
  };
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`;
}

export function table(rows: Measurement[]): string {
  const lines = [
    '| Scenario | Offered load | Requests/s | p50 (ms) | p99 (ms) | Errors |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.offeredRate ? `${r.offeredRate}/s` : 'max'} | ${r.requestsPerSecond} | ${r.p50} | ${r.p99} | ${r.errors} of ${r.requests} |`,
    ),
  ];
  return lines.join('\n');
}
