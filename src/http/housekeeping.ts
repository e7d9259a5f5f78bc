/**
 * Requests a platform makes on its own schedule: health probes and metric scrapes. They are logged
 * quietly (request-context.ts) and do not make an instance busy (the idle memory release).
 */
const HOUSEKEEPING = /^\/health(\/|$|\?)|^\/metrics($|\?)/;

/** Whether a request path (or a raw URL with its query) is a probe or a scrape. */
export function isHousekeepingPath(url: string | undefined): boolean {
  return url !== undefined && HOUSEKEEPING.test(url);
}
