/**
 * Real backend servers started by a test, so the test can break them the way production breaks:
 * SIGKILL and a restart on the same port with the same data, SIGSTOP/SIGCONT (a process that hangs
 * with its sockets open). Redis keeps an append-only file fsynced on every write, so what it
 * acknowledged survives a kill; FerretDB stores in SQLite files.
 *
 * Binaries: `redis-server` from PATH (or REDIS_SERVER_BIN) and FerretDB at FERRETDB_BIN (or
 * `$GOPATH/bin/ferretdb-v1.24.0`, where scripts/test-services.sh builds it). A missing binary fails
 * the suite with a line saying how to get it; it never skips.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';

import { tempDir } from './backends.js';
import { freePort } from './processes.js';

function redisBinary(): string {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  if (spawnSync(bin, ['--version']).status !== 0) {
    throw new Error(`${bin} not found: install Debian's redis-server (scripts/test-services.sh does)`);
  }
  return bin;
}

function ferretBinary(): string {
  const bin =
    process.env.FERRETDB_BIN ?? join(process.env.GOPATH ?? join(homedir(), 'go'), 'bin', 'ferretdb-v1.24.0');
  if (!existsSync(bin)) {
    throw new Error(
      `FerretDB not found at ${bin}: run \`bash scripts/test-services.sh true\` once to build it`,
    );
  }
  return bin;
}

/** Resolves once something accepts connections on the port (or rejects after `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class BackendProcess {
  private child: ChildProcess | undefined;
  private log = '';

  private constructor(
    readonly name: string,
    readonly port: number,
    private readonly command: string,
    private readonly args: string[],
    private readonly dir: { path: string; remove(): void },
    /** How a client addresses it (without a database name for MongoDB). */
    readonly url: string,
  ) {}

  static async redis(): Promise<BackendProcess> {
    const bin = redisBinary();
    const port = await freePort();
    const dir = tempDir('latchkey-fault-redis-');
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir.path,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
    ];
    const backend = new BackendProcess('redis', port, bin, args, dir, `redis://127.0.0.1:${port}`);
    await backend.start();
    return backend;
  }

  static async ferretdb(): Promise<BackendProcess> {
    const bin = ferretBinary();
    const port = await freePort();
    const dir = tempDir('latchkey-fault-ferretdb-');
    const args = [
      '--handler=sqlite',
      `--sqlite-url=file:${dir.path}/`,
      `--listen-addr=127.0.0.1:${port}`,
      `--state-dir=${dir.path}`,
      '--telemetry=disable',
      '--log-level=warn',
      '--debug-addr=-',
    ];
    const backend = new BackendProcess('ferretdb', port, bin, args, dir, `mongodb://127.0.0.1:${port}`);
    await backend.start();
    return backend;
  }

  /** Starts (or restarts) the process on its port with its data, once it accepts connections. */
  async start(): Promise<void> {
    const child = spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (this.log += d));
    child.stderr!.on('data', (d) => (this.log += d));
    this.child = child;
    try {
      await waitForPort(this.port);
    } catch (err) {
      throw new Error(`${this.name} did not start: ${(err as Error).message}\n${this.log}`, { cause: err });
    }
  }

  output(): string {
    return this.log;
  }

  private signal(signal: NodeJS.Signals): void {
    if (!this.child || this.child.exitCode !== null) throw new Error(`${this.name} is not running`);
    this.child.kill(signal);
  }

  /** kill -9, and resolves once the process is gone (its port refuses connections). */
  async kill(): Promise<void> {
    const child = this.child!;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    this.signal('SIGKILL');
    await exited;
  }

  /** The process stops running; its sockets stay open and nothing answers. */
  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  async close(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGCONT');
      await this.kill();
    }
    this.dir.remove();
  }
}
