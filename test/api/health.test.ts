import { afterEach, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

describe.each(availableBackends())(
  'health with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp | undefined;
    afterEach(async () => {
      await t?.close().catch(() => undefined);
      t = undefined;
    });

    it('GET /health/live answers while the process runs', async () => {
      t = await createTestApp({ durable, shortLived });
      const res = await request(t.callback).get('/health/live');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'ok' });
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-request-id']).toMatch(/^req_/);
    });

    it('GET /health/ready and GET /health report every store healthy with its backend and latency', async () => {
      t = await createTestApp({ durable, shortLived });
      const ready = await request(t.callback).get('/health/ready');
      expect(ready.status).toBe(200);
      expect(ready.body.status).toBe('ready');

      const health = await request(t.callback).get('/health');
      expect(health.status).toBe(200);
      expect(health.body).toEqual({
        status: 'healthy',
        ready: true,
        timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
        checks: {
          store: { healthy: true, backend: durable, latency_ms: expect.any(Number), circuit: 'closed' },
          artifacts: {
            healthy: true,
            backend: shortLived,
            latency_ms: expect.any(Number),
            circuit: 'closed',
          },
        },
      });
    });

    it('reports a store that stops answering on /health while readiness stays up (shared stores must not empty the fleet)', async () => {
      t = await createTestApp({ durable, shortLived });
      await t.stores.close();
      const ready = await request(t.callback).get('/health/ready');
      expect(ready.status).toBe(200);
      expect(ready.body).toEqual({ status: 'ready' });
      const health = await request(t.callback).get('/health');
      expect(health.body.checks.store.healthy).toBe(false);
      expect(health.body.ready).toBe(true);
      expect(health.status).toBe(503);
      expect(health.body.status).toBe('unhealthy');
      expect((await request(t.callback).get('/health/live')).status).toBe(200);
    });

    it('fails readiness as soon as shutdown begins', async () => {
      t = await createTestApp({ durable, shortLived });
      t.lifecycle.shuttingDown = true;
      const ready = await request(t.callback).get('/health/ready');
      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ status: 'shutting_down' });
    });
  },
);
