/**
 * oauth2-proxy (built from the Go module proxy by scripts/test-services.sh) in front of a small
 * upstream, with the flags of docs/gateways.md, signing a user in through our login and consent
 * pages in Chromium: the upstream sees the user's e-mail; a user whose address is not verified is
 * refused by oauth2-proxy, as the recipe says.
 *
 * Runs when OAUTH2_PROXY_BIN names the binary (scripts/test-services.sh builds it once and sets it)
 * and Chromium is installed; otherwise the suite says why and is skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

import { chromium, type Browser, type BrowserContext } from 'playwright-core';

import { createUser, registerClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const PROXY = process.env.OAUTH2_PROXY_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT_MS = 60_000;
const ready = Boolean(PROXY) && existsSync(CHROMIUM);
if (!ready) {
  process.stderr.write(
    `SKIPPED oauth2-proxy suite: ${PROXY ? `no Chromium at ${CHROMIUM}` : 'OAUTH2_PROXY_BIN is not set (scripts/test-services.sh sets it)'}\n`,
  );
}

(ready ? describe : describe.skip)(
  'oauth2-proxy in front of an application, signing in with Latchkey',
  () => {
    let server: TestServer;
    let upstream: Server;
    let proxy: ChildProcess;
    let proxyUrl: string;
    let browser: Browser;
    let context: BrowserContext;
    let output = '';
    const seen: IncomingHttpHeaders[] = [];

    beforeAll(async () => {
      server = await startTestServer();
      upstream = createServer((req, res) => {
        seen.push(req.headers);
        res.setHeader('Content-Type', 'text/plain; charset=utf-8');
        res.end(`hello ${String(req.headers['x-forwarded-email'] ?? 'nobody')}`);
      });
      const upstreamPort = await freePort();
      await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve));

      const port = await freePort();
      proxyUrl = `http://127.0.0.1:${port}`;
      const client = await registerClient(server.t, 'web', { redirectUri: `${proxyUrl}/oauth2/callback` });
      // The flags of docs/gateways.md ("oauth2-proxy"); --cookie-secure=false because this runs on
      // plain http (the recipe's note says so).
      proxy = spawn(
        PROXY!,
        [
          '--provider=oidc',
          `--oidc-issuer-url=${server.url}`,
          `--client-id=${client.clientId}`,
          `--client-secret=${client.clientSecret}`,
          `--redirect-url=${proxyUrl}/oauth2/callback`,
          '--code-challenge-method=S256',
          '--scope=openid email profile',
          '--email-domain=*',
          `--cookie-secret=${randomBytes(16).toString('hex')}`,
          `--http-address=127.0.0.1:${port}`,
          `--upstream=http://127.0.0.1:${upstreamPort}`,
          '--cookie-secure=false',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      proxy.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      proxy.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      for (let i = 0; ; i++) {
        if (proxy.exitCode !== null) throw new Error(`oauth2-proxy exited:\n${output}`);
        try {
          if ((await fetch(`${proxyUrl}/ping`)).status === 200) break;
        } catch {
          // not listening yet
        }
        if (i > 300) throw new Error(`oauth2-proxy did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        timeout: 30_000,
      });
    }, TIMEOUT_MS);

    afterAll(async () => {
      await context?.close().catch(() => undefined);
      await browser?.close().catch(() => undefined);
      if (proxy && proxy.exitCode === null) {
        const exited = new Promise((r) => proxy.once('exit', r));
        proxy.kill('SIGTERM');
        await exited;
      }
      await new Promise((r) => upstream?.close(r));
      await server?.close();
    }, TIMEOUT_MS);

    const signIn = async (email: string, password: string) => {
      context = await browser.newContext();
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      await page.goto(`${proxyUrl}/`);
      // oauth2-proxy's own page first, then ours.
      await page.getByRole('button', { name: /Sign in with/ }).click();
      await page.waitForURL(new RegExp(`^${server.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/interaction/`));
      await page.getByLabel('Email').fill(email);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.getByRole('button', { name: 'Allow', exact: true }).click();
      await page.waitForURL(new RegExp(`^${proxyUrl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/`));
      await page.waitForLoadState('load');
      return page;
    };

    it(
      'signs a verified user in; the application sees the e-mail',
      async () => {
        const { user, email, password } = await createUser(server.t);
        expect(user.email_verified).toBe(true);
        const page = await signIn(email, password);
        expect(await page.locator('body').textContent()).toBe(`hello ${email}`);
        expect(seen.at(-1)!['x-forwarded-email']).toBe(email);
        await context.close();
      },
      TIMEOUT_MS,
    );

    it(
      'refuses a user whose address is not verified, and the application is not reached',
      async () => {
        const { user, email, password } = await createUser(server.t);
        await server.t.stores.durable.users.update(user.id, { email_verified: false });
        const before = seen.length;
        const page = await signIn(email, password);
        expect(await page.locator('body').textContent()).not.toContain(`hello ${email}`);
        expect(seen.length).toBe(before);
        expect(output).toMatch(/not verified|unverified/i);
        await context.close();
      },
      TIMEOUT_MS,
    );
  },
);
