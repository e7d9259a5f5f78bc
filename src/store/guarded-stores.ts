/**
 * The one place store failures are bounded and named. Every storage operation of the ports runs
 * through a guard of its backend, which
 *
 *  1. does not start it when the request it serves was given up (runtime/request-scope.ts);
 *  2. fails it at once while the backend's circuit breaker is open;
 *  3. gives it a deadline (Redis and MongoDB; SQLite calls are synchronous and bounded by its busy
 *     timeout), after which the caller gets StoreUnavailableError whatever the driver still does;
 *  4. turns every driver error that means "the backend did not answer" into StoreUnavailableError,
 *     keeping the driver's error as `cause` (the error middleware answers 503 STORE_UNAVAILABLE, the
 *     provider `temporarily_unavailable`), and counts it toward the breaker.
 *
 * Like instrument-stores.ts this wraps the ports at composition time with proxies, so the adapters
 * stay plain. Lifecycle methods (close, migrate) and synchronous helpers pass through untouched.
 */
import { CircuitBreaker, type BreakerState } from './circuit-breaker.js';
import { RequestAbandonedError, StoreUnavailableError } from './errors.js';
import type { ArtifactAdapter, ArtifactStore, Stores } from './ports.js';
import { currentRequestScope } from '../runtime/request-scope.js';
import { isFrozenProperty, isThenable } from './proxy-support.js';

export interface BackendGuardOptions {
  backend: 'embedded' | 'mongo' | 'redis';
  /** Longest wait for one operation; undefined: none (synchronous backends). */
  deadlineMs: number | undefined;
  /** Driver errors meaning "no answer" (StoreUnavailableError always counts). */
  isUnavailable(err: unknown): boolean;
  /** The backend's own ping, for the breaker's probe. */
  ping(): Promise<void>;
  failureThreshold: number;
  probeIntervalMs: number;
  /**
   * Runs each operation (the embedded file holds the answer of one that ran inside another
   * request's unit of work until that unit has ended: EmbeddedDatabase.call).
   */
  around?(operation: () => unknown): unknown;
  onStateChange?(state: BreakerState, backend: string, cause?: unknown): void;
}

/** Names that are not storage round trips: lifecycle, wiring and synchronous helpers. */
const PASS_THROUGH = new Set([
  'close',
  'migrate',
  'backfillSkeletons',
  'backfillMfaFlag',
  'adapterFor',
  'cacheUsers',
  'subscribe',
  'constructor',
  'then',
  // a unit of work: the repository calls inside it are guarded one by one
  'atomically',
]);

export class BackendGuard {
  readonly breaker: CircuitBreaker;
  /** Told when the breaker opens or closes (logging, metrics). */
  readonly stateChanges = new Set<(state: BreakerState, backend: string, cause?: unknown) => void>();

  constructor(private readonly options: BackendGuardOptions) {
    this.breaker = new CircuitBreaker({
      backend: options.backend,
      failureThreshold: options.failureThreshold,
      probeIntervalMs: options.probeIntervalMs,
      probe: () => this.withDeadline(options.ping(), 'ping'),
      onStateChange: (state, backend, cause) => {
        options.onStateChange?.(state, backend, cause);
        for (const listener of this.stateChanges) listener(state, backend, cause);
      },
    });
  }

  get backend(): string {
    return this.options.backend;
  }

  /** The error callers see for `err`, or undefined when it is not about availability. */
  private unavailable(err: unknown, operation: string): StoreUnavailableError | undefined {
    if (err instanceof StoreUnavailableError) return err;
    if ((err as { name?: unknown } | null)?.name === 'StoreUnavailableError')
      return err as StoreUnavailableError;
    if (!this.options.isUnavailable(err)) return undefined;
    const reason = err instanceof Error ? err.message : String(err);
    return new StoreUnavailableError(`${this.options.backend} did not answer ${operation}: ${reason}`, {
      cause: err,
      backend: this.options.backend,
    });
  }

