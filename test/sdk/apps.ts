/**
 * Real Express and Koa apps on 127.0.0.1 and ephemeral ports, each guarding one route with the
 * Latchkey middleware and answering the identity it attached, for the middleware tests.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import express from 'express';
import Koa from 'koa';

import {
  latchkeyExpress,
  latchkeyKoa,
  type AuthenticateOptions,
  type LatchkeyKoaState,
} from '../../src/sdk/index.js';

export type Framework = 'express' | 'koa';

export interface GuardedApp {
  url: string;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<GuardedApp> {
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/things`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An app whose GET /things is guarded by the middleware and answers `{ identity }`. */
export function startGuardedApp(framework: Framework, options: AuthenticateOptions): Promise<GuardedApp> {
  if (framework === 'express') {
    const app = express();
    app.get('/things', latchkeyExpress(options), (req, res) => {
      res.json({ identity: req.latchkey });
    });
    return listen(app.listen(0, '127.0.0.1'));
  }
  const app = new Koa<LatchkeyKoaState>();
  const guard = latchkeyKoa(options);
  app.use(async (ctx, next) => {
    if (ctx.path !== '/things') return;
    await guard(ctx, next);
  });
  app.use((ctx) => {
    ctx.body = { identity: ctx.state.latchkey };
  });
  return listen(app.listen(0, '127.0.0.1'));
}
