/**
 * Several server processes run as one service: the settings they must share (issuer, secrets, the
 * stores), a bootstrap admin client to drive the management API, plain HTTP calls that can name the
 * instance to answer (through a LoadBalancer), and removal of what the run left in MongoDB and Redis.
 */
import { Redis } from 'ioredis';
import mongoose from 'mongoose';

import { tempDir, uniqueName } from './backends.js';
import { BACKEND_HEADER } from './load-balancer.js';
import { startServerProcess, type RunningProcess } from './processes.js';

export const CLUSTER_ADMIN_CLIENT_ID = 'cluster-admin';
export const CLUSTER_ADMIN_SECRET = 'cluster-admin-secret-0123456789abcdef';
export const CLUSTER_ADMIN_SCOPE = 'user:read user:write user:security role:manage client:manage key:manage';
const COOKIE_KEY = 'cluster-cookie-key-0123456789abcdefghijklmnopqrstuvwxyz';
const KEY_ENCRYPTION_SECRET = 'cluster-key-encryption-secret-0123456789abcdefghij';

export interface ClusterStores {
  /** A database of its own on the MongoDB-wire server, or undefined for the embedded store. */
  mongodbUri?: string;
  redisUrl?: string;
  redisKeyPrefix: string;
}

/** A fresh database name and key prefix on the given servers. */
export function clusterStores(urls: { mongodbUri?: string; redisUrl?: string }): ClusterStores {
  let mongodbUri: string | undefined;
  if (urls.mongodbUri) {
    const url = new URL(urls.mongodbUri);
    url.pathname = `/${uniqueName('latchkey_cluster')}`;
    mongodbUri = url.toString();
  }
  return { mongodbUri, redisUrl: urls.redisUrl, redisKeyPrefix: `${uniqueName('lk_cluster')}:` };
}

/** What every instance of one service must agree on. */
export function clusterEnv(issuer: string, stores: ClusterStores): Record<string, string> {
  return {
    ISSUER: issuer,
    COOKIE_KEYS: COOKIE_KEY,
    KEY_ENCRYPTION_SECRET,
    MONGODB_URI: stores.mongodbUri ?? '',
    REDIS_URL: stores.redisUrl ?? '',
    REDIS_KEY_PREFIX: stores.redisKeyPrefix,
    BOOTSTRAP_ADMIN_CLIENT_ID: CLUSTER_ADMIN_CLIENT_ID,
    BOOTSTRAP_ADMIN_CLIENT_SECRET: CLUSTER_ADMIN_SECRET,
  };
}

export interface Instance extends RunningProcess {
  name: string;
  removeDataDir(): void;
}

/**
 * Starts one server process; it gets a DATA_DIR of its own unless `env` names one, so with MongoDB
 * and Redis configured nothing can pass between instances except through those.
 */
export async function startInstance(
  name: string,
  env: Record<string, string | undefined>,
): Promise<Instance> {
  const dir = env.DATA_DIR ? undefined : tempDir(`latchkey-${name}-`);
  const running = await startServerProcess({ DATA_DIR: dir?.path ?? env.DATA_DIR!, ...env }, 60_000);
  return { ...running, name, removeDataDir: () => dir?.remove() };
}

/** Stops an instance still running (SIGKILL when it does not stop on SIGTERM in time). */
export async function stopInstance(instance: Instance | undefined): Promise<void> {
  if (!instance) return;
  if (instance.child.exitCode === null && instance.child.signalCode === null) {
    const killer = setTimeout(() => instance.child.kill('SIGKILL'), 15_000);
    await instance.stop('SIGTERM');
    clearTimeout(killer);
  }
  instance.removeDataDir();
}

/** Drops the cluster's database and deletes its Redis keys. */
export async function removeClusterData(stores: ClusterStores): Promise<void> {
  if (stores.mongodbUri) {
    const conn = await mongoose
      .createConnection(stores.mongodbUri, { serverSelectionTimeoutMS: 5000 })
      .asPromise();
    try {
      await conn.dropDatabase();
    } finally {
      await conn.destroy();
    }
  }
  if (stores.redisUrl) {
    const redis = new Redis(stores.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const pattern = `${stores.redisKeyPrefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  }
}

export interface Answer {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON of any shape
}

/** One HTTP call; `backend` names the instance to answer (the balancer's X-Test-Backend header). */
export async function call(
  baseUrl: string,
  method: string,
  path: string,
  options: {
    token?: string;
    json?: unknown;
    form?: Record<string, string>;
    basic?: [string, string];
    backend?: string;
  } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.basic) {
    const [user, secret] = options.basic.map(encodeURIComponent);
    headers.authorization = `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;
  }
  if (options.backend) headers[BACKEND_HEADER] = options.backend;
  let body: string | undefined;
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.json);
  } else if (options.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(options.form).toString();
  }
  const res = await fetch(new URL(path, baseUrl), { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: parsed };
}

/** An access token by client credentials (the bootstrap admin's unless another client is given). */
export async function clientCredentialsToken(
  baseUrl: string,
  options: { client?: [string, string]; scope?: string; resource?: string; backend?: string } = {},
): Promise<string> {
  const form: Record<string, string> = {
    grant_type: 'client_credentials',
    scope: options.scope ?? CLUSTER_ADMIN_SCOPE,
  };
  if (options.resource) form.resource = options.resource;
  const res = await call(baseUrl, 'POST', '/oauth/token', {
    form,
    basic: options.client ?? [CLUSTER_ADMIN_CLIENT_ID, CLUSTER_ADMIN_SECRET],
    backend: options.backend,
  });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { access_token: string }).access_token;
}

/**
 * Calls `probe` until `done` accepts its result or `deadlineMs` passes, and returns the last result
 * and how long it took. The caller asserts on the result: a poll that ran out shows its last state.
 */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  deadlineMs: number,
  intervalMs = 100,
): Promise<{ value: T; elapsedMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    const elapsedMs = Date.now() - started;
    if (done(value) || elapsedMs >= deadlineMs) return { value, elapsedMs };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
