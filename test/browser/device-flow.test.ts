/**
 * The device authorization grant (RFC 8628) end to end with a client no one here wrote and a real
 * browser: openid-client plays the TV (initiateDeviceAuthorization, then pollDeviceAuthorizationGrant
 * with its own interval and slow_down handling) while Chromium, driven by playwright-core, is the
 * person's phone: it opens verification_uri_complete, confirms the code, signs in and consents on our
 * pages. A denied request ends the polling with access_denied. Runs once per backend combination.
 *
 * Needs Chromium at $CHROMIUM_PATH or /usr/bin/chromium; without one the suite is skipped with a line.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Browser } from 'playwright-core';
import * as oidc from 'openid-client';

import { describeWithChromium, launchChromium } from '../helpers/chromium.js';
import { createUser } from '../helpers/fixtures.js';
import { discover, oauthFailure } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const TIMEOUT_MS = 90_000;

describeWithChromium('device flow with openid-client and Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, TIMEOUT_MS);
  afterAll(() => browser?.close());

  describe.each(availableBackends())('durable=$durable, short-lived=$shortLived', (backends) => {
    let server: TestServer;
    let config: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer(backends);
      const created = await server.t.services.clientService.create({
        kind: 'device',
        metadata: { client_name: 'Living-room TV' },
      });
      config = await discover(server.url, { clientId: created.client.client_id }, 'none');
    }, TIMEOUT_MS);
    afterAll(() => server?.close());

    /** The person on their phone: the link from the TV, the code confirmed, sign-in, a decision. */
    async function onThePhone(link: string, user: { email: string; password: string }, decision: string) {
      const context = await browser.newContext();
      context.setDefaultTimeout(20_000);
      const page = await context.newPage();
      try {
        await page.goto(link);
        // verification_uri_complete carries the code: the page shows it for confirmation.
        await page.locator('.user-code').waitFor();
        await page.locator('button.primary').click();
        await page.locator('#email').fill(user.email);
        await page.locator('#password').fill(user.password);
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
        await page.locator('form[action$="/consent"]').waitFor();
        await page.locator(`form[action$="/consent"] button[value=${decision}]`).click();
        await page.waitForLoadState('load');
        return await page.locator('h1').innerText();
      } finally {
        await context.close();
      }
    }

    it(
      'the TV polls while the phone signs in and consents: tokens for the user, ID token checked by openid-client',
      async () => {
        const user = await createUser(server.t);
        const started = await oidc.initiateDeviceAuthorization(config, { scope: 'openid email' });
        expect(started.user_code).toMatch(/^[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}$/);
        expect(started.verification_uri).toBe(`${config.serverMetadata().issuer}/device`);
        expect(started.verification_uri_complete).toContain(encodeURIComponent(started.user_code));

        const polling = oidc.pollDeviceAuthorizationGrant(config, started);
        const shown = await onThePhone(started.verification_uri_complete!, user, 'approve');
        expect(shown).toBe('Device connected');
        const tokens = await polling;
        expect(tokens.claims()).toMatchObject({ sub: user.user.id, email: user.email });
        const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
        expect(info.email).toBe(user.email);
      },
      TIMEOUT_MS,
    );

    it(
      'a person who denies on the phone ends the polling with access_denied',
      async () => {
        const user = await createUser(server.t);
        const started = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
        const polling = oauthFailure(oidc.pollDeviceAuthorizationGrant(config, started));
        await onThePhone(started.verification_uri_complete!, user, 'deny');
        expect(await polling).toMatchObject({ error: 'access_denied' });
      },
      TIMEOUT_MS,
    );
  });
});
