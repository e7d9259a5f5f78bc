import { getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, it, jest } from '@jest/globals';

import { isHousekeepingPath } from '../../src/http/housekeeping.js';
import { IdleMemoryRelease, releaseMemory, type MemoryRelease } from '../../src/runtime/idle-memory.js';

const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;

describe('releaseMemory', () => {
  it('shrinks a young generation grown by a burst of allocation, without exposing gc to the program', () => {
    // Short-lived garbage, as a burst of requests makes, grows the young generation.
    let keep = 0;
    for (let i = 0; i < 400_000; i += 1) keep += { i, text: `request ${i}`, list: [i, i + 1] }.list.length;
    expect(keep).toBe(800_000);
    const grown = newSpace();

    const result = releaseMemory();

    expect(newSpace()).toBeLessThan(grown);
    expect(result.heapAfter).toBeLessThan(result.heapBefore);
    expect(result.durationMs).toBeGreaterThan(0);
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});

describe('IdleMemoryRelease', () => {
  const fakeRelease = (): MemoryRelease => ({ heapBefore: 2, heapAfter: 1, durationMs: 1 });

  function watcher(inFlight = () => 0) {
    const release = jest.fn(fakeRelease);
    const idle = new IdleMemoryRelease({ idleMs: 1000, inFlight: () => inFlight(), release });
    return { idle, release };
  }

  it('releases once at start, then once per quiet period', () => {
    const { idle, release } = watcher();
    idle.start();
    expect(release).toHaveBeenCalledTimes(1);
    idle.stop();

    idle.noteRequest();
    idle.check(); // a request since the last look: busy
    expect(release).toHaveBeenCalledTimes(1);
    idle.check(); // a whole period without one: quiet
    expect(release).toHaveBeenCalledTimes(2);
    idle.check();
    idle.check(); // still the same quiet period: nothing more to give back
    expect(release).toHaveBeenCalledTimes(2);

    idle.noteRequest();
    idle.check();
    idle.check();
    expect(release).toHaveBeenCalledTimes(3);
  });

  it('does not release while requests keep arriving', () => {
    const { idle, release } = watcher();
    idle.check();
    for (let tick = 0; tick < 5; tick += 1) {
      idle.noteRequest();
      idle.check();
    }
    expect(release).not.toHaveBeenCalled();
  });

  it('waits for a request in flight to finish even when no new one arrives', () => {
    let inFlight = 1;
    const { idle, release } = watcher(() => inFlight);
    idle.noteRequest();
    idle.check();
    idle.check();
    idle.check();
    expect(release).not.toHaveBeenCalled();
    inFlight = 0;
    idle.check();
    expect(release).toHaveBeenCalledTimes(1);
  });

  it('checks on its interval once started, and stops with stop()', () => {
    jest.useFakeTimers();
    try {
      const { idle, release } = watcher();
      idle.start();
      idle.noteRequest();
      jest.advanceTimersByTime(1000); // busy tick
      expect(release).toHaveBeenCalledTimes(1);
      jest.advanceTimersByTime(1000); // quiet tick
      expect(release).toHaveBeenCalledTimes(2);
      idle.noteRequest();
      idle.stop();
      jest.advanceTimersByTime(5000);
      expect(release).toHaveBeenCalledTimes(2);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('isHousekeepingPath', () => {
  it('treats probes and metric scrapes as housekeeping and everything else as traffic', () => {
    expect(isHousekeepingPath('/health/live')).toBe(true);
    expect(isHousekeepingPath('/health/ready')).toBe(true);
    expect(isHousekeepingPath('/metrics')).toBe(true);
    expect(isHousekeepingPath('/metrics?name[]=x')).toBe(true);
    expect(isHousekeepingPath('/metricsx')).toBe(false);
    expect(isHousekeepingPath('/token')).toBe(false);
    expect(isHousekeepingPath('/healthz')).toBe(false);
    expect(isHousekeepingPath(undefined)).toBe(false);
  });
});