  private withDeadline<T>(work: PromiseLike<T>, operation: string): Promise<T> {
    const ms = this.options.deadlineMs;
    if (ms === undefined) return Promise.resolve(work);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailableError(`${this.options.backend} did not answer ${operation} within ${ms} ms`, {
              backend: this.options.backend,
            }),
          ),
        ms,
      );
    });
    // The abandoned operation may still settle; nobody is waiting for it any more.
    Promise.resolve(work).catch(() => undefined);
    return Promise.race([Promise.resolve(work), expired]).finally(() => clearTimeout(timer));
  }

  /** Runs one storage call under the rules in the header. */
  run(fn: (...args: unknown[]) => unknown, target: object, args: unknown[], operation: string): unknown {
    if (currentRequestScope()?.signal.aborted) return Promise.reject(new RequestAbandonedError());
    try {
      this.breaker.admit();
    } catch (err) {
      return Promise.reject(err);
    }
    let result: unknown;
    try {
      result = this.options.around
        ? this.options.around(() => fn.apply(target, args))
        : fn.apply(target, args);
    } catch (err) {
      const mapped = this.unavailable(err, operation);
      if (mapped) this.breaker.failed(mapped);
      throw mapped ?? err;
    }
    if (!isThenable(result)) return result;
    return this.withDeadline(result as PromiseLike<unknown>, operation).catch((err: unknown) => {
      const mapped = this.unavailable(err, operation);
      if (!mapped) throw err; // the backend answered: with an error, but it answered
      if (!(mapped instanceof RequestAbandonedError)) this.breaker.failed(mapped);
      throw mapped;
    });
  }

  /** A proxy guarding the methods of `target`; `nested`: one level of repositories below it. */
  wrap<T extends object>(target: T, prefix = '', nested = false): T {
    const wrappers = new Map<PropertyKey, unknown>();
    return new Proxy(target, {
      get: (obj, property) => {
        const value: unknown = Reflect.get(obj, property, obj);
        if (typeof property !== 'string' || value === null || PASS_THROUGH.has(property)) return value;
        if (isFrozenProperty(obj, property)) return value;
        const known = wrappers.get(property);
        if (known && (known as { original?: unknown }).original === value)
          return (known as { fn: unknown }).fn;
        let fn: unknown;
        if (typeof value === 'function') {
          const operation = prefix + property;
          const method = value as (...args: unknown[]) => unknown;
          fn = (...args: unknown[]) => this.run(method, obj, args, operation);
        } else if (nested && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)) {
          fn = this.wrap(value, `${prefix}${property}.`);
        } else {
          return value;
        }
        wrappers.set(property, { original: value, fn });
        return fn;
      },
    });
  }

  stop(): void {
    this.breaker.stop();
  }
}

function guardArtifacts(target: ArtifactStore, guard: BackendGuard): ArtifactStore {
  const adapters = new Map<string, ArtifactAdapter>();
  const store = guard.wrap(target);
  return new Proxy(store, {
    get(obj, property, receiver) {
      if (property !== 'adapterFor') return Reflect.get(obj, property, receiver);
      return (model: string) => {
        let adapter = adapters.get(model);
        if (!adapter) {
          adapter = guard.wrap(target.adapterFor(model), `${model}.`);
          adapters.set(model, adapter);
        }
        return adapter;
      };
    },
  });
}

export interface GuardedStores extends Stores {
  /** One guard per backend in use (the embedded file counts once). */
  readonly guards: BackendGuard[];
}

/** The same stores, every operation guarded by its backend's guard. */
export function guardStores(
  stores: Stores,
  guards: { durable: BackendGuard; shortLived: BackendGuard },
): GuardedStores {
  const durable = guards.durable.wrap(stores.durable, '', true);
  const artifacts = guardArtifacts(stores.artifacts, guards.shortLived);
  const counters = guards.shortLived.wrap(stores.counters);
  const events = guards.shortLived.wrap(stores.events);
  const all = [...new Set([guards.durable, guards.shortLived])];
  return {
    durable,
    artifacts,
    counters,
    events,
    guards: all,
    close: async () => {
      for (const guard of all) guard.stop();
      await stores.close();
    },
  };
}
