/**
 * Which real backends the test run was given. A suite for a backend whose URL is not set is skipped
 * and says so; a suite whose URL is set runs, and fails if the backend cannot be reached.
 */
import { describe } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { SETTINGS } from '../../src/config/settings.js';

export const MONGODB_URI = process.env.MONGODB_URI || undefined;
export const REDIS_URL = process.env.REDIS_URL || undefined;
/** Seed nodes of a Redis Cluster, `host:port,host:port` (REDIS_CLUSTER=1 scripts/test-services.sh). */
export const REDIS_CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES || undefined;

/**
 * REDIS_CLUSTER_NODES as the URL list the redis adapter takes, parsed as the server parses it (none
 * for '', which a skipped suite's body is given).
 */
export function clusterNodeUrls(nodes: string): string[] {
  return SETTINGS.REDIS_CLUSTER_NODES.schema.parse(nodes) ?? [];
}

const announced = new Set<string>();

/** describe() when `url` is set; otherwise a skipped describe plus one loud line on stderr. */
export function describeWithBackend(
  name: string,
  variable: 'MONGODB_URI' | 'REDIS_URL' | 'REDIS_CLUSTER_NODES',
  url: string | undefined,
  body: (url: string) => void,
): void {
  if (url) {
    describe(name, () => body(url));
    return;
  }
  if (!announced.has(name)) {
    announced.add(name);
    const how =
      variable === 'REDIS_CLUSTER_NODES'
        ? 'REDIS_CLUSTER=1 scripts/test-services.sh'
        : 'scripts/test-services.sh';
    process.stderr.write(`SKIPPED ${name}: ${variable} is not set (${how} sets it)\n`);
  }
  describe.skip(`${name} [skipped: ${variable} not set]`, () => body(''));
}

/** describe() when both REDIS_URL and MONGODB_URI are set (several instances sharing both). */
export function describeWithRedisAndMongo(
  name: string,
  body: (urls: { redisUrl: string; mongodbUri: string }) => void,
): void {
  if (REDIS_URL && MONGODB_URI) {
    describe(name, () => body({ redisUrl: REDIS_URL!, mongodbUri: MONGODB_URI! }));
    return;
  }
  const missing = [REDIS_URL ? '' : 'REDIS_URL', MONGODB_URI ? '' : 'MONGODB_URI']
    .filter(Boolean)
    .join(' and ');
  if (!announced.has(name)) {
    announced.add(name);
    process.stderr.write(`SKIPPED ${name}: ${missing} not set (scripts/test-services.sh sets both)\n`);
  }
  describe.skip(`${name} [skipped: ${missing} not set]`, () => body({ redisUrl: '', mongodbUri: '' }));
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = 'latchkey-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
