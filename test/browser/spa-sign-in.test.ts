/**
 * End to end in a real browser: Debian's Chromium, driven by playwright-core, signs in through our
 * login and consent pages for a public single-page application using code + PKCE, and the SPA's
 * callback page exchanges the code at the token endpoint with a cross-origin fetch.
 *
 * The SPA (test/browser/spa/) is served by a tiny node:http server on its own loopback port, with a
 * CSP of its own that allows no inline script. Runs once per available backend combination.
 *
 * Needs Chromium at $CHROMIUM_PATH or /usr/bin/chromium (`apt-get install chromium`); without one the
 * suite is skipped with a line on stderr. A browser that exists but cannot start fails the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import { decodeJwt } from 'jose';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';

import { createUser, registerClient } from '../helpers/fixtures.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const SPA_DIR = join(import.meta.dirname, 'spa');
const SCOPE = 'openid profile email offline_access';
/** Generous: Chromium's first start on a cold machine takes a few seconds. */
const TIMEOUT_MS = 60_000;

const describeWithChromium = existsSync(CHROMIUM)
  ? describe
  : (name: string, body: () => void) => {
      process.stderr.write(
        `SKIPPED ${name}: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)\n`,
      );
      describe.skip(`${name} [skipped: no Chromium at ${CHROMIUM}]`, body);
    };

interface Spa {
  origin: string;
  redirectUri: string;
  configure(config: { issuer: string; clientId: string }): void;
  close(): Promise<void>;
}

