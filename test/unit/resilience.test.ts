/**
 * The pieces of the failure behaviour on their own: the circuit breaker, the store guard (deadline,
 * mapping of driver errors, abandoned requests), request limits (shedding, the request deadline, the
 * answer's shape per surface) and the error serializer of the logs. The same behaviour with real
 * Redis and FerretDB processes killed and hung is test/faults.
 */
import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import Koa from 'koa';
import request from 'supertest';

import { errorMiddleware } from '../../src/errors/error-middleware.js';
import { requestLimits } from '../../src/http/request-limits.js';
import { createLogger } from '../../src/logging/create-logger.js';
import { serializeError } from '../../src/logging/serialize-error.js';
import { runInRequestScope } from '../../src/runtime/request-scope.js';
import { CircuitBreaker } from '../../src/store/circuit-breaker.js';
import { RequestAbandonedError, StoreUnavailableError, isStoreOutage } from '../../src/store/errors.js';
import { BackendGuard } from '../../src/store/guarded-stores.js';
import { isMongoUnavailable } from '../../src/store/mongo/failures.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const silent = createLogger({ level: 'silent' });

describe('CircuitBreaker', () => {
  it('opens after the threshold of failures within the window, fails fast, and closes on the first good probe', async () => {
    let probeOk = false;
    let probes = 0;
    const changes: string[] = [];
    const breaker = new CircuitBreaker({
      backend: 'redis',
      failureThreshold: 3,
      probeIntervalMs: 20,
      probe: async () => {
        probes += 1;
        if (!probeOk) throw new Error('still down');
      },
      onStateChange: (state) => changes.push(state),
    });
    breaker.failed(new Error('1'));
    breaker.failed(new Error('2'));
    expect(() => breaker.admit()).not.toThrow();
    breaker.failed(new Error('3'));
    expect(breaker.state).toBe('open');
    expect(() => breaker.admit()).toThrow(StoreUnavailableError);
    await sleep(70);
    expect(probes).toBeGreaterThanOrEqual(2);
    expect(breaker.state).toBe('open');
    probeOk = true;
    await sleep(60);
    expect(breaker.state).toBe('closed');
    expect(changes).toEqual(['open', 'closed']);
    expect(() => breaker.admit()).not.toThrow();
    breaker.stop();
  });

  it('closes on a later probe while an earlier one still hangs (a ping sent during the hang)', async () => {
    let healed = false;
    const breaker = new CircuitBreaker({
      backend: 'mongo',
      failureThreshold: 1,
      probeIntervalMs: 10,
      // Probes sent before the heal never settle; those sent after answer at once.
      probe: () => (healed ? Promise.resolve() : new Promise<void>(() => undefined)),
    });
    breaker.failed(new Error('hung'));
    await sleep(25);
    expect(breaker.state).toBe('open');
    healed = true;
    await sleep(40);
    expect(breaker.state).toBe('closed');
    breaker.stop();
  });

  it('does not open on failures spread wider than its window', async () => {
    const breaker = new CircuitBreaker({
      backend: 'mongo',
      failureThreshold: 2,
      windowMs: 30,
      probeIntervalMs: 10,
      probe: async () => undefined,
    });
    breaker.failed(new Error('1'));
    await sleep(50);
    breaker.failed(new Error('2'));
    expect(breaker.state).toBe('closed');
    breaker.failed(new Error('3'));
    expect(breaker.state).toBe('open');
    breaker.stop();
  });
});

function guard(options: Partial<ConstructorParameters<typeof BackendGuard>[0]> = {}) {
  return new BackendGuard({
    backend: 'mongo',
    deadlineMs: 50,
    isUnavailable: isMongoUnavailable,
    ping: async () => undefined,
    failureThreshold: 2,
    probeIntervalMs: 1000,
    ...options,
  });
}

