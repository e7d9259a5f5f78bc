import { describe, expect, it, jest } from '@jest/globals';
import { Writable } from 'node:stream';
import Koa from 'koa';
import request from 'supertest';

import { createLogger, scrubUrl } from '../../src/logging/create-logger.js';
import { lazyChildLogger, newRequestId, requestContext } from '../../src/logging/request-context.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, destination, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const SECRETS = {
  password: 'pw-Secret-1',
  token: 'tok-Secret-2',
  access_token: 'at-Secret-3',
  refresh_token: 'rt-Secret-4',
  api_key: 'sk_live_Secret5',
  client_secret: 'cs-Secret-6',
  authorization: 'Bearer Secret-7',
  cookie: 'session=Secret-8',
};

describe('logging', () => {
  it('redacts credentials at the top level and nested up to three levels', () => {
    const out = capture();
    const logger = createLogger({ level: 'info', destination: out.destination });
    logger.info(
      { ...SECRETS, req: { headers: { ...SECRETS } }, body: { user: { ...SECRETS } }, email: 'a@b.c' },
      'x',
    );
    logger.info({ headers: { 'set-cookie': 'sid=Secret-9', 'x-api-key': 'sk_test_Secret10' } }, 'y');
    const text = out.lines.join('\n');
    for (const secret of [...Object.values(SECRETS), 'Secret-9', 'Secret10'])
      expect(text).not.toContain(secret);
    const [first] = out.records();
    expect(first).toMatchObject({ password: '[REDACTED]', email: 'a@b.c', level: 'info', msg: 'x' });
    expect((first!.body as { user: Record<string, unknown> }).user.api_key).toBe('[REDACTED]');
  });

  it('scrubs credential-bearing query parameters from URLs', () => {
    expect(scrubUrl('/oauth/callback?code=abc&state=xyz&scope=openid')).toBe(
      '/oauth/callback?code=%5BREDACTED%5D&state=%5BREDACTED%5D&scope=openid',
    );
    expect(scrubUrl('/health')).toBe('/health');
  });

  it('gives every request an id, echoes it, logs it, and never logs the Authorization header or cookies', async () => {
    const out = capture();
    const logger = createLogger({ level: 'info', destination: out.destination });
    const app = new Koa();
    app.use(requestContext(logger));
    app.use((ctx) => {
      ctx.state.log.info({ step: 'inside' }, 'handling');
      ctx.body = { ok: true };
    });

    const res = await request(app.callback())
      .get('/thing?access_token=Secret-11')
      .set('Authorization', 'Bearer Secret-12')
      .set('Cookie', 'sid=Secret-13');
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
    const records = out.records();
    expect(records).toHaveLength(2);
    for (const r of records) expect(r.request_id).toBe(id);
    expect(records[1]).toMatchObject({
      method: 'GET',
      status: 200,
      url: '/thing?access_token=%5BREDACTED%5D',
    });
    const text = out.lines.join('\n');
    for (const secret of ['Secret-11', 'Secret-12', 'Secret-13']) expect(text).not.toContain(secret);
  });

  it('makes distinct request ids of the documented form, across refills of its random pool', () => {
    const ids = Array.from({ length: 1000 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('keeps a sane incoming request id and replaces an unsafe one', async () => {
    const out = capture();
    const app = new Koa();
    app.use(requestContext(createLogger({ level: 'info', destination: out.destination })));
    app.use((ctx) => {
      ctx.body = 'ok';
    });
    const kept = await request(app.callback()).get('/').set('X-Request-Id', 'lb-1234.abcd:5');
    expect(kept.headers['x-request-id']).toBe('lb-1234.abcd:5');
    for (const bad of ['has space', 'x'.repeat(200), '<script>', '-leading-dash']) {
      const replaced = await request(app.callback()).get('/').set('X-Request-Id', bad);
      expect(replaced.headers['x-request-id']).toMatch(/^req_/);
    }
  });

  it('makes the per-request child logger only when a line is written, and every line still carries the id', async () => {
    const out = capture();
    const logger = createLogger({ level: 'warn', destination: out.destination });
    const makeChild = jest.spyOn(logger, 'child');
    const app = new Koa();
    app.use(requestContext(logger));
    app.use((ctx) => {
      ctx.state.log.info({ step: 'filtered' }, 'not written at warn');
      ctx.state.log.debug('nor this');
      if (ctx.path === '/warns') ctx.state.log.warn({ step: 'inside' }, 'written');
      ctx.status = ctx.path === '/fails' ? 500 : 200;
      ctx.body = 'ok';
    });

    await request(app.callback()).get('/quiet');
    expect(makeChild).not.toHaveBeenCalled();
    expect(out.lines).toHaveLength(0);

    const res = await request(app.callback()).get('/warns');
    expect(makeChild).toHaveBeenCalledTimes(1);
    expect(out.records()).toEqual([
      expect.objectContaining({ level: 'warn', step: 'inside', request_id: res.headers['x-request-id'] }),
    ]);

    // An enabled level read through the lazy logger behaves as before (the request line is info).
    logger.level = 'info';
    const second = await request(app.callback()).get('/fails');
    const lines = out.records().slice(1);
    expect(lines.map((r) => r.msg)).toEqual(['not written at warn', 'request completed']);
    for (const r of lines) expect(r.request_id).toBe(second.headers['x-request-id']);
    expect(lines[1]).toMatchObject({ status: 500, url: '/fails' });
  });

  it('gives the lazy child logger the whole logger interface with its bindings', () => {
    const out = capture();
    const logger = createLogger({ level: 'info', destination: out.destination });
    const log = lazyChildLogger(logger, { request_id: 'req_lazy', password: 'Secret-14' });
    expect(log.level).toBe('info');
    expect(log.isLevelEnabled('debug')).toBe(false);
    expect(log.bindings()).toMatchObject({ request_id: 'req_lazy' });

    log.child({ step: 'nested' }).info({ token: 'Secret-15' }, 'from a grandchild');
    log.level = 'debug';
    log.debug('after lowering the level of this request only');
    logger.debug('the parent keeps its level');

    const records = out.records();
    expect(records).toHaveLength(2);
    expect(records[0]).toMatchObject({ request_id: 'req_lazy', step: 'nested', token: '[REDACTED]' });
    expect(records[1]).toMatchObject({ request_id: 'req_lazy', level: 'debug' });
    expect(out.lines.join('\n')).not.toMatch(/Secret-1[45]/);
  });
});
