/**
 * What an instance keeps between policy decisions (POLICY_DECISION_CACHE_TTL_S): the answers to
 * Cedar requests it evaluated, and the entities it read from the store to build those requests.
 *
 * Entries live for the cache period at most and are bounded in number (the oldest go first). The
 * entity caches are dropped, wholly or for one user, when a change is announced (policies.ts); a
 * read that was in flight while a change was announced does not store what it read.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  /** Bumped by every drop; a read stores its result only if none came while it ran. */
  private drops = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  /** A mark to hand to `set` after a read: the entry is kept only if nothing was dropped since. */
  mark(): number {
    return this.drops;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V, mark = this.drops): void {
    if (this.ttlMs <= 0 || mark !== this.drops) return;
    if (this.entries.size >= this.maxEntries && !this.entries.has(key)) {
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(key, { value, until: this.now() + this.ttlMs });
  }

  delete(key: string): void {
    this.drops += 1;
    this.entries.delete(key);
  }

  clear(): void {
    this.drops += 1;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
