import { describe, expect, it } from '@jest/globals';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import Koa from 'koa';
import request from 'supertest';
import { Writable } from 'node:stream';

import { AppError } from '../../src/errors/app-error.js';
import { ERROR_CATALOG } from '../../src/errors/catalog.js';
import { errorMiddleware } from '../../src/errors/error-middleware.js';
import { createLogger } from '../../src/logging/create-logger.js';
import { requestContext } from '../../src/logging/request-context.js';

function appWithRoutes() {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(c, _e, done) {
        lines.push(c.toString());
        done();
      },
    }),
  });
  const router = new Router();
  router.get('/validation', () => {
    throw new AppError('VALIDATION_ERROR', {
      details: [{ field: 'email', issue: 'Invalid email format', provided: 'invalid-email' }],
    });
  });
  router.get('/limited', () => {
    throw new AppError('RATE_LIMIT_EXCEEDED', { retryAfter: 42 });
  });
  router.get('/crash', () => {
    throw new Error('disk on fire at /srv/app/internal-module.ts:12');
  });
  router.post('/echo', (ctx) => {
    ctx.body = ctx.request.body;
  });
  const app = new Koa();
  app.silent = true;
  app.use(requestContext(logger));
  app.use(errorMiddleware(logger));
  app.use(bodyParser({ enableTypes: ['json'], jsonLimit: '10b' }));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return { callback: app.callback(), logs: () => lines.join('') };
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

describe('error envelope', () => {
  it('renders an AppError with its code, message, details, request id and timestamp', async () => {
    const { callback } = appWithRoutes();
    const res = await request(callback).get('/validation').set('X-Request-Id', 'req-abc');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: {
        code: 'VALIDATION_ERROR',
        message: 'The request contains invalid data',
        details: [{ field: 'email', issue: 'Invalid email format', provided: 'invalid-email' }],
        request_id: 'req-abc',
        timestamp: expect.stringMatching(TIMESTAMP),
      },
    });
  });

  it('sends retry_after in the body and Retry-After as a header', async () => {
    const res = await request(appWithRoutes().callback).get('/limited');
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('42');
    expect(res.body.error).toMatchObject({ code: 'RATE_LIMIT_EXCEEDED', retry_after: 42 });
  });

  it('turns an unexpected error into a 500 that reveals nothing, and logs it with the request id', async () => {
    const { callback, logs } = appWithRoutes();
    const res = await request(callback).get('/crash');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      error: {
        code: 'INTERNAL_ERROR',
        message: 'An unexpected error occurred',
        request_id: res.headers['x-request-id'],
        timestamp: expect.stringMatching(TIMESTAMP),
      },
    });
    expect(JSON.stringify(res.body)).not.toMatch(/disk on fire|internal-module|stack/);
    expect(logs()).toContain('disk on fire'); // the full error is in the logs...
    expect(logs()).toContain(res.headers['x-request-id']); // ...under the request id
  });

  it('maps unknown routes, wrong methods, bad JSON and oversized bodies to catalog codes', async () => {
    const { callback } = appWithRoutes();
    const notFound = await request(callback).get('/nope');
    expect(notFound.status).toBe(404);
    expect(notFound.body.error.code).toBe('NOT_FOUND');

    const wrongMethod = await request(callback).delete('/validation');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body.error.code).toBe('METHOD_NOT_ALLOWED');

    const badJson = await request(callback)
      .post('/echo')
      .set('Content-Type', 'application/json')
      .send('{"a":');
    expect(badJson.status).toBe(400);
    expect(badJson.body.error.code).toBe('MALFORMED_JSON');

    const tooBig = await request(callback)
      .post('/echo')
      .set('Content-Type', 'application/json')
      .send('{"a":"0123456789"}');
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('has a fixed status for every catalog code, in the documented ranges', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
      expect(entry.message.length).toBeGreaterThan(0);
      if (code.startsWith('AUTH_TOKEN')) expect(entry.status).toBe(401);
      if (code.endsWith('_NOT_FOUND')) expect(entry.status).toBe(404);
    }
    expect(ERROR_CATALOG.USER_ALREADY_EXISTS.status).toBe(409);
    expect(ERROR_CATALOG.AUTH_INSUFFICIENT_SCOPE.status).toBe(403);
    expect(ERROR_CATALOG.QUOTA_EXCEEDED.status).toBe(429);
  });
});
