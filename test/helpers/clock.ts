/**
 * Moves the server's clock forward without waiting. The app under test runs in this test's module
 * realm, and oidc-provider reads time only through Date.now(), so replacing Date.now here makes
 * every token, code and session look as old as it would after `seconds` of real time. The stores'
 * own expiry (Redis TTLs, the embedded store's clock, captured when it was built) is not moved: what
 * this exercises is the provider's expiry check, which must refuse an expired artifact even while a
 * store still holds it.
 */
export async function withClockShiftedBy<T>(seconds: number, work: () => Promise<T>): Promise<T> {
  const realNow = Date.now;
  Date.now = () => realNow() + seconds * 1000;
  try {
    return await work();
  } finally {
    Date.now = realNow;
  }
}
