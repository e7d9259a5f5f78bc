/**
 * Every server-rendered page checked with axe-core in Debian's Chromium, in English and in German
 * (the browser's language picks the page's): sign-in (also with an error), sign-up and its "check
 * your inbox" page with the code form, "forgot
 * password" and its answer, the reset form (also with an error) and its result, address
 * confirmation (done and invalid), consent, the account page, the sign-out confirmation and its
 * result, an invitation's sign-up page (address fixed) and a dead invitation, and the error page;
 * and, in production without SMTP_URL, the pages that say e-mail is off (sign-in, sign-up, an
 * unconfirmed user's refused sign-in); and the two-step verification pages (the account page with
 * and without a second factor, setting up an authenticator app, also with an error, the recovery
 * codes, the second-factor page at sign-in, also with an error); and the device flow's pages (the
 * code, also with an error, the confirmation, and "device connected" after sign-in and consent).
 * No serious or critical violation is allowed, and each page is in the
 * language asked for (`<html lang>`).
 *
 * axe-core is injected as a script; the pages' Content-Security-Policy (no scripts at all) would
 * refuse it, so the browser context bypasses CSP for this test only.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { generateSync } from 'otplib';
import { chromium, type Browser, type Page } from 'playwright-core';

import { AccountTokens } from '../../src/mail/account-tokens.js';
import { createUser, registerClient } from '../helpers/fixtures.js';
import { authorizationRequest, discover } from '../helpers/relying-party.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const TIMEOUT_MS = 120_000;

const describeWithChromium = existsSync(CHROMIUM)
  ? describe
  : (name: string, body: () => void) => {
      process.stderr.write(`SKIPPED ${name}: no Chromium at ${CHROMIUM}\n`);
      describe.skip(name, body);
    };

interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** Runs axe-core on `page`: records `name` in `checked` and its serious or critical violations in `problems`. */
async function axeCheck(
  page: Page,
  lang: string,
  name: string,
  found: { checked: string[]; problems: string[] },
): Promise<void> {
  await page.waitForLoadState('load');
  expect([name, await page.getAttribute('html', 'lang')]).toEqual([name, lang]);
  await page.addScriptTag({ content: AXE });
  const violations = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe;
    return (await axe.run()).violations;
  })) as Violation[];
  for (const v of violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
    found.problems.push(
      `${name}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
    );
  }
  found.checked.push(name);
}

describeWithChromium('accessibility of every server-rendered page (axe-core)', () => {
  let browser: Browser;
  let server: TestServer;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
    server = await startTestServer({ env: { REGISTRATION: 'open', REQUIRE_VERIFIED_EMAIL: 'true' } });
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close();
  }, TIMEOUT_MS);

  it.each([
    ['en-US', 'en', 'Sign in'],
    ['de-DE', 'de', 'Anmelden'],
  ])(
    'has no serious or critical violation on any page, in %s',
    async (locale, lang, signInLabel) => {
      const { t, url } = server;
      const user = await createUser(t);
      const spa = await registerClient(t, 'spa');
      const config = await discover(url, spa);
      const context = await browser.newContext({ locale, bypassCSP: true });
      context.setDefaultTimeout(15_000);
      // The SPA's callback is not served here: answer it so the browser lands somewhere.
      await context.route(`${new URL(spa.redirectUri).origin}/**`, (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' }),
      );
      const page = await context.newPage();
      const checked: string[] = [];
      const problems: string[] = [];
      const check = async (name: string, target?: Page) => {
        const p = target ?? page;
        await p.waitForLoadState('load');
        expect([name, await p.getAttribute('html', 'lang')]).toEqual([name, lang]);
        await p.addScriptTag({ content: AXE });
        const violations = (await p.evaluate(async () => {
          const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe;
          return (await axe.run()).violations;
        })) as Violation[];
        for (const v of violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
          problems.push(
            `${name}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
          );
        }
        checked.push(name);
      };

      const request = await authorizationRequest(config, spa.redirectUri, 'openid email profile');
      await page.goto(request.url.toString());
      await check('login');
      const uid = /\/interaction\/([^/?#]+)/.exec(page.url())![1]!;

      await page.goto(`${url}/interaction/${uid}/register`);
      await check('register');
      await page.locator('#email').fill(`signup-${lang}-${Date.now()}@example.com`);
      await page.locator('#password').fill('a long sign-up passphrase 5');
      await page.locator('form[action$="/register"] button[type=submit]').click();
      await page.locator('form[action$="/verify-code"]').waitFor();
      await check('check your inbox (code form)');
      await page.goto(`${url}/interaction/${uid}/forgot`);
      await check('forgot');
      await page.locator('#email').fill(`nobody-${Date.now()}@example.com`);
      await page.locator('button[type=submit]').click();
      await check('forgot (sent)');

      await page.goto(`${url}/interaction/${uid}`);
      await page.locator('#email').fill(user.email);
      await page.locator('#password').fill('not the password');
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await check('login (error)');
      await page.locator('#email').fill(user.email);
      await page.locator('#password').fill(user.password);
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await page.locator('form[action$="/consent"]').waitFor();
      await check('consent');
      await page.locator('form[action$="/consent"] button[type=submit]').first().click();
      await page.waitForURL(`${spa.redirectUri}**`);

      await page.goto(`${url}/account`);
      await page.locator('h1').waitFor();
      await check('account');

      await page.goto(`${url}/oauth/logout`);
      await check('sign-out confirmation');
      await page.locator('button[name=logout]').click();
      await page.waitForLoadState('load');
      await check('signed out');

      const tokens = new AccountTokens(t.stores.artifacts, t.stores.counters);
      const reset = await tokens.issue('password_reset', user.user, 600, null);
      await page.goto(`${url}/interaction/password-reset?token=${reset}`);
      await check('reset');
      await page.locator('#password').fill('one long passphrase 1');
      await page.locator('#confirm').fill('another long passphrase 2');
      await page.locator('button[type=submit]').click();
      await check('reset (error)');
      await page.locator('#password').fill('one long passphrase for real 3');
      await page.locator('#confirm').fill('one long passphrase for real 3');
      await page.locator('button[type=submit]').click();
      await check('reset (done)');

      const unverified = await createUser(t);
      const confirmed = await t.stores.durable.users.update(unverified.user.id, { email_verified: false });
      const verification = await tokens.issue('email_verification', confirmed!, 600, null);
      await page.goto(`${url}/interaction/verify-email?token=${verification}`);
      await check('verify (done)');
      await page.goto(`${url}/interaction/verify-email?token=${verification}`);
      await check('verify (invalid)');

      const invitation = await tokens.issueInvitation(
        { email: `invited-${lang}-${Date.now()}@example.com`, first_name: 'Ada', last_name: '' },
        600,
      );
      await page.goto(`${url}/interaction/invitation?token=${invitation}`);
      await page.locator('#email[readonly]').waitFor();
      await check('register (invited)');
      await page.goto(`${url}/interaction/invitation?token=${'A'.repeat(43)}`);
      await check('invitation (invalid)');

      await page.goto(`${url}/interaction/no-such-interaction`);
      await check('error');

      await context.close();
      expect(checked).toHaveLength(18);
      expect(problems).toEqual([]);
    },
    TIMEOUT_MS,
  );

  it.each([
    ['en-US', 'en', 'Sign in'],
    ['de-DE', 'de', 'Anmelden'],
  ])(
    'has no serious or critical violation on the pages that say e-mail is off, in %s',
    async (locale, lang, signInLabel) => {
      const off = await startTestServer({
        env: { NODE_ENV: 'production', REGISTRATION: 'open', REQUIRE_VERIFIED_EMAIL: 'true', SMTP_URL: '' },
      });
      try {
        const unverified = await createUser(off.t);
        await off.t.stores.durable.users.update(unverified.user.id, { email_verified: false });
        const spa = await registerClient(off.t, 'spa');
        const config = await discover(off.url, spa);
        const context = await browser.newContext({ locale, bypassCSP: true });
        context.setDefaultTimeout(15_000);
        const page = await context.newPage();
        const problems: string[] = [];
        const check = async (name: string, marker: string) => {
          await page.waitForLoadState('load');
          expect([name, await page.getAttribute('html', 'lang')]).toEqual([name, lang]);
          await page.locator(marker).waitFor();
          await page.addScriptTag({ content: AXE });
          const violations = (await page.evaluate(async () => {
            const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe;
            return (await axe.run()).violations;
          })) as Violation[];
          for (const v of violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
            problems.push(`${name}: ${v.id} (${v.impact}) ${v.help}`);
          }
        };
        const request = await authorizationRequest(config, spa.redirectUri, 'openid email');
        await page.goto(request.url.toString());
        await check('login (no password reset by e-mail)', '#reset-unavailable');
        const uid = /\/interaction\/([^/?#]+)/.exec(page.url())![1]!;
        await page.goto(`${off.url}/interaction/${uid}/register`);
        await check('register (e-mail off)', '#register-unavailable');
        await page.goto(`${off.url}/interaction/${uid}`);
        await page.locator('#email').fill(unverified.email);
        await page.locator('#password').fill(unverified.password);
        await page.getByRole('button', { name: signInLabel, exact: true }).click();
        await check('login (unconfirmed, e-mail off)', '#login-error');
        await context.close();
        expect(problems).toEqual([]);
      } finally {
        await off.close();
      }
    },
    TIMEOUT_MS,
  );

  it.each([
    ['en-US', 'en', 'Sign in', 'Verify'],
    ['de-DE', 'de', 'Anmelden', 'Bestätigen'],
  ])(
    'has no serious or critical violation on the two-step verification pages, in %s',
    async (locale, lang, signInLabel, verifyLabel) => {
      const { t, url } = server;
      const user = await createUser(t);
      const spa = await registerClient(t, 'spa');
      const config = await discover(url, spa);
      const context = await browser.newContext({ locale, bypassCSP: true });
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      const checked: string[] = [];
      const problems: string[] = [];
      const check = (name: string) => axeCheck(page, lang, name, { checked, problems });

      await page.goto(`${url}/account`);
      await page.locator('#email').fill(user.email);
      await page.locator('#password').fill(user.password);
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await page.waitForURL(`${url}/account`);
      await check('account (no second factor)');
      await page.goto(`${url}/account/mfa/totp`);
      await check('authenticator app set-up');
      const secret = ((await page.locator('#totp-secret').textContent()) ?? '').replace(/ /g, '');
      await page.locator('#code').fill('000000' === generateSync({ secret }) ? '111111' : '000000');
      await page.locator('form[action="/account/mfa/totp"] button[type=submit]').click();
      await check('authenticator app set-up (error)');
      await page.locator('#code').fill(generateSync({ secret }));
      await page.locator('form[action="/account/mfa/totp"] button[type=submit]').click();
      await page.locator('ul.codes').waitFor();
      await check('recovery codes');
      await page.goto(`${url}/account`);
      await check('account (with a second factor)');

      await context.clearCookies();
      const request = await authorizationRequest(config, spa.redirectUri, 'openid');
      await page.goto(request.url.toString());
      await page.locator('#email').fill(user.email);
      await page.locator('#password').fill(user.password);
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await page.locator('form[action$="/mfa/totp"]').waitFor();
      await check('second factor');
      await page.locator('#code').fill('000000');
      await page.getByRole('button', { name: verifyLabel, exact: true }).click();
      await page.locator('#mfa-error').waitFor();
      await check('second factor (error)');

      await context.close();
      expect(checked).toHaveLength(7);
      expect(problems).toEqual([]);
    },
    TIMEOUT_MS,
  );

  it.each([
    ['en-US', 'en', 'Sign in', 'Continue'],
    ['de-DE', 'de', 'Anmelden', 'Weiter'],
  ])(
    'has no serious or critical violation on the device pages, in %s',
    async (locale, lang, signInLabel, continueLabel) => {
      const { t, url } = server;
      const user = await createUser(t);
      const created = await t.services.clientService.create({
        kind: 'device',
        metadata: { client_name: 'Kitchen display' },
      });
      const clientId = created.client.client_id;
      const started = await fetch(`${url}/oauth/device/auth`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: clientId, scope: 'openid' }),
      });
      const device = (await started.json()) as { user_code: string };
      const context = await browser.newContext({ locale, bypassCSP: true });
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      const checked: string[] = [];
      const problems: string[] = [];
      const check = (name: string) => axeCheck(page, lang, name, { checked, problems });

      await page.goto(`${url}/device`);
      await check('device code');
      await page.locator('#user_code').fill('BBBB-BBBB');
      await page.getByRole('button', { name: continueLabel, exact: true }).click();
      await page.locator('#device-error').waitFor();
      await check('device code (error)');
      await page.locator('#user_code').fill(device.user_code);
      await page.getByRole('button', { name: continueLabel, exact: true }).click();
      await page.locator('.user-code').waitFor();
      await check('device confirmation');
      await page.getByRole('button', { name: continueLabel, exact: true }).click();
      await page.locator('#email').fill(user.email);
      await page.locator('#password').fill(user.password);
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await page.locator('form[action$="/consent"]').waitFor();
      await page.locator('form[action$="/consent"] button[value=approve]').click();
      await page.locator('[role=status]').waitFor();
      await check('device connected');

      await context.close();
      expect(checked).toHaveLength(4);
      expect(problems).toEqual([]);
    },
    TIMEOUT_MS,
  );

  it('has the same strings in every language', () => {
    const dir = new URL('../../views/locales/', import.meta.url);
    const en = Object.keys(JSON.parse(readFileSync(new URL('en.json', dir), 'utf8'))).sort();
    const de = Object.keys(JSON.parse(readFileSync(new URL('de.json', dir), 'utf8'))).sort();
    expect(de).toEqual(en);
  });
});
