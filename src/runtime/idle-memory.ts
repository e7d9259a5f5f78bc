/**
 * Gives memory back when the server has nothing to do.
 *
 * V8 grows its young generation while a process allocates fast (loading and compiling modules at
 * start-up; serving traffic) and does not shrink it on its own in a server, which never tells V8 it
 * is idle. So an instance that has just started, or whose traffic has stopped, holds a young
 * generation grown to its maximum (two semi-spaces: 32 MiB on a 64-bit machine with a few GiB of
 * memory) and the garbage of what it last did. One memory-reducing full collection (V8's "last resort"
 * flavour: it compacts the old generation and shrinks the young one to its minimum) returns that to
 * the operating system: about a third of an idle instance's resident memory. It blocks the event
 * loop for tens of milliseconds, so it runs only when no request has arrived for a while, and once
 * per quiet period; the young generation regrows as soon as traffic returns, at no cost to it
 * (unlike a smaller `--max-semi-space-size`, which makes every request pay for more collections).
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

let gcFunction: GcFunction | undefined;

/**
 * V8's collector entry point without exposing `gc` to the program: the flag makes the next new
 * context get one, which is taken, and the flag is turned off again so later contexts do not.
 */
function collector(): GcFunction {
  if (!gcFunction) {
    setFlagsFromString('--expose-gc');
    try {
      gcFunction = runInNewContext('gc') as GcFunction;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
  return gcFunction;
}

export interface MemoryRelease {
  /** V8 heap reserved before and after, in bytes. */
  heapBefore: number;
  heapAfter: number;
  durationMs: number;
}

const heapReserved = (): number => getHeapStatistics().total_heap_size;

/** Runs one memory-reducing full collection now (synchronously) and reports what it freed. */
export function releaseMemory(): MemoryRelease {
  const gc = collector();
  const heapBefore = heapReserved();
  const started = performance.now();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return { heapBefore, heapAfter: heapReserved(), durationMs: performance.now() - started };
}

export interface IdleMemoryReleaseOptions {
  /** Quiet period before memory is released; the check runs this often, so release comes 1–2 periods after the last request. */
  idleMs: number;
  /** Requests being answered right now (a long request keeps the server busy without new arrivals). */
  inFlight: () => number;
  /** Defaults to {@link releaseMemory}; injected by tests. */
  release?: () => MemoryRelease;
  onRelease?: (result: MemoryRelease) => void;
}

/**
 * Watches request arrivals and releases memory once per quiet period. Health probes and metric
 * scrapes (isHousekeepingPath) are not passed to {@link noteRequest}: they would keep an otherwise
 * idle instance from ever counting as idle.
 */
export class IdleMemoryRelease {
  private arrivals = 0;
  private arrivalsAtLastCheck = -1;
  private arrivalsAtLastRelease = -1;
  private timer: NodeJS.Timeout | undefined;
  private readonly release: () => MemoryRelease;

  constructor(private readonly options: IdleMemoryReleaseOptions) {
    this.release = options.release ?? releaseMemory;
  }

  noteRequest(): void {
    this.arrivals += 1;
  }

  /** Releases what start-up left behind, then checks every `idleMs`. */
  start(): void {
    if (this.timer) return;
    this.releaseNow();
    this.timer = setInterval(() => this.check(), this.options.idleMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One tick: release if nothing arrived since the last tick, nothing is in flight, and not done yet for this quiet period. */
  check(): void {
    const quiet = this.arrivals === this.arrivalsAtLastCheck && this.options.inFlight() === 0;
    this.arrivalsAtLastCheck = this.arrivals;
    if (quiet && this.arrivals !== this.arrivalsAtLastRelease) this.releaseNow();
  }

  private releaseNow(): void {
    this.arrivalsAtLastRelease = this.arrivals;
    const result = this.release();
    this.options.onRelease?.(result);
  }
}
