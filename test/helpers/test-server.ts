/**
 * The real application on a real loopback HTTP port, for tests that talk to it the way relying
 * parties and browsers do (openid-client, fetch, Chromium). The issuer is the server's own URL.
 */
import { startServer, type RunningServer } from '../../src/server.js';
import { freePort } from './processes.js';
import { createTestApp, type TestApp, type TestAppOptions } from './test-app.js';

export interface TestServer {
  t: TestApp;
  /** The issuer: http://127.0.0.1:<port> */
  url: string;
  running: RunningServer;
  close(): Promise<void>;
}

/**
 * `hostname`: the issuer's host (default 127.0.0.1); the server listens on 127.0.0.1 either way.
 * Passkey tests use `localhost`: an IP address cannot be a WebAuthn relying party id.
 */
export async function startTestServer(
  options: TestAppOptions & { hostname?: 'localhost' } = {},
): Promise<TestServer> {
  const port = await freePort();
  const url = `http://${options.hostname ?? '127.0.0.1'}:${port}`;
  const t = await createTestApp({ ...options, env: { PORT: String(port), ISSUER: url, ...options.env } });
  const running = await startServer(t, t.stores, t.logger, {
    port,
    host: '127.0.0.1',
    shutdownDrainMs: 0,
    shutdownTimeoutMs: 2000,
    idleMemoryReleaseMs: 0,
  });
  return {
    t,
    url,
    running,
    close: async () => {
      await running.stop('test finished');
      await t.close().catch(() => undefined);
    },
  };
}
