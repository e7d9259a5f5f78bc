/**
 * Shared pieces of the benchmarks: starting the compiled server as a child process with its own data,
 * getting an admin token, running autocannon and summarizing its result, and printing tables.
 * Benchmarks talk HTTP to a real server process, as clients do; nothing here is timed in tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

export async function startServer(
  env: Record<string, string>,
  options: { dataDir?: string } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  // A benchmark may seed a data folder before the server starts; it is removed at stop() all the same.
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'latchkey-bench-'));
  const url = `http://127.0.0.1:${port}`;
  // BENCH_SERVER_CPUS=0 pins the server to those CPUs (taskset), e.g. to keep it apart from the
  // load generator (run the bench itself under `taskset -c 1`).
  const pin = process.env.BENCH_SERVER_CPUS;
  const command = pin ? 'taskset' : process.execPath;
  const args = pin
    ? ['-c', pin, process.execPath, join(ROOT, 'dist', 'main.js')]
    : [join(ROOT, 'dist', 'main.js')];
  const child = spawn(command, args, {
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
      // Node/V8 flags for the server only (experiments: --stack-trace-limit=…, --max-semi-space-size=…).
      ...(process.env.BENCH_SERVER_NODE_OPTIONS
        ? { NODE_OPTIONS: process.env.BENCH_SERVER_NODE_OPTIONS }
        : {}),
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

/**
 * A Markdown table of measurements; `extra` adds columns after the standard ones (title → cell), for
 * suites that print floors or memory next to each row.
 */
export function table<R extends Measurement>(
  rows: R[],
  extra: Record<string, (row: R) => string> = {},
): string {
  const titles = Object.keys(extra);
  const cells = Object.values(extra);
  const lines = [
    ['| Scenario | Offered load | Requests/s | p50 (ms) | p99 (ms) | Errors', ...titles].join(' | ') + ' |',
    '| --- | --- | --- | --- | --- | ---' + ' | ---'.repeat(titles.length) + ' |',
    ...rows.map(
      (r) =>
        [
          `| ${r.name} | ${r.offeredRate ? `${r.offeredRate}/s` : 'max'} | ${r.requestsPerSecond} | ${r.p50} | ${r.p99} | ${r.errors} of ${r.requests}`,
          ...cells.map((cell) => cell(r)),
        ].join(' | ') + ' |',
    ),
  ];
  return lines.join('\n');
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function basicAuth(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** Thrown by a closed-loop operation whose loop cannot go on (a broken refresh-token chain). */
export class StopLoop extends Error {}

/**
 * Runs `operation` in `concurrency` loops, each starting its next call when the previous one ends,
 * for `durationS` seconds; for flows autocannon cannot express (several requests with cookies, or a
 * chain where each request needs the previous answer). A call that throws counts as an error; a loop
 * whose call threw `StopLoop` ends early (its chain is broken). Latency is of the whole operation.
 */
export async function closedLoop(
  name: string,
  options: { concurrency: number; durationS: number },
  operation: (loop: number) => Promise<void>,
): Promise<Measurement> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + options.durationS * 1000;
  const loop = async (index: number) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await operation(index);
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors += 1;
        if (errors <= 3) process.stderr.write(`${name}: ${(err as Error).message}\n`);
        if (err instanceof StopLoop) return;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => loop(i)));
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    requestsPerSecond: Math.round((latencies.length / elapsedS) * 10) / 10,
    p50: Math.round(percentile(latencies, 50)),
    p99: Math.round(percentile(latencies, 99)),
    errors,
    requests: latencies.length + errors,
  };
}

function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  } catch {
    return 0; // not Linux, or the process is gone
  }
}

/** Resident memory of a process in MiB (0 where /proc is not available). */
export function rssMiB(pid: number): number {
  return Math.round(procStatusKiB(pid, 'VmRSS') / 1024);
}

/** CPU time (user + system) a process has used so far, in ms (0 where /proc is not available). */
export function cpuMs(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return 0;
  }
}
/**
 * CPU time (ms) of a process's threads, grouped: its main thread (the event loop), libuv's pool
 * (`libuv-worker`: password hashing, WebCrypto signatures, file system calls) and the rest (V8's
 * compiler and GC helpers, worker threads). Zeros where /proc is not readable.
 */
export function threadCpuMs(pid: number): { main: number; pool: number; other: number } {
  const out = { main: 0, pool: 0, other: 0 };
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
      if (tid === String(pid)) out.main += ms;
      else if (name.startsWith('libuv-worker')) out.pool += ms;
      else out.other += ms;
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}
/** USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux build in practice. */
const CLOCK_TICKS_PER_S = 100;

/**
 * What a process spends while `work` runs: its peak resident memory in MiB (the kernel's high-water
 * mark VmHWM, reset first through /proc/<pid>/clear_refs, together with VmRSS sampled every 50 ms in
 * case the reset is not allowed) and the CPU time it used in ms. CPU per request does not depend on
 * how busy the rest of the machine is the way requests per second do.
 */
export async function watchProcess<T>(
  pid: number,
  work: () => Promise<T>,
): Promise<{ result: T; peakMiB: number; cpuMs: number }> {
  let reset = false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    reset = true;
  } catch {
    // not Linux, or not permitted: sampling alone
  }
  let peakKiB = procStatusKiB(pid, 'VmRSS');
  const timer = setInterval(() => {
    peakKiB = Math.max(peakKiB, procStatusKiB(pid, 'VmRSS'));
  }, 50);
  const cpuBefore = cpuMs(pid);
  try {
    const result = await work();
    const used = cpuMs(pid) - cpuBefore;
    if (reset) peakKiB = Math.max(peakKiB, procStatusKiB(pid, 'VmHWM'));
    return { result, peakMiB: Math.round(peakKiB / 1024), cpuMs: used };
  } finally {
    clearInterval(timer);
  }
}
