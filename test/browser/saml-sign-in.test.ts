/**
 * SAML single sign-on in Debian's Chromium, where the browser's cookie rules apply: a client's
 * authorization request → our sign-in page → an e-mail of the connection's domain → our signed
 * AuthnRequest at the IdP (samlify, test/sso/saml-idp.ts, on another site: `idp.test`) → the IdP's
 * self-submitting form posts the signed response cross-site to our ACS, which carries none of our
 * SameSite=Lax cookies → our 303 to the authorization in progress, a top-level GET that carries them
 * → consent → the client's callback with a code → our ID token with amr `fed` and `idp`.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';

import * as oidc from 'openid-client';
import type { Browser } from 'playwright-core';

import { adminApi, randomTag } from '../helpers/admin-api.js';
import { describeWithChromium, launchChromium } from '../helpers/chromium.js';
import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { freePort } from '../helpers/processes.js';
import { authorizationRequest, discover } from '../helpers/relying-party.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { startSamlIdp, type SamlIdp } from '../sso/saml-idp.js';

const TIMEOUT_MS = 120_000;

describeWithChromium('SAML single sign-on in Chromium', () => {
  let browser: Browser;
  let server: TestServer;
  let idp: SamlIdp;
  let spa: TestClient;
  let config: oidc.Configuration;
  let connection: string;
  let spMetadata: string;
  const domain = `chromium-saml-${randomTag()}.example`;

  beforeAll(async () => {
    browser = await launchChromium(['--host-resolver-rules=MAP idp.test 127.0.0.1']);
    server = await startTestServer();
    const api = await adminApi(server.t);
    spa = await registerClient(server.t, 'spa');
    config = await discover(server.url, spa);
    idp = await startSamlIdp(await freePort(), 'idp.test');
    // Inline metadata: our server never needs to resolve idp.test.
    const res = await api.post('/v2/sso/configure', {
      provider: 'saml',
      domain,
      metadata_xml: idp.metadataXml,
      auto_provision: true,
      attribute_mapping: { email: 'email', first_name: 'firstName', last_name: 'lastName' },
    });
    expect(res.status).toBe(201);
    connection = res.body.id as string;
    spMetadata = await (await fetch(`${server.url}/sso/saml/${connection}/metadata`)).text();
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await idp?.close();
    await server?.close();
  }, TIMEOUT_MS);

  it(
    'signs in through the IdP, across sites, and the client gets our ID token',
    async () => {
      const email = `sam-${randomTag()}@${domain}`;
      idp.signInAs(spMetadata, { nameId: email, attributes: { email, firstName: 'Sam', lastName: 'Vimes' } });
      // With the page's own CSP: the typed address continues through a page that moves on by
      // itself, since browsers hold the redirects after a form post to its form-action.
      const context = await browser.newContext({ locale: 'en-US' });
      context.setDefaultTimeout(15_000);
      await context.route(`${new URL(spa.redirectUri).origin}/**`, (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' }),
      );
      const posts: Promise<{ origin: string | undefined }>[] = [];
      context.on('request', (r) => {
        if (r.method() === 'POST' && r.url().endsWith(`/sso/saml/${connection}/acs`)) {
          posts.push(r.allHeaders().then((headers) => ({ cookie: headers.cookie, origin: headers.origin })));
        }
      });
      const page = await context.newPage();
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email profile');
      await page.goto(request.url.toString());
      await page.locator('#sso-hint').waitFor();
      await page.locator('#email').fill(email);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      // The IdP's page posts itself to our ACS; then our consent page for the SPA.
      await page.locator('form[action$="/consent"]').waitFor();
      expect(posts).toHaveLength(1);
      // The post came from the IdP's page on another site, and the flow went on from there: the
      // 303 after it is a top-level GET that carried the resume cookie (SameSite=Lax) back to us.
      const post = await posts[0]!;
      expect(post.origin).toBe(new URL(idp.entityId).origin);
      expect(new URL(idp.entityId).hostname).toBe('idp.test');
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
        given_name: 'Sam',
        family_name: 'Vimes',
        amr: ['fed'],
        idp: connection,
      });
      await context.close();
    },
    TIMEOUT_MS,
  );
});
