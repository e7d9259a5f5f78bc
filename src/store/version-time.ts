/**
 * The moment a new version is stamped with: now, but always after the version it follows, so that
 * "as of T" names exactly one version of a record even when two writes share a millisecond.
 */
export function nextMoment(previous: Date | undefined, now: Date = new Date()): Date {
  return previous && now.getTime() <= previous.getTime() ? new Date(previous.getTime() + 1) : now;
}
