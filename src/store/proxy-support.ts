/** What the store proxies (instrument-stores.ts, guarded-stores.ts) need to know about a value. */

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** A proxy must return a frozen property's own value (a Proxy invariant), so those stay unwrapped. */
export function isFrozenProperty(obj: object, property: string): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(obj, property);
  return descriptor !== undefined && !descriptor.configurable && descriptor.writable === false;
}
