/**
 * Times every asynchronous storage operation without the adapters knowing: the store ports are
 * wrapped, at composition time, in proxies that measure each call returning a promise and pass
 * everything else (kind, synchronous helpers, property writes) straight through. Methods run on the
 * real adapter object, so `this`, private fields and spies set on the adapter behave as before.
 *
 * Operation names are the port's own method names (`users.findById`, `AccessToken.upsert`,
 * `increment`): a fixed set, safe as label values.
 */
import type { Histogram } from 'prom-client';

import type { ArtifactAdapter, ArtifactStore, Stores } from '../store/ports.js';
import type { StoreRole } from './metrics.js';
import { isFrozenProperty, isThenable } from '../store/proxy-support.js';

type Timer = { observe(seconds: number): void };
type StoreHistogram = Histogram<'store' | 'backend' | 'operation'>;

interface Scope {
  histogram: StoreHistogram;
  store: StoreRole;
  backend: string;
  /** Prepended to operation names: a repository (`users.`) or an artifact model (`Session.`). */
  prefix: string;
}

function timed(fn: (...args: unknown[]) => unknown, target: object, timer: Timer) {
  return function timedOperation(...args: unknown[]): unknown {
    const started = performance.now();
    const done = () => timer.observe((performance.now() - started) / 1000);
    let result: unknown;
    try {
      result = fn.apply(target, args);
    } catch (err) {
      done();
      throw err;
    }
    if (!isThenable(result)) return result; // synchronous helpers are not storage round trips
    return Promise.resolve(result).finally(done);
  };
}

/**
 * A proxy timing the methods of `target`; with `nested`, object-valued properties (the durable
 * store's repositories) are instrumented one level down under their property name.
 */
function instrumentObject<T extends object>(target: T, scope: Scope, nested: boolean): T {
  const wrappers = new WeakMap<object, unknown>();
  return new Proxy(target, {
    get(obj, property) {
      const value: unknown = Reflect.get(obj, property, obj);
      if (typeof property !== 'string' || value === null) return value;
      const known = wrappers.get(value as object);
      if (known) return known;
      let wrapped: unknown = value;
      if (isFrozenProperty(obj, property) || property === 'constructor') {
        // returned as they are
      } else if (typeof value === 'function') {
        const timer = scope.histogram.labels(scope.store, scope.backend, scope.prefix + property);
        wrapped = timed(value as (...args: unknown[]) => unknown, obj, timer);
      } else if (nested && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)) {
        wrapped = instrumentObject(value, { ...scope, prefix: `${scope.prefix}${property}.` }, false);
      } else {
        return value;
      }
      wrappers.set(value as object, wrapped);
      return wrapped;
    },
  });
}

/** The artifact store hands out one adapter per oidc-provider model; each is timed under its model name. */
function instrumentArtifacts(target: ArtifactStore, scope: Scope): ArtifactStore {
  const adapters = new WeakMap<ArtifactAdapter, ArtifactAdapter>();
  const adapterFor = (model: string): ArtifactAdapter => {
    const adapter = target.adapterFor(model);
    let wrapped = adapters.get(adapter);
    if (!wrapped) {
      wrapped = instrumentObject(adapter, { ...scope, prefix: `${model}.` }, false);
      adapters.set(adapter, wrapped);
    }
    return wrapped;
  };
  const timedStore = instrumentObject(target, scope, false);
  return new Proxy(timedStore, {
    get(obj, property, receiver) {
      return property === 'adapterFor' ? adapterFor : Reflect.get(obj, property, receiver);
    },
  });
}

/** The same stores, with every storage operation timed into `histogram`. */
export function instrumentStores(stores: Stores, histogram: StoreHistogram): Stores {
  const durable = instrumentObject(
    stores.durable,
    { histogram, store: 'durable', backend: stores.durable.kind, prefix: '' },
    true,
  );
  const artifacts = instrumentArtifacts(stores.artifacts, {
    histogram,
    store: 'artifacts',
    backend: stores.artifacts.kind,
    prefix: '',
  });
  const counters = instrumentObject(
    stores.counters,
    { histogram, store: 'counters', backend: stores.counters.kind, prefix: '' },
    false,
  );
  return new Proxy(stores, {
    get(obj, property, receiver) {
      if (property === 'durable') return durable;
      if (property === 'artifacts') return artifacts;
      if (property === 'counters') return counters;
      return Reflect.get(obj, property, receiver);
    },
  });
}
