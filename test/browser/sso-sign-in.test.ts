/**
 * Single sign-on in Debian's Chromium: a client's authorization request → our sign-in page (with
 * the company-account hint) → an e-mail of the connection's domain → the upstream OpenID provider's
 * own sign-in and consent pages (a real oidc-provider, test/sso/upstream-oidc.ts) → back to us →
 * the client's callback with a code → our ID token with amr `fed`, `idp` and the mapped claims. The
 * sign-in page with the hint and the refusal page are checked with axe-core in English and German.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import * as oidc from 'openid-client';
import { chromium, type Browser, type Page } from 'playwright-core';

import { adminApi, randomTag } from '../helpers/admin-api.js';
import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { authorizationRequest, discover } from '../helpers/relying-party.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { startUpstream, type Upstream } from '../sso/upstream-oidc.js';

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
}

async function seriousViolations(page: Page): Promise<string[]> {
  await page.waitForLoadState('load');
  await page.addScriptTag({ content: AXE });
  const violations = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe;
    return (await axe.run()).violations;
  })) as Violation[];
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
}

/** Submits the upstream's login form, then its consent form when it shows one (it may not). */
async function upstreamConsent(page: Page): Promise<void> {
  await page.locator('input[name=prompt][value=login] ~ button[type=submit]').click();
  const next = page.locator('input[name=prompt][value=consent], form[action$="/consent"], #page-heading');
  await next.first().waitFor({ state: 'attached' });
  const consent = page.locator('form:has(input[name=prompt][value=consent]) button[type=submit]');
  if ((await consent.count()) > 0) await consent.first().click();
}

describeWithChromium('single sign-on in Chromium', () => {
  let browser: Browser;
  let server: TestServer;
  let upstream: Upstream;
  let spa: TestClient;
  let config: oidc.Configuration;
  const domain = `chromium-${randomTag()}.example`;
  const closedDomain = `chromium-closed-${randomTag()}.example`;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
    server = await startTestServer({ env: { SSO_ALLOW_PRIVATE_NETWORKS: 'true' } });
    const api = await adminApi(server.t);
    spa = await registerClient(server.t, 'spa');
    config = await discover(server.url, spa);
    const port = await freePort();
    const common = {
      provider: 'okta',
      issuer: `http://127.0.0.1:${port}`,
      client_id: 'latchkey-at-upstream',
      client_secret: 'upstream-client-secret-0123456789',
    };
    const open = await api.post('/v2/sso/configure', { ...common, domain, auto_provision: true });
    const closed = await api.post('/v2/sso/configure', { ...common, domain: closedDomain });
    upstream = await startUpstream(
      port,
      [open.body.id, closed.body.id].map((id: string) => `${server.url}/sso/oidc/${id}/callback`),
    );
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await upstream?.close();
    await server?.close();
  }, TIMEOUT_MS);

  it(
    'signs in through the upstream provider and the client gets our ID token',
    async () => {
      const login = `chris-${randomTag()}`;
      const email = `${login}@${domain}`;
      upstream.accounts.set(login, { email, email_verified: true, given_name: 'Chris', family_name: 'Doe' });
      // With the page's own CSP (form-action): the typed address continues through a page that
      // moves on by itself rather than a redirect, which the browser would hold to form-action.
      const context = await browser.newContext({ locale: 'en-US' });
      context.setDefaultTimeout(15_000);
      await context.route(`${new URL(spa.redirectUri).origin}/**`, (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' }),
      );
      const page = await context.newPage();
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email profile');
      await page.goto(request.url.toString());
      await page.locator('#sso-hint').waitFor();
      await page.locator('#email').fill(email);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      // The upstream's own pages.
      await page.waitForURL(`${upstream.issuer}/**`);
      await page.locator('input[name=login]').fill(login);
      await page.locator('input[name=password]').fill('anything');
      await upstreamConsent(page);
      // Back at us: consent for the SPA, then its callback.
      await page.locator('form[action$="/consent"]').waitFor();
      await page.locator('form[action$="/consent"] button[type=submit]').first().click();
      await page.waitForURL(`${spa.redirectUri}**`);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url()), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
        idTokenExpected: true,
      });
      expect(tokens.claims()).toMatchObject({
        email,
        email_verified: true,
        given_name: 'Chris',
        family_name: 'Doe',
        amr: ['fed'],
        idp: expect.stringMatching(/^sso_/),
      });
      await context.close();
    },
    TIMEOUT_MS,
  );

  it.each([
    ['en-US', 'en', 'Sign in'],
    ['de-DE', 'de', 'Anmelden'],
  ])(
    'the sign-in page with the hint and the refusal page have no serious violation, in %s',
    async (locale, lang, signInLabel) => {
      const login = `dana-${randomTag()}`;
      const email = `${login}@${closedDomain}`;
      upstream.accounts.set(login, { email, email_verified: true });
      const context = await browser.newContext({ locale, bypassCSP: true });
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      const request = await authorizationRequest(config, spa.redirectUri, 'openid');
      await page.goto(request.url.toString());
      await page.locator('#sso-hint').waitFor();
      expect(await page.getAttribute('html', 'lang')).toBe(lang);
      expect(await seriousViolations(page)).toEqual([]);
      await page.locator('#email').fill(email);
      await page.getByRole('button', { name: signInLabel, exact: true }).click();
      await page.waitForURL(`${upstream.issuer}/**`);
      await page.locator('input[name=login]').fill(login);
      await page.locator('input[name=password]').fill('anything');
      await page.locator('button[type=submit]').first().click();
      await page.waitForURL(
        (u) => u.toString().startsWith(`${server.url}/sso/`) || u.toString().includes('/interaction/'),
      );
      if (page.url().startsWith(upstream.issuer)) await page.locator('button[type=submit]').first().click();
      await page.waitForURL(`${server.url}/sso/**`);
      await page.locator('#page-heading').waitFor();
      expect(await page.getAttribute('html', 'lang')).toBe(lang);
      expect(await page.textContent('body')).toContain('not_provisioned');
      expect(await seriousViolations(page)).toEqual([]);
      await context.close();
    },
    TIMEOUT_MS,
  );
});
