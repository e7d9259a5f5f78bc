/**
 * The main thread's side of the delivery thread (webhook-thread.ts): `send` hands one signed-to-be
 * request over and resolves with what came of it. Requests started in one turn go over in one
 * message; results come back in batches. The thread is started on first use; if it dies, the
 * attempts it had fail (`connection_failed`, retried on the schedule like any failed attempt) and
 * the next send starts a new one.
 */
import { Worker } from 'node:worker_threads';

import type { OutboundErrorReason } from '../http/outbound.js';

export interface ThreadOptions {
  timeoutMs: number;
  allowHttp: boolean;
  allowPrivateNetworks: boolean;
  concurrency: number;
  endpointConcurrency: number;
}

/** One attempt for the thread: it signs `body` for `msgId` with `secrets` and POSTs it to `url`. */
export interface ThreadSend {
  id: number;
  endpointId: string;
  url: string;
  msgId: string;
  body: string;
  secrets: string[];
  /** Headers besides the signatures. */
  headers: Record<string, string>;
}

/** A response (any status), or why there was none. */
export type ThreadResult =
  | { id: number; status: number; latencyMs: number; location?: string }
  | { id: number; reason: OutboundErrorReason; message: string };

type Outcome = ThreadResult extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

/** The compiled thread module beside this one (under the test runner, which runs the sources: dist's). */
function threadEntry(): URL {
  return import.meta.url.endsWith('.ts')
    ? new URL('../../dist/events/webhook-thread.js', import.meta.url)
    : new URL('./webhook-thread.js', import.meta.url);
}

export class WebhookThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, (outcome: Outcome) => void>();
  private outgoing: ThreadSend[] = [];
  private flushScheduled = false;

  constructor(private readonly options: ThreadOptions) {}

  send(request: Omit<ThreadSend, 'id'>): Promise<Outcome> {
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    this.outgoing.push({ ...request, id });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        const requests = this.outgoing;
        this.outgoing = [];
        if (this.worker === worker) worker.postMessage({ type: 'send', requests });
        else for (const r of requests) this.settle(r.id, lost('the delivery thread stopped'));
      });
    }
    return new Promise((resolve) => this.pending.set(id, resolve));
  }

  /** Ends the attempts in flight and waiting at once (they come back as `aborted`). */
  abort(): void {
    this.worker?.postMessage({ type: 'abort' });
  }

  /** Stops the thread; attempts still out come back as failed. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'close' });
    const timer = setTimeout(() => void worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
    this.failAll('the delivery thread stopped');
  }

  private start(): Worker {
    const worker = new Worker(threadEntry(), { workerData: this.options });
    worker.unref();
    worker.on('message', (message: { type: 'results'; results: ThreadResult[] }) => {
      for (const result of message.results) {
        const { id, ...outcome } = result;
        this.settle(id, outcome as Outcome);
      }
    });
    const gone = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failAll(why);
    };
    worker.on('error', (err) => gone(`the delivery thread failed: ${err.message}`));
    worker.on('exit', (code) => gone(`the delivery thread exited (${code})`));
    this.worker = worker;
    return worker;
  }

  private settle(id: number, outcome: Outcome): void {
    const resolve = this.pending.get(id);
    if (!resolve) return;
    this.pending.delete(id);
    resolve(outcome);
  }

  private failAll(why: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id, lost(why));
  }
}

const lost = (message: string): Outcome => ({ reason: 'connection_failed', message });