describe('BackendGuard', () => {
  it('gives every operation a deadline and names the backend and operation', async () => {
    const g = guard();
    const repo = g.wrap({ find: () => new Promise(() => undefined) }, 'users.');
    const err = await repo.find().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err).toMatchObject({ backend: 'mongo', message: 'mongo did not answer users.find within 50 ms' });
    g.stop();
  });

  it('maps driver errors that mean "no answer", keeps the cause, and lets real answers through', async () => {
    const g = guard({ failureThreshold: 10 });
    const selection = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      name: 'MongoServerSelectionError',
    });
    const conflict = Object.assign(new Error('E11000 duplicate key'), {
      name: 'MongoServerError',
      code: 11000,
    });
    const repo = g.wrap({
      down: async () => {
        throw selection;
      },
      duplicate: async () => {
        throw conflict;
      },
      fine: async () => 42,
    });
    const down = await repo.down().catch((e: unknown) => e);
    expect(down).toBeInstanceOf(StoreUnavailableError);
    expect((down as Error).cause).toBe(selection);
    await expect(repo.duplicate()).rejects.toBe(conflict);
    await expect(repo.fine()).resolves.toBe(42);
    g.stop();
  });

  it('fails fast once the breaker is open, without calling the backend', async () => {
    const g = guard({ failureThreshold: 2, ping: () => Promise.reject(new Error('down')) });
    let calls = 0;
    const repo = g.wrap({
      op: async () => {
        calls += 1;
        throw Object.assign(new Error('socket closed'), { name: 'MongoNetworkError' });
      },
    });
    await repo.op().catch(() => undefined);
    await repo.op().catch(() => undefined);
    expect(g.breaker.state).toBe('open');
    await expect(repo.op()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(calls).toBe(2); // the third was refused without reaching the backend
    g.stop();
  });

  it('does not start operations for a request that was given up, and does not count them as failures', async () => {
    const g = guard({ failureThreshold: 1 });
    let calls = 0;
    const repo = g.wrap({ op: async () => (calls += 1) });
    const controller = new AbortController();
    controller.abort();
    await runInRequestScope({ signal: controller.signal }, async () => {
      await expect(repo.op()).rejects.toBeInstanceOf(RequestAbandonedError);
    });
    expect(calls).toBe(0);
    expect(g.breaker.state).toBe('closed');
    g.stop();
  });

  it('wraps one level of repositories and passes lifecycle methods through', async () => {
    const g = guard();
    let closed = false;
    const store = g.wrap(
      { users: { get: () => new Promise(() => undefined) }, close: async () => void (closed = true) },
      '',
      true,
    );
    await expect(store.users.get()).rejects.toThrow('mongo did not answer users.get within 50 ms');
    await store.close();
    expect(closed).toBe(true);
    g.stop();
  });
});

describe('isStoreOutage', () => {
  it('sees an outage through the causes wrapped around it', () => {
    const outage = new StoreUnavailableError('redis did not answer');
    const wrapped = new Error('temporarily_unavailable', { cause: outage });
    expect(isStoreOutage(wrapped)).toBe(true);
    expect(isStoreOutage(new Error('other', { cause: new Error('x') }))).toBe(false);
    expect(isStoreOutage('text')).toBe(false);
  });
});

