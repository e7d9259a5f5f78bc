/**
 * Open-loop load for fault tests: requests are sent at a fixed rate whatever the server does (a
 * closed loop would slow down with the server and hide a stall), spread over the instances a
 * readiness watcher currently sees as ready (as a Kubernetes Service would), and every answer is
 * recorded with when it was sent, how long it took and what came back. A request that gets no
 * answer within `clientTimeoutMs` is recorded as status 0, like a connection error.
 */

export interface LoadCall {
  kind: string;
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadRecord {
  kind: string;
  instance: string;
  status: number;
  error?: string;
  /** Date.now() when sent. */
  sent: number;
  ms: number;
  body?: unknown;
}

export class OpenLoopLoad {
  readonly records: LoadRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private turn = 0;

  constructor(
    private readonly options: {
      perSecond: number;
      /** The instances to send to now (the ready ones), by name → base URL. */
      targets: () => [string, string][];
      /** The next call to make; `turn` counts calls from 0. */
      next: (turn: number) => LoadCall;
      clientTimeoutMs: number;
      /** Keep these answers' JSON bodies (for writes to check afterwards). */
      keepBody?: (kind: string) => boolean;
    },
  ) {}

  start(): void {
    // Ticks of 10 ms, each sending what is due by now: an even rate without one timer per request.
    const started = Date.now();
    let sent = 0;
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - started) / 1000) * this.options.perSecond);
      while (sent < due) {
        sent += 1;
        this.fire();
      }
    }, 10);
  }

  private fire(): void {
    const targets = this.options.targets();
    const turn = this.turn++;
    if (targets.length === 0) {
      this.records.push({
        kind: 'none',
        instance: '-',
        status: 0,
        error: 'no ready instance',
        sent: Date.now(),
        ms: 0,
      });
      return;
    }
    const [instance, baseUrl] = targets[turn % targets.length]!;
    const call = this.options.next(turn);
    const sentAt = Date.now();
    const started = performance.now();
    const work = (async () => {
      const record: LoadRecord = { kind: call.kind, instance, status: 0, sent: sentAt, ms: 0 };
      try {
        const res = await fetch(new URL(call.path, baseUrl), {
          method: call.method,
          headers: call.headers,
          body: call.body,
          signal: AbortSignal.timeout(this.options.clientTimeoutMs),
        });
        const text = await res.text();
        record.status = res.status;
        if (this.options.keepBody?.(call.kind) || res.status >= 500) {
          try {
            record.body = JSON.parse(text);
          } catch {
            record.body = text.slice(0, 200);
          }
        }
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        record.error = `${(err as Error).name}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`;
      }
      record.ms = performance.now() - started;
      this.records.push(record);
    })();
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /** Stops sending and waits for every answer. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  /** Records of requests sent in [from, to). */
  between(from: number, to: number): LoadRecord[] {
    return this.records.filter((r) => r.sent >= from && r.sent < to);
  }
}

/** Polls each instance's readiness every `intervalMs`, keeping the ready set and every refusal seen. */
export class ReadinessWatch {
  readonly ready = new Map<string, string>();
  readonly refusals: { instance: string; status: number; at: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly instances: Map<string, string>,
    private readonly intervalMs: number,
    /** How long a probe may take (the chart's readiness timeoutSeconds is 3). */
    private readonly timeoutMs = 3000,
  ) {
    for (const [name, url] of instances) this.ready.set(name, url);
  }

  start(): void {
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
  }

  /** Probes `name` at `url` from now on (an instance restarted on another port). */
  track(name: string, url: string): void {
    this.instances.set(name, url);
  }

  private async probe(): Promise<void> {
    await Promise.all(
      [...this.instances].map(async ([name, url]) => {
        let status: number;
        try {
          const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(this.timeoutMs) });
          await res.arrayBuffer();
          status = res.status;
        } catch {
          status = 0; // no answer
        }
        if (status === 200) this.ready.set(name, url);
        else {
          this.ready.delete(name);
          this.refusals.push({ instance: name, status, at: Date.now() });
        }
      }),
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
