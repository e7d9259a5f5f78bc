/**
 * Sign-up end to end in a real browser (Debian's Chromium, driven by playwright-core): an
 * openid-client authorization request with `prompt=create` opens the sign-up page, the browser
 * fills it in, a real SMTP server in the test (smtp-server + mailparser) receives the confirmation
 * message, the browser opens the link from that message, continues to sign in and consents, and the
 * test exchanges the code with openid-client: the ID token says `email_verified: true`.
 *
 * Needs Chromium at $CHROMIUM_PATH or /usr/bin/chromium; without one the suite is skipped with a
 * line on stderr.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';

import * as oidc from 'openid-client';
import { chromium, type Browser } from 'playwright-core';

import { registerClient } from '../helpers/fixtures.js';
import { authorizationRequest, discover } from '../helpers/relying-party.js';
import { startSmtpCapture, type SmtpCapture } from '../helpers/smtp-capture.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT_MS = 90_000;
const PASSWORD = 'a sign-up passphrase typed in Chromium 8';

const describeWithChromium = existsSync(CHROMIUM)
  ? describe
  : (name: string, body: () => void) => {
      process.stderr.write(`SKIPPED ${name}: no Chromium at ${CHROMIUM}\n`);
      describe.skip(name, body);
    };

describeWithChromium('sign-up in Chromium, confirmed through the mailed link', () => {
  let browser: Browser;
  let server: TestServer;
  let smtp: SmtpCapture;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
    smtp = await startSmtpCapture();
    server = await startTestServer({
      env: {
        SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
        WEBHOOK_POLL_MS: '50',
        REGISTRATION: 'open',
        REQUIRE_VERIFIED_EMAIL: 'true',
      },
    });
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close();
    await smtp?.close();
  }, TIMEOUT_MS);

  it(
    'prompt=create → sign-up form → mail → link → sign-in → code → ID token with email_verified: true',
    async () => {
      const spa = await registerClient(server.t, 'spa');
      const config = await discover(server.url, spa);
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email', {
        prompt: 'create',
      });
      const context = await browser.newContext({ locale: 'en-US' });
      context.setDefaultTimeout(15_000);
      // The SPA itself is not served here: its callback only has to be reached.
      await context.route(`${new URL(spa.redirectUri).origin}/**`, (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' }),
      );
      const page = await context.newPage();

      await page.goto(request.url.toString());
      await page.locator('form[action$="/register"]').waitFor();
      const email = `chromium-${Date.now()}@example.com`;
      await page.locator('#email').fill(email);
      await page.locator('#password').fill(PASSWORD);
      await page.locator('#first_name').fill('Grace');
      await page.locator('form[action$="/register"] button[type=submit]').click();
      await page.locator('form[action$="/verify-code"]').waitFor();
      expect(await page.locator('[role=status]').textContent()).toContain(`We sent a link to ${email}`);
      expect((await server.t.stores.durable.users.findByEmail(email))?.email_verified).toBe(false);

      const mail = await smtp.waitFor(email, /Confirm your email/);
      const link = /(http:\/\/127\.0\.0\.1:\d+\/interaction\/verify-email\?token=[A-Za-z0-9_-]+)/.exec(
        mail.text ?? '',
      )?.[1];
      expect(link).toBeDefined();
      // The HTML part carries the same link as its button.
      expect(mail.html).toContain(link!.replace(/&/g, '&amp;'));
      await page.goto(link!);
      await expect(page.locator('h1').textContent()).resolves.toBe('Email address confirmed');

      await page.getByRole('link', { name: 'Continue' }).click();
      await page.locator('form[action$="/login"]').waitFor();
      await page.locator('#email').fill(email);
      await page.locator('#password').fill(PASSWORD);
      await page.locator('form[action$="/login"] button[type=submit]').click();
      await page.locator('form[action$="/consent"]').waitFor();
      await page.locator('form[action$="/consent"] button[value=approve]').click();
      await page.waitForURL(`${spa.redirectUri}**`);

      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url()), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      const user = await server.t.stores.durable.users.findByEmail(email);
      expect(tokens.claims()).toMatchObject({
        iss: server.url,
        aud: spa.clientId,
        sub: user!.id,
        email,
        email_verified: true,
      });
      await context.close();
    },
    TIMEOUT_MS,
  );
});
