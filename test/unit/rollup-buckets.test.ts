/**
 * The calendar buckets of the analytics rollups: weeks start on Monday, months and quarters on
 * their first day, in UTC, for every year a query may name (Date.UTC alone reads years 0 to 99 as
 * 1900 to 1999; a query for year 0000 once found no bucket and failed with a 500).
 */
import { describe, expect, it } from '@jest/globals';

import { bucketStart, nextBucket } from '../../src/events/rollups.js';

const day = (s: string) => new Date(`${s}T00:00:00Z`);
const iso = (d: Date) => d.toISOString().slice(0, 10);

describe('rollup buckets', () => {
  it('starts buckets on the first day of their period', () => {
    expect(iso(bucketStart('day', new Date('2026-12-03T17:00:00Z')))).toBe('2026-12-03');
    expect(iso(bucketStart('week', day('2026-12-03')))).toBe('2026-11-30'); // a Monday
    expect(iso(bucketStart('month', day('2026-12-03')))).toBe('2026-12-01');
    expect(iso(bucketStart('quarter', day('2026-12-03')))).toBe('2026-10-01');
  });

  it('moves to the next bucket across month, year and leap-day boundaries', () => {
    expect(iso(nextBucket('day', day('2001-02-28')))).toBe('2001-03-01');
    expect(iso(nextBucket('day', day('2024-02-28')))).toBe('2024-02-29');
    expect(iso(nextBucket('week', day('2026-12-28')))).toBe('2027-01-04');
    expect(iso(nextBucket('month', day('2026-12-01')))).toBe('2027-01-01');
    expect(iso(nextBucket('quarter', day('2026-10-01')))).toBe('2027-01-01');
  });

  it('keeps years 0 to 99 as they are', () => {
    expect(iso(bucketStart('month', day('0000-08-17')))).toBe('0000-08-01');
    expect(iso(nextBucket('month', day('0000-08-01')))).toBe('0000-09-01');
    expect(iso(nextBucket('quarter', day('0099-10-01')))).toBe('0100-01-01');
    expect(iso(bucketStart('week', day('0001-01-01')))).toBe('0001-01-01'); // a Monday
    expect(iso(nextBucket('day', day('0004-02-28')))).toBe('0004-02-29');
  });
});
