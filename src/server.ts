/**
 * Runs a built app on an HTTP server and stops it gracefully: readiness fails first, then after the
 * drain delay the listener closes, in-flight requests finish (up to the shutdown timeout, which the
 * configuration keeps longer than the request deadline), and the stores close last.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import type { Logger } from 'pino';

import type { BuiltApp } from './app.js';
import { AppError } from './errors/app-error.js';
import { toEnvelope } from './errors/error-middleware.js';
import { newRequestId } from './logging/request-context.js';
import { isHousekeepingPath } from './http/housekeeping.js';
import { IdleMemoryRelease } from './runtime/idle-memory.js';
import type { Stores } from './store/ports.js';

export interface RunningServer {
  server: Server;
  port: number;
  /**
   * Idempotent; resolves when everything is closed. `drain: false` skips the drain delay (an
   * interactive Ctrl-C); by default the server keeps serving for `shutdownDrainMs` first.
   */
  stop(reason: string, options?: { drain?: boolean }): Promise<void>;
}

export interface ServerOptions {
  port: number;
  host: string;
  shutdownDrainMs: number;
  shutdownTimeoutMs: number;
  /** Release memory after this long without requests (and once at start); 0: never. */
  idleMemoryReleaseMs: number;
}

export async function startServer(
  built: BuiltApp,
  stores: Stores,
  logger: Logger,
  options: ServerOptions,
): Promise<RunningServer> {
  const server = createServer(built.app.callback());
  // Keep-alive must outlive typical load-balancer idle timeouts so they close first, not us.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  // Requests in flight per connection. Node's closeIdleConnections() does not close a connection
  // that was opened but has not sent a request yet (browsers pre-connect), so shutdown closes those
  // itself, and closes each busy connection as soon as its last response is sent.
  const inFlight = new Map<Socket, number>();
  // Responses not finished yet: one begun before shutdown must still say "Connection: close", or
  // its client would reuse a connection this server is about to end and see it reset.
  const pending = new Set<ServerResponse>();
  server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  // A request head (request line with its query string, and headers) beyond Node's limit (16 KiB) never
  // reaches the app, and Node would answer a bare 431: it gets the error envelope every other refusal
  // has. Other malformed requests are answered as Node does by default. Nothing is written while a
  // response of the connection is under way (it would corrupt it); the connection ends either way.
  const CLIENT_ERRORS: Record<string, string> = {
    HPE_CHUNK_EXTENSIONS_OVERFLOW: '413 Payload Too Large',
    ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
  };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || (inFlight.get(socket) ?? 0) > 0) {
      socket.destroy(err);
      return;
    }
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      const requestId = newRequestId();
      const body = JSON.stringify(toEnvelope(new AppError('REQUEST_HEADERS_TOO_LARGE'), requestId));
      logger.debug({ request_id: requestId, code: 'REQUEST_HEADERS_TOO_LARGE' }, 'request rejected');
      socket.end(
        'HTTP/1.1 431 Request Header Fields Too Large\r\n' +
          'Content-Type: application/json; charset=utf-8\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          `X-Request-Id: ${requestId}\r\n` +
          'Cache-Control: no-store\r\n' +
          'Connection: close\r\n\r\n' +
          body,
      );
      return;
    }
    socket.end(`HTTP/1.1 ${CLIENT_ERRORS[err.code ?? ''] ?? '400 Bad Request'}\r\nConnection: close\r\n\r\n`);
  });
  // Gives memory back at start and whenever the server has been idle a while (runtime/idle-memory.ts).
  const idleMemory =
    options.idleMemoryReleaseMs > 0
      ? new IdleMemoryRelease({
          idleMs: options.idleMemoryReleaseMs,
          inFlight: () => pending.size,
          onRelease: ({ heapBefore, heapAfter, durationMs }) =>
            logger.debug(
              {
                heap_before_mib: Math.round(heapBefore / 2 ** 20),
                heap_after_mib: Math.round(heapAfter / 2 ** 20),
                duration_ms: Math.round(durationMs),
              },
              'released idle memory',
            ),
        })
      : undefined;
  server.on('request', (req, res) => {
    if (idleMemory && !isHousekeepingPath(req.url)) idleMemory.noteRequest();
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    // While shutting down, ask clients to reconnect elsewhere instead of reusing this connection.
    if (built.lifecycle.shuttingDown) res.setHeader('Connection', 'close');
    pending.add(res);
    res.once('close', () => {
      pending.delete(res);
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (left === 0 && built.lifecycle.shuttingDown && closing) socket.end();
    });
  });
  let closing = false;
  idleMemory?.start();

  built.lifecycle.listening = false;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      built.lifecycle.listening = true;
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let stopping: Promise<void> | undefined;
  const stop = (reason: string, stopOptions: { drain?: boolean } = {}) =>
    (stopping ??= (async () => {
      const drainMs = stopOptions.drain === false ? 0 : options.shutdownDrainMs;
      logger.info({ reason, drain_ms: drainMs }, 'shutting down');
      built.lifecycle.shuttingDown = true;
      idleMemory?.stop();
      for (const res of pending) if (!res.headersSent) res.setHeader('Connection', 'close');
      if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      closing = true;
      for (const [socket, requests] of inFlight) if (requests === 0) socket.end();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), options.shutdownTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        logger.warn(
          { timeout_ms: options.shutdownTimeoutMs },
          'in-flight requests did not finish in time; closing',
        );
        server.closeAllConnections();
        await closed;
      }
      // Every request has ended (its own deadline is shorter than the shutdown timeout, so in-flight
      // writes have finished or failed with 503 by now); only then do the stores close.
      built.close();
      await stores.close();
      logger.info('shutdown complete');
    })());

  return { server, port, stop };
}
