/** Walking cursor-paginated lists (`{ data, pagination: { next_cursor, has_more } }`) item by item. */
import type { Page } from './types.js';

/** Fetches one page: the first with `cursor` undefined, then each with the previous page's `next_cursor`. */
export type PageFetcher<T> = (cursor: string | undefined) => Promise<Page<T>>;

/**
 * Yields every item of every page, asking for the next page only when the caller has consumed the
 * current one; stops at the page without `next_cursor`. A cursor that comes back twice ends the walk
 * with an error instead of looping forever.
 */
export async function* paginate<T>(fetchPage: PageFetcher<T>): AsyncGenerator<T, void, undefined> {
  const seen = new Set<string>();
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    yield* page.data;
    const next = page.pagination.next_cursor;
    if (!next || !page.pagination.has_more) return;
    if (seen.has(next)) throw new Error(`pagination returned the cursor ${next} twice`);
    seen.add(next);
    cursor = next;
  }
}
