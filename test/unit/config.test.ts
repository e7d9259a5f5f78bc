import { describe, expect, it } from '@jest/globals';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, DEFAULTS_FILE, loadConfig, parseEnvFile } from '../../src/config/load-config.js';
import { camelCase, SETTINGS } from '../../src/config/settings.js';
import { tempDir } from '../helpers/backends.js';

const load = (env: Record<string, string | undefined>) => loadConfig({ env });

function errorOf(env: Record<string, string | undefined>): ConfigError {
  try {
    load(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('uses the documented defaults with an empty environment', () => {
    const config = load({});
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      issuer: 'http://localhost:3000',
      trustProxy: false,
      proxyHops: 1,
      shutdownTimeoutMs: 10000,
      shutdownDrainMs: 5000,
      requestTimeoutMs: 5000,
      maxInFlightRequests: 256,
      redisTimeoutMs: 1000,
      mongodbTimeoutMs: 2000,
      storeBreakerFailures: 5,
      storeBreakerProbeMs: 500,
      idleMemoryReleaseMs: 30000,
      dataDir: './data',
      mongodbUri: undefined,
      redisUrl: undefined,
      redisKeyPrefix: 'latchkey:',
      embeddedSweepIntervalS: 60,
      nodeEnv: 'development',
      logLevel: 'info',
      allowHttpIssuer: false,
      cookieKeys: [],
      keyEncryptionSecret: undefined,
      passwordHashMemoryKib: 19456,
      passwordHashTimeCost: 2,
      passwordHashParallelism: 1,
      loginMaxFailures: 5,
      bootstrapAdminClientId: undefined,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('documents every setting in config/defaults.env and exposes each under its camelCase name', () => {
    const defaults = parseEnvFile(readFileSync(DEFAULTS_FILE, 'utf8'));
    const config = load({}) as unknown as Record<string, unknown>;
    for (const name of Object.keys(SETTINGS)) {
      expect(defaults).toHaveProperty([name]);
      expect(config).toHaveProperty([camelCase(name)]);
    }
    expect(Object.keys(defaults).sort()).toEqual(Object.keys(SETTINGS).sort());
  });

  it('refuses argon2 parameters below the OWASP minimum and short secrets', () => {
    expect(errorOf({ PASSWORD_HASH_MEMORY_KIB: '4096' }).setting).toBe('PASSWORD_HASH_MEMORY_KIB');
    expect(errorOf({ PASSWORD_HASH_TIME_COST: '1' }).setting).toBe('PASSWORD_HASH_TIME_COST');
    expect(errorOf({ COOKIE_KEYS: 'short' }).message).toBe(
      'Invalid setting COOKIE_KEYS (value hidden): expected a comma-separated list of secrets of at least 32 characters each.',
    );
    expect(load({ COOKIE_KEYS: `${'a'.repeat(32)}, ${'b'.repeat(40)}` }).cookieKeys).toEqual([
      'a'.repeat(32),
      'b'.repeat(40),
    ]);
  });

  it('lets the environment override defaults and derives the issuer from PORT', () => {
    const config = load({
      PORT: '8080',
      TRUST_PROXY: 'true',
      LOG_LEVEL: 'debug',
      REDIS_URL: 'redis://127.0.0.1:6379',
    });
    expect(config.port).toBe(8080);
    expect(config.issuer).toBe('http://localhost:8080');
    expect(config.trustProxy).toBe(true);
    expect(config.logLevel).toBe('debug');
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
  });

  it('keeps the deadlines nested: store < request < shutdown', () => {
    expect(errorOf({ REQUEST_TIMEOUT_MS: '1000' }).message).toBe(
      'Invalid setting REQUEST_TIMEOUT_MS (got 1000): expected more than REDIS_TIMEOUT_MS (1000).',
    );
    expect(errorOf({ MONGODB_TIMEOUT_MS: '6000' }).setting).toBe('REQUEST_TIMEOUT_MS');
    expect(errorOf({ SHUTDOWN_TIMEOUT_MS: '5000' }).message).toBe(
      'Invalid setting SHUTDOWN_TIMEOUT_MS (got 5000): expected more than REQUEST_TIMEOUT_MS (5000), so in-flight requests end on their own deadline.',
    );
    expect(load({ REQUEST_TIMEOUT_MS: '2500', SHUTDOWN_TIMEOUT_MS: '3000' }).requestTimeoutMs).toBe(2500);
  });

  it('keeps an explicit issuer without its trailing slash', () => {
    expect(load({ ISSUER: 'https://id.example.com/' }).issuer).toBe('https://id.example.com');
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT', 'Invalid setting PORT (got "abc"): expected an integer from 1 to 65535.'],
    [{ PORT: '70000' }, 'PORT', 'Invalid setting PORT (got "70000"): expected an integer from 1 to 65535.'],
    [
      { TRUST_PROXY: 'maybe' },
      'TRUST_PROXY',
      'Invalid setting TRUST_PROXY (got "maybe"): expected true or false.',
    ],
    [
      { NODE_ENV: 'prod' },
      'NODE_ENV',
      'Invalid setting NODE_ENV (got "prod"): expected development, production or test.',
    ],
    [
      { ISSUER: 'id.example.com' },
      'ISSUER',
      expect.stringContaining('Invalid setting ISSUER (got "id.example.com")'),
    ],
    [
      { ISSUER: 'https://id.example.com/?a=1' },
      'ISSUER',
      expect.stringContaining('without query or fragment'),
    ],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', expect.stringContaining('expected one of fatal, error')],
    [
      { BACKCHANNEL_LOGOUT_TIMEOUT_MS: '50' },
      'BACKCHANNEL_LOGOUT_TIMEOUT_MS',
      'Invalid setting BACKCHANNEL_LOGOUT_TIMEOUT_MS (got "50"): expected milliseconds from 100 to 60000.',
    ],
    [
      { BACKCHANNEL_LOGOUT_RETRY_SCHEDULE: 'soon' },
      'BACKCHANNEL_LOGOUT_RETRY_SCHEDULE',
      'Invalid setting BACKCHANNEL_LOGOUT_RETRY_SCHEDULE (got "soon"): expected comma-separated durations such as 5s,30s,2m,10m (1 to 20 of them).',
    ],
    [
      { BACKCHANNEL_LOGOUT_DELIVERY: 'sometimes' },
      'BACKCHANNEL_LOGOUT_DELIVERY',
      'Invalid setting BACKCHANNEL_LOGOUT_DELIVERY (got "sometimes"): expected true or false.',
    ],
  ])('stops on %j with a one-line message naming the setting', (env, setting, message) => {
    const err = errorOf(env);
    expect(err.setting).toBe(setting);
    expect(err.message).toEqual(message);
    expect(err.message).not.toContain('\n');
  });

  it('reads REDIS_CLUSTER_NODES as seed URLs and refuses malformed or conflicting cluster settings', () => {
    expect(load({}).redisClusterNodes).toBeUndefined();
    expect(load({ REDIS_CLUSTER_NODES: ' 10.0.0.1:7000, rediss-host:7001 ' }).redisClusterNodes).toEqual([
      'redis://10.0.0.1:7000',
      'redis://rediss-host:7001',
    ]);
    expect(
      load({ REDIS_CLUSTER_NODES: 'rediss://:pw@a.example:6379,rediss://b.example:6379' }).redisClusterNodes,
    ).toEqual(['rediss://:pw@a.example:6379', 'rediss://b.example:6379']);
    const expected =
      'Invalid setting REDIS_CLUSTER_NODES (value hidden): expected comma-separated seed nodes of a Redis Cluster (host:port, or redis:// or rediss:// URLs with one scheme), or empty.';
    for (const bad of [
      'redis://a:7000,rediss://b:7000', // two schemes
      'http://a:7000',
      'redis://a:7000/2', // a cluster has database 0 only
      'redis://:one@a:7000,redis://:two@b:7000',
      'redis://a:7000?x=1',
    ]) {
      const err = errorOf({ REDIS_CLUSTER_NODES: bad });
      expect([err.setting, err.message]).toEqual(['REDIS_CLUSTER_NODES', expected]);
    }
    expect(errorOf({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'redis://b:6379' }).message).toBe(
      'Invalid setting REDIS_CLUSTER_NODES: set either REDIS_URL (one server) or REDIS_CLUSTER_NODES (a cluster), not both.',
    );
    const prefix = errorOf({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_KEY_PREFIX: 'lk{1}:' });
    expect(prefix.setting).toBe('REDIS_KEY_PREFIX');
    expect(prefix.message).toBe(
      'Invalid setting REDIS_KEY_PREFIX (got "lk{1}:"): expected no "{" or "}" with REDIS_CLUSTER_NODES (the key layout adds hash tags).',
    );
    // On one server braces in the prefix are harmless, as before.
    expect(load({ REDIS_KEY_PREFIX: 'lk{1}:' }).redisKeyPrefix).toBe('lk{1}:');
  });

  it('hides the value of a secret setting in its error', () => {
    const err = errorOf({ MONGODB_URI: 'postgres://user:hunter2@db/x' });
    expect(err.setting).toBe('MONGODB_URI');
    expect(err.message).toBe(
      'Invalid setting MONGODB_URI (value hidden): expected a mongodb:// or mongodb+srv:// URI, or empty.',
    );
    expect(err.message).not.toContain('hunter2');
  });

  it('reads NAME_FILE secrets, without the trailing newline', () => {
    const dir = tempDir();
    try {
      const file = join(dir.path, 'redis-url');
      writeFileSync(file, 'redis://:s3cret@127.0.0.1:6380\n');
      expect(load({ REDIS_URL_FILE: file }).redisUrl).toBe('redis://:s3cret@127.0.0.1:6380');
      expect(errorOf({ REDIS_URL_FILE: join(dir.path, 'missing') }).message).toMatch(
        /^Invalid setting REDIS_URL_FILE: cannot read .*missing \(ENOENT\)\.$/,
      );
      expect(errorOf({ REDIS_URL_FILE: file, REDIS_URL: 'redis://x' }).message).toBe(
        'Invalid setting REDIS_URL: set either REDIS_URL or REDIS_URL_FILE, not both.',
      );
    } finally {
      dir.remove();
    }
  });

  it('parses the defaults file format', () => {
    expect(parseEnvFile('# comment\nA=1\n  B = "two words" \nC=\'x\'\nD=\nnot a line\n')).toEqual({
      A: '1',
      B: 'two words',
      C: 'x',
      D: '',
    });
  });
});
