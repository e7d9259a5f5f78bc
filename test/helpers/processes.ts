/** Runs the compiled server and CLI as real child processes, the way operators do. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const SERVER = join(ROOT, 'dist', 'main.js');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

/**
 * Ports handed out to be bound later (by a child process, nginx, an SMTP server started again on the
 * same port). They come from a range of this Jest worker's own, below Linux's ephemeral range
 * (32768–60999), one after another: a port asked of the kernel with listen(0) and closed could be
 * given to another worker's listen(0) before its owner binds it, and the two tests would talk to
 * each other's servers.
 */
const RANGE_SIZE = 1500;
const RANGE_START = 20_000 + ((Number(process.env.JEST_WORKER_ID ?? '1') - 1) % 8) * RANGE_SIZE;
let nextOffset = Math.floor(Math.random() * RANGE_SIZE);

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let tried = 0; tried < RANGE_SIZE; tried++) {
    const port = RANGE_START + (nextOffset++ % RANGE_SIZE);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${RANGE_START}–${RANGE_START + RANGE_SIZE - 1}`);
}

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for child processes: only what we pass, plus PATH. */
export function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  // Tests stop servers often: no drain unless a test asks for one (the default, 5 s, is for load
  // balancers). A variable given as undefined is left out, so the product's default applies.
  const all = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    SHUTDOWN_DRAIN_MS: '0',
    ...env,
  };
  return Object.fromEntries(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined));
}

export function runToEnd(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: childEnv(env), cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const MAX_OUTPUT = 2 * 2 ** 20;

export interface RunningProcess {
  child: ChildProcess;
  baseUrl: string;
  output: () => string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the server and resolves once GET /health/ready answers 200. */
export async function startServerProcess(
  env: Record<string, string | undefined>,
  timeoutMs = 20_000,
): Promise<RunningProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [SERVER], {
    env: childEnv({ PORT: String(port), ...env }),
    cwd: ROOT,
  });
  // The output kept is bounded (its last 2 MB): a server logging through a long fault test must
  // not make this process's string grow without end.
  let output = '';
  const keep = (d: Buffer) => {
    output += d;
    if (output.length > MAX_OUTPUT) output = output.slice(-MAX_OUTPUT / 2);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output}`);
    try {
      const res = await fetch(`${baseUrl}/health/ready`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not become ready:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    baseUrl,
    output: () => output,
    stop: async (signal = 'SIGTERM') => {
      child.kill(signal);
      return exited;
    },
  };
}
