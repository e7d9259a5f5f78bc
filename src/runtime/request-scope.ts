/**
 * What the code serving one HTTP request can learn about it without being handed it: whether the
 * request has been given up (the client closed the connection, or the request's deadline passed).
 * The stores check it before starting an operation, so work nobody waits for is not begun.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestScope {
  /** Aborted when the request is given up. */
  signal: AbortSignal;
}

const storage = new AsyncLocalStorage<RequestScope>();

export function runInRequestScope<T>(scope: RequestScope, fn: () => T): T {
  return storage.run(scope, fn);
}

export function currentRequestScope(): RequestScope | undefined {
  return storage.getStore();
}