describe('requestLimits', () => {
  function app(options: { maxInFlight?: number; timeoutMs?: number; handler: Koa.Middleware }) {
    const koa = new Koa();
    const shed: string[] = [];
    koa.use(errorMiddleware(silent));
    koa.use(
      requestLimits({
        maxInFlight: options.maxInFlight ?? 10,
        timeoutMs: options.timeoutMs ?? 1000,
        isProtocolPath: (path) => path.startsWith('/oauth/'),
        onShed: (reason) => shed.push(reason),
      }),
    );
    koa.use(options.handler);
    return { callback: koa.callback(), shed };
  }

  it('answers 503 with Retry-After at the request deadline, in the envelope or in OAuth form, and gives the work up', async () => {
    let signalAborted: boolean | undefined;
    const { callback, shed } = app({
      timeoutMs: 100,
      handler: async (ctx) => {
        const guardOf = guard({ deadlineMs: undefined });
        const repo = guardOf.wrap({ op: async () => 'ran' });
        await sleep(200);
        // The request was given up: the next store operation is not started.
        const result = await repo.op().catch((e: unknown) => e);
        signalAborted = result instanceof RequestAbandonedError;
        guardOf.stop();
        ctx.body = { late: true };
      },
    });
    const api = await request(callback).get('/v2/users');
    expect(api.status).toBe(503);
    expect(api.headers['retry-after']).toBe('1');
    expect(api.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    const oauth = await request(callback).post('/oauth/token');
    expect(oauth.status).toBe(503);
    expect(oauth.body).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'The request took longer than 100 ms; retry shortly',
    });
    await sleep(150);
    expect(signalAborted).toBe(true);
    expect(shed).toEqual(['timeout', 'timeout']);
  });

  it('sheds requests beyond the in-flight bound at once, but never health probes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { callback, shed } = app({
      maxInFlight: 1,
      handler: async (ctx) => {
        if (ctx.path === '/slow') await gate;
        ctx.body = { ok: true };
      },
    });
    const server = (await import('node:http')).createServer(callback);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const slow = fetch(`${base}/slow`);
      await sleep(50);
      const refused = await fetch(`${base}/v2/users`);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('SERVICE_UNAVAILABLE');
      expect((await fetch(`${base}/health/live`)).status).toBe(200);
      release();
      expect((await slow).status).toBe(200);
      expect((await fetch(`${base}/v2/users`)).status).toBe(200);
      expect(shed).toEqual(['overloaded']);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('serializeError', () => {
  it('keeps type, message, code, network facts and the causes of a circular driver error', () => {
    const topology: Record<string, unknown> = { servers: new Map() };
    topology.self = topology;
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:27017'), {
      code: 'ECONNREFUSED',
      errno: -111,
      syscall: 'connect',
      address: '127.0.0.1',
      port: 27017,
    });
    const selection = Object.assign(
      new Error('Server selection timed out after 2000 ms', { cause: refused }),
      {
        name: 'MongoServerSelectionError',
        reason: topology,
      },
    );
    const outage = new StoreUnavailableError('mongo did not answer users.findById', {
      cause: selection,
      backend: 'mongo',
    });
    const out = serializeError(outage);
    expect(out).toMatchObject({
      type: 'StoreUnavailableError',
      message: 'mongo did not answer users.findById',
      backend: 'mongo',
      cause: {
        type: 'MongoServerSelectionError',
        message: 'Server selection timed out after 2000 ms',
        cause: { code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: '127.0.0.1', port: 27017 },
      },
    });
    expect(JSON.stringify(out)).not.toContain('servers');
  });

  it('never throws, whatever it is given, and the log line names the cause', () => {
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('getter trap');
        },
      },
    );
    const selfCaused = new Error('loop');
    (selfCaused as { cause?: unknown }).cause = selfCaused;
    expect(serializeError(hostile)).toMatchObject({ type: 'Error', message: '' });
    expect(serializeError(selfCaused).cause).toEqual({ type: 'Error', message: '[the same error again]' });
    expect(serializeError(undefined)).toEqual({ type: 'undefined', message: 'undefined' });

    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const topology: Record<string, unknown> = {};
    topology.loop = topology;
    const err = Object.assign(new Error('pool cleared'), { name: 'MongoPoolClearedError', topology });
    createLogger({ level: 'info', destination }).error({ err }, 'request failed');
    const record = JSON.parse(lines[0]!) as { err: { type: string; message: string } };
    expect(record.err).toMatchObject({ type: 'MongoPoolClearedError', message: 'pool cleared' });
    expect(lines[0]).not.toContain('unable to serialize');
  });
});
