/**
 * Builds the real application for route tests: real config loading, real stores on the chosen
 * backends (a temporary SQLite folder, or the MONGODB_URI / REDIS_URL services with a database name
 * and key prefix of their own), and a logger whose lines the test can read.
 */
import { Writable } from 'node:stream';

import type { Logger } from 'pino';

import { buildApp, type BuiltApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/load-config.js';
import { createLogger } from '../../src/logging/create-logger.js';
import { createStores } from '../../src/store/create-stores.js';
import type { Stores } from '../../src/store/ports.js';
import { MONGODB_URI, REDIS_URL, tempDir, uniqueName } from './backends.js';

/** Fixed test secrets, so several app instances in one test share cookies and keys like a cluster. */
export const TEST_COOKIE_KEY = 'test-cookie-key-0123456789abcdefghijklmnopqrstuvwxyz';
export const TEST_KEY_ENCRYPTION_SECRET = 'test-key-encryption-secret-0123456789abcdefghijkl';

export type DurableBackend = 'embedded' | 'mongo';
export type ShortLivedBackend = 'embedded' | 'redis';

export interface TestAppOptions {
  durable?: DurableBackend;
  shortLived?: ShortLivedBackend;
  env?: Record<string, string>;
  /** Reuse another test app's data (to run two instances on one data set). */
  shareWith?: TestApp;
}

export interface TestApp extends BuiltApp {
  config: Config;
  stores: Stores;
  logger: Logger;
  logs: () => Record<string, unknown>[];
  callback: ReturnType<BuiltApp['app']['callback']>;
  close(): Promise<void>;
}

/** The backends this run can use: embedded always, mongo and redis when their URL is set. */
export function availableBackends(): { durable: DurableBackend; shortLived: ShortLivedBackend }[] {
  const durables: DurableBackend[] = ['embedded', ...(MONGODB_URI ? (['mongo'] as const) : [])];
  const shorts: ShortLivedBackend[] = ['embedded', ...(REDIS_URL ? (['redis'] as const) : [])];
  return durables.flatMap((durable) => shorts.map((shortLived) => ({ durable, shortLived })));
}

function withDatabase(uri: string, name: string): string {
  const url = new URL(uri);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const durable = options.durable ?? 'embedded';
  const shortLived = options.shortLived ?? 'embedded';
  if (durable === 'mongo' && !MONGODB_URI) throw new Error('MONGODB_URI is not set');
  if (shortLived === 'redis' && !REDIS_URL) throw new Error('REDIS_URL is not set');

  const shared = options.shareWith?.config;
  const dir = shared ? undefined : tempDir();
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    COOKIE_KEYS: TEST_COOKIE_KEY,
    KEY_ENCRYPTION_SECRET: TEST_KEY_ENCRYPTION_SECRET,
    DATA_DIR: shared?.dataDir ?? dir!.path,
    MONGODB_URI:
      durable === 'mongo'
        ? (shared?.mongodbUri ?? withDatabase(MONGODB_URI!, uniqueName('latchkey_test')))
        : '',
    REDIS_URL: shortLived === 'redis' ? REDIS_URL! : '',
    REDIS_KEY_PREFIX: shared?.redisKeyPrefix ?? `${uniqueName('lk_app')}:`,
    ...options.env,
  };
  const config = loadConfig({ env });

  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level: config.logLevel, destination });
  const stores = await createStores(config);
  const built = await buildApp({ config, logger, stores });

  return {
    ...built,
    config,
    stores,
    callback: built.app.callback(),
    logger,
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      await built.close();
      await stores.close();
      dir?.remove();
    },
  };
}
