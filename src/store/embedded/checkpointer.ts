/**
 * Runs PASSIVE WAL checkpoints of the embedded SQLite file on a connection of its own, in a worker
 * thread, so that copying pages back into the database file and the fsyncs that go with it never
 * block the event loop (on a busy disk one second of token writes takes 50-100 ms to checkpoint).
 * PASSIVE does not wait for the main connection: its writers keep appending to the WAL meanwhile.
 *
 * The worker is a few lines of CommonJS evaluated as a string (no file to resolve, in the compiled
 * server as under the test runner). It costs about 18 MiB of resident memory, so database.ts starts
 * it only once writes are frequent enough for checkpoints to matter.
 */
import { Worker } from 'node:worker_threads';

/** The row of `PRAGMA wal_checkpoint`: busy is 1 when it could not run or finish; pages of the WAL. */
export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

const WORKER_SOURCE = `
'use strict';
const { DatabaseSync } = require('node:sqlite');
const { parentPort, workerData } = require('node:worker_threads');
const db = new DatabaseSync(workerData.path, { timeout: 0 });
db.exec('PRAGMA wal_autocheckpoint = 0');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
parentPort.on('message', (message) => {
  if (message === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ result: checkpoint.get() });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message ? err.message : err) });
  }
});
`;

export class BackgroundCheckpointer {
  private readonly worker: Worker;
  private running = false;
  private stopped = false;
  private readonly exited: Promise<void>;
  /** Set when the worker failed or exited on its own: the caller then checkpoints in-thread. */
  failed = false;

  constructor(path: string, onResult: (result: CheckpointResult | undefined) => void) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path },
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('message', (message: { result?: CheckpointResult; error?: string }) => {
      this.running = false;
      onResult(message.result);
    });
    const fail = () => {
      if (this.stopped) return;
      this.failed = true;
      this.running = false;
      onResult(undefined);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', fail);
  }

  /** Asks for one checkpoint; false when one is already running (it will cover these pages too). */
  request(): boolean {
    if (this.running || this.failed || this.stopped) return false;
    this.running = true;
    this.worker.postMessage('checkpoint');
    return true;
  }

  get busy(): boolean {
    return this.running;
  }

  /**
   * Closes the worker's connection once its current checkpoint (if any) is done, and resolves when
   * the thread has ended, so no file of the database is touched after the store says it is closed
   * (a caller may delete the folder next). A worker that does not end within 2 s is terminated.
   */
  stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      if (!this.failed) this.worker.postMessage('close');
      else void this.worker.terminate();
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        void this.worker.terminate().finally(resolve);
      }, 2000);
      timer.unref();
    });
    return Promise.race([this.exited, deadline]).finally(() => clearTimeout(timer));
  }
}
