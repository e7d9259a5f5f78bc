/**
 * A store that does not answer, seen from oidc-provider: its adapters, clients and accounts throw
 * StoreUnavailableError, which the provider would render as `500 server_error` ("oops! something
 * went wrong"). Thrown through these wrappers it becomes OAuth's own `temporarily_unavailable`
 * (RFC 6749 §4.1.2.1) with status 503, which the provider renders in the endpoint's format (JSON
 * bodies, the error page, or a redirect to the client for the authorization endpoint); a provider
 * middleware (provider.ts) adds Retry-After.
 */
import { errors } from 'oidc-provider';

import { isStoreOutage } from '../store/errors.js';
import type { ArtifactAdapter, Stores } from '../store/ports.js';

/** The provider's error for a store outage: exposed, status 503. */
export function temporarilyUnavailable(cause?: unknown): errors.OIDCProviderError {
  const err = new errors.TemporarilyUnavailable('a data store is unavailable; retry shortly', { cause });
  (err as { status: number; statusCode: number }).status = 503;
  (err as { status: number; statusCode: number }).statusCode = 503;
  return err;
}

function translate(err: unknown): never {
  throw isStoreOutage(err) ? temporarilyUnavailable(err) : err;
}

/** The same object, its promise-returning methods rethrowing store outages as temporarilyUnavailable. */
export function protocolFacing<T extends object>(target: T): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(obj, property) {
      const value: unknown = Reflect.get(obj, property, obj);
      if (typeof value !== 'function' || property === 'constructor') return value;
      let fn = wrapped.get(property);
      if (!fn) {
        const method = value as (...args: unknown[]) => unknown;
        fn = (...args: unknown[]) => {
          const result = method.apply(obj, args);
          return result instanceof Promise ? result.catch(translate) : result;
        };
        wrapped.set(property, fn);
      }
      return fn;
    },
  });
}

/**
 * The stores as the provider's code should see them: repositories, artifact adapters and counters
 * whose outages are the provider's temporarilyUnavailable.
 */
export function protocolStores(stores: Stores): Stores {
  const repositories = new Map<PropertyKey, unknown>();
  const durable = new Proxy(stores.durable, {
    get(obj, property) {
      const value: unknown = Reflect.get(obj, property, obj);
      if (value === null || typeof value !== 'object') return value;
      let entry = repositories.get(property) as { original: unknown; wrapped: unknown } | undefined;
      if (entry?.original !== value) {
        entry = { original: value, wrapped: protocolFacing(value) };
        repositories.set(property, entry);
      }
      return entry.wrapped;
    },
  });
  const adapters = new Map<string, ArtifactAdapter>();
  const artifactStore = protocolFacing(stores.artifacts);
  const artifacts = new Proxy(stores.artifacts, {
    get(obj, property) {
      if (property !== 'adapterFor') return Reflect.get(artifactStore, property);
      return (model: string) => {
        let adapter = adapters.get(model);
        if (!adapter) adapters.set(model, (adapter = protocolFacing(obj.adapterFor(model))));
        return adapter;
      };
    },
  });
  return {
    ...stores,
    durable,
    artifacts,
    counters: protocolFacing(stores.counters),
    close: () => stores.close(),
  };
}

/** An async function whose store outages become temporarilyUnavailable. */
export function protocolCall<A extends unknown[], R>(
  fn: (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  return (...args: A) => fn(...args).catch(translate);
}