/** The test SPA's static files on a free loopback port. */
async function startSpa(): Promise<Spa> {
  const files: Record<string, { file: string; type: string }> = {
    '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
    '/callback': { file: 'callback.html', type: 'text/html; charset=utf-8' },
    '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
    '/callback.js': { file: 'callback.js', type: 'text/javascript; charset=utf-8' },
  };
  let config: { issuer: string; clientId: string } | undefined;
  let origin = '';
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://spa').pathname;
    res.setHeader('Cache-Control', 'no-store');
    if (path === '/config.json' && config) {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ ...config, redirectUri: `${origin}/callback`, scope: SCOPE }));
      return;
    }
    const entry = files[path];
    if (req.method !== 'GET' || !entry || !config) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('Content-Type', entry.type);
    // Scripts only from the SPA's own origin (no inline script); fetch only to itself and the issuer.
    res.setHeader(
      'Content-Security-Policy',
      `default-src 'none'; script-src 'self'; connect-src 'self' ${config.issuer}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    );
    res.end(readFileSync(join(SPA_DIR, entry.file)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    redirectUri: `${origin}/callback`,
    configure: (c) => {
      config = c;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Everything the browser reported while a page was open, and the documents it loaded. */
function watch(page: Page): { console: string[]; documents: Response[] } {
  const seen = { console: [] as string[], documents: [] as Response[] };
  page.on('console', (message) =>
    seen.console.push(`${message.type()}: ${message.text()} (${message.location().url || 'no url'})`),
  );
  page.on('pageerror', (err) => seen.console.push(`pageerror: ${err.message}`));
  page.on('response', (response) => {
    if (response.request().resourceType() === 'document') seen.documents.push(response);
  });
  return seen;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describeWithChromium('SPA sign-in in Chromium', () => {
  let browser: Browser | undefined;

  beforeAll(async () => {
    // launch() starts Chromium on a fresh temporary user-data-dir of its own and deletes it on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
  }, TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
  }, TIMEOUT_MS);

  describe.each(availableBackends())('durable $durable, short-lived $shortLived', (backends) => {
    let server: TestServer | undefined;
    let spa: Spa | undefined;
    let context: BrowserContext | undefined;

    beforeAll(async () => {
      if (!browser) throw new Error(`Chromium at ${CHROMIUM} did not start (see the launch error)`);
      spa = await startSpa();
      server = await startTestServer(backends);
      // A context of its own (cookies, storage, sockets) per backend.
      context = await browser.newContext();
      // Fail with Playwright's message (what it waited for) well before Jest's timeout.
      context.setDefaultTimeout(10_000);
    }, TIMEOUT_MS);

    afterAll(async () => {
      // The context first: it closes the browser's keep-alive connections, so both servers stop at once.
      await context?.close().catch(() => undefined);
      await spa?.close();
      await server?.close();
    }, TIMEOUT_MS);

    it(
      'signs in through the login and consent pages and the SPA gets tokens',
      async () => {
        const { t, url: issuer } = server!;
        const { user, email, password } = await createUser(t);
        const client = await registerClient(t, 'spa', { redirectUri: spa!.redirectUri });
        spa!.configure({ issuer, clientId: client.clientId });

        const page = await context!.newPage();
        const seen = watch(page);
        const report = () => `browser console:\n${seen.console.join('\n') || '(empty)'}`;
        try {
          await page.goto(`${spa!.origin}/`);
          await page.getByRole('button', { name: 'Sign in with Latchkey' }).click();

          // Our login page.
          await page.waitForURL(new RegExp(`^${escapeRegExp(issuer)}/interaction/[^/?#]+$`));
          const loginPage = seen.documents.at(-1)!;
          expect(loginPage.url()).toBe(page.url());
          expect(loginPage.status()).toBe(200);
          await page.getByRole('heading', { name: 'Sign in to Test SPA' }).waitFor();
          await page.getByLabel('Email').fill(email);
          await page.getByLabel('Password').fill(password);
          await page.getByRole('button', { name: 'Sign in', exact: true }).click();

          // Our consent page.
          await page.getByRole('heading', { name: 'Test SPA wants access to your account' }).waitFor();
          const consentPage = seen.documents.at(-1)!;
          expect(consentPage.url()).toBe(page.url());
          expect(consentPage.status()).toBe(200);
          expect(await page.getByRole('listitem').allTextContents()).toEqual(
            expect.arrayContaining(['Keep access while you are away']),
          );
          await page.getByRole('button', { name: 'Allow', exact: true }).click();

          // The SPA's callback: state checked, code exchanged with a cross-origin fetch.
          await page.waitForURL(`${spa!.origin}/callback`);
          const status = page.locator('#status[data-state]');
          await status.waitFor();
          const outcome = await status.textContent();
          if (outcome !== 'Signed in') {
            throw new Error(
              `the callback page says "${outcome}" ${await page.locator('#tokens').textContent()}`,
            );
          }
          const tokens: Record<string, unknown> = JSON.parse((await page.locator('#tokens').textContent())!);
          expect(tokens).toMatchObject({
            access_token: expect.any(String),
            id_token: expect.any(String),
            refresh_token: expect.any(String),
            token_type: 'Bearer',
            expires_in: expect.any(Number),
          });
          expect(String(tokens.scope).split(' ').sort()).toEqual(SCOPE.split(' ').sort());
          expect(decodeJwt(String(tokens.id_token))).toMatchObject({
            iss: issuer,
            aud: client.clientId,
            sub: user.id,
          });

          // Our pages' own headers: no scripts but our own passkey script on the sign-in page
          // (script-src 'self', nothing inline), none at all on the consent page (default-src 'none'
          // and no script-src to widen it); forms may lead only to us and the SPA's redirect origin,
          // nothing cached.
          for (const response of [loginPage, consentPage]) {
            const headers = await response.allHeaders();
            const csp = headers['content-security-policy'] ?? '';
            expect(csp).toContain("default-src 'none'");
            expect(csp).not.toContain('unsafe-inline');
            const scripts = /script-src ([^;]*)/.exec(csp)?.[1];
            expect(scripts).toBe(response === loginPage ? "'self'" : undefined);
            expect(csp).toMatch(new RegExp(`form-action 'self' ${escapeRegExp(spa!.origin)}(;|$)`));
            expect(headers['cache-control']).toBe('no-store');
          }

          // The session cookie survived the redirects with the flags we set.
          const cookies = await context!.cookies(issuer);
          expect(cookies.find((c) => c.name === '_lk_session')).toMatchObject({
            httpOnly: true,
            sameSite: 'Lax',
          });

          // No page in the flow (ours or the SPA's) tripped a Content-Security-Policy.
          expect(seen.console.filter((line) => /content[- ]security[- ]policy/i.test(line))).toEqual([]);
        } catch (err) {
          // Whatever went wrong, show what the browser said (CSP and CORS errors appear only there).
          if (err instanceof Error) err.message += `\n\n${report()}`;
          throw err;
        } finally {
          await page.close().catch(() => undefined);
        }
      },
      TIMEOUT_MS,
    );
  });
});
