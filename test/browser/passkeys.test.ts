/**
 * Passkeys end to end in Debian's Chromium (playwright-core) with the DevTools virtual authenticator
 * (WebAuthn.enable and WebAuthn.addVirtualAuthenticator over a CDP session: a platform
 * authenticator with resident keys and user verification). A person signs in to the account page
 * with their password, adds a passkey there (and sees their recovery codes once), signs out, and then
 * signs in from an openid-client authorization request with the passkey alone: the ID token's amr
 * names the key (hwk or swk) and mfa, its acr is the multi-factor one. Then, password first, the
 * passkey serves as the second factor. The issuer is http://localhost:<port>: WebAuthn needs a
 * domain as relying party id, and localhost is a secure context without TLS.
 *
 * Needs Chromium at $CHROMIUM_PATH or /usr/bin/chromium; without one the suite is skipped with a
 * line on stderr.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';

import * as oidc from 'openid-client';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

import { ACR_MFA } from '../../src/services/mfa.js';
import { createUser, registerClient } from '../helpers/fixtures.js';
import { authorizationRequest, discover } from '../helpers/relying-party.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT_MS = 120_000;

const describeWithChromium = existsSync(CHROMIUM)
  ? describe
  : (name: string, body: () => void) => {
      process.stderr.write(`SKIPPED ${name}: no Chromium at ${CHROMIUM}\n`);
      describe.skip(name, body);
    };

/** A virtual platform authenticator on `page` (passkeys live in it, per page). */
async function virtualAuthenticator(context: BrowserContext, page: Page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

/** Waits until the browser reaches the client's callback, approving the consent page on the way. */
async function landed(page: Page, redirectUri: string): Promise<void> {
  const consent = page.locator('form[action$="/consent"] button[value=approve]');
  const callback = page.waitForURL(`${redirectUri}**`).then(() => 'callback' as const);
  const first = await Promise.race([callback, consent.waitFor().then(() => 'consent' as const)]);
  if (first === 'consent') {
    await consent.click();
    await page.waitForURL(`${redirectUri}**`);
  }
}

describeWithChromium('passkeys in Chromium with a virtual authenticator', () => {
  let browser: Browser;
  let server: TestServer;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
    server = await startTestServer({ hostname: 'localhost' });
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close();
  }, TIMEOUT_MS);

  it(
    'registers a passkey on the account page, then signs in with it alone and as a second factor',
    async () => {
      const { email, password, user } = await createUser(server.t, { first_name: 'Passkey' });
      const web = await registerClient(server.t, 'web');
      const config = await discover(server.url, web);
      const context = await browser.newContext({ locale: 'en-US' });
      context.setDefaultTimeout(15_000);
      await context.route(`${new URL(web.redirectUri).origin}/**`, (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' }),
      );
      const page = await context.newPage();
      const { cdp, authenticatorId } = await virtualAuthenticator(context, page);

      // Password sign-in on the account page, then "Add a passkey".
      await page.goto(`${server.url}/account`);
      await page.locator('form[action$="/login"]').waitFor();
      await page.locator('#email').fill(email);
      await page.locator('#password').fill(password);
      await page.locator('form[action$="/login"] button[type=submit]').click();
      await page.waitForURL(`${server.url}/account`);
      await page.locator('#passkey-name').fill('Test laptop');
      await page.getByRole('button', { name: 'Add a passkey' }).click();
      await page.waitForURL(`${server.url}/account/mfa/codes`);
      expect(await page.locator('ul.codes li').count()).toBe(10);
      await page.getByRole('link', { name: 'Continue' }).click();
      await page.waitForURL(`${server.url}/account`);
      await expect(page.locator('.factor-name').allTextContents()).resolves.toEqual(['Test laptop']);

      const [factor] = await server.t.stores.durable.mfa.listFactors(user.id);
      expect(factor).toMatchObject({ type: 'webauthn', name: 'Test laptop' });
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      expect(credentials).toHaveLength(1);
      expect(credentials[0]!.isResidentCredential).toBe(true);
      expect(factor!.credential_id).toBe(
        Buffer.from(credentials[0]!.credentialId, 'base64').toString('base64url'),
      );

      // Signed out (no cookies), the sign-in page offers the passkey: no password at all.
      await context.clearCookies();
      const request = await authorizationRequest(config, web.redirectUri, 'openid');
      await page.goto(request.url.toString());
      await page.locator('form[action$="/login"]').waitFor();
      // The button, or the browser's own offer in the e-mail field (conditional mediation, which the
      // virtual authenticator accepts at once): either way the passkey alone signs in.
      await Promise.race([
        page.waitForURL(`${web.redirectUri}**`),
        page
          .getByRole('button', { name: 'Sign in with a passkey' })
          .click({ timeout: 5_000 })
          .catch(() => undefined),
      ]);
      await landed(page, web.redirectUri);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url()), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      const claims = tokens.claims()!;
      expect(claims.sub).toBe(user.id);
      expect(claims.amr).toEqual([expect.stringMatching(/^(hwk|swk)$/), 'mfa']);
      expect(claims.acr).toBe(ACR_MFA);
      const used = await server.t.stores.durable.mfa.findFactor(factor!.id);
      expect(used!.last_used_at).not.toBeNull();

      // Password first: the passkey is then the second factor. (While the password is typed, the
      // virtual authenticator must not answer the e-mail field's conditional request by itself.)
      await context.clearCookies();
      await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
      const second = await authorizationRequest(config, web.redirectUri, 'openid');
      await page.goto(second.url.toString());
      await page.locator('#email').fill(email);
      await page.locator('#password').fill(password);
      await page.locator('form[action$="/login"] button[type=submit]').click();
      await page.locator('form[action$="/mfa/recovery"]').waitFor({ state: 'attached' });
      await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
      await page.getByRole('button', { name: 'Use a passkey' }).click();
      await landed(page, web.redirectUri);
      const again = await oidc.authorizationCodeGrant(config, new URL(page.url()), {
        pkceCodeVerifier: second.verifier,
        expectedState: second.state,
        expectedNonce: second.nonce,
      });
      expect(again.claims()!.amr).toEqual(['pwd', expect.stringMatching(/^(hwk|swk)$/), 'mfa']);

      // Removed on the account page, the passkey no longer signs anyone in.
      await page.goto(`${server.url}/account`);
      await page.getByRole('button', { name: 'Remove Test laptop' }).click();
      await page.waitForURL(`${server.url}/account`);
      expect(await server.t.stores.durable.mfa.listFactors(user.id)).toEqual([]);
      expect((await server.t.stores.durable.users.findById(user.id))!.mfa_enabled).toBe(false);
      await context.clearCookies();
      await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
      const third = await authorizationRequest(config, web.redirectUri, 'openid');
      await page.goto(third.url.toString());
      await page.locator('form[action$="/login"]').waitFor();
      await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.locator('#passkey-status').filter({ hasText: 'could not be used' }).waitFor();
      expect(page.url()).toContain('/interaction/');
      await context.close();
    },
    TIMEOUT_MS,
  );
});
