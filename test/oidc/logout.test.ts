/**
 * RP-initiated logout: the relying party sends the browser to the end-session endpoint with an ID
 * token hint, the user confirms on our page, and the browser lands on the registered
 * post-logout redirect URI; the next authorization request asks for the password again.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { createUser, registerClient } from '../helpers/fixtures.js';
import { authorizationRequest, codeFlow, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe.each(availableBackends())(
  'RP-initiated logout with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    /** An authenticated client that introspects. */
    let gateway: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      gateway = await discover(server.url, await registerClient(server.t, 'service'));
    });
    afterAll(() => server.close());

    it('GET /oauth/logout confirms on a page, then redirects to post_logout_redirect_uri and ends the session', async () => {
      const user = await createUser(server.t);
      // First-party, so while signed in an authorization request returns at once without any page.
      const client = await registerClient(server.t, 'spa', { firstParty: true });
      const postLogout = client.redirectUri.replace(/callback$/, 'signed-out');
      const config = await discover(server.url, client);
      const { tokens, browser } = await codeFlow(config, client, user, { scope: 'openid' });

      const signedIn = await authorizationRequest(config, client.redirectUri, 'openid');
      expect((await browser.go(signedIn.url.toString())).status).toBe(0);

      const state = oidc.randomState();
      const endSession = oidc.buildEndSessionUrl(config, {
        id_token_hint: tokens.id_token!,
        post_logout_redirect_uri: postLogout,
        state,
      });
      expect(endSession.toString().startsWith(`${server.url}/oauth/logout?`)).toBe(true);

      const confirm = await browser.go(endSession.toString());
      expect(confirm.status).toBe(200);
      expect(confirm.headers.get('cache-control')).toBe('no-store');
      expect(confirm.html).toContain('id="op.logoutForm"');
      // The page's form may lead to the post-logout URI (CSP form-action covers the redirect).
      expect(confirm.headers.get('content-security-policy')).toContain(
        `form-action 'self' ${new URL(postLogout).origin}`,
      );

      const done = await submit(browser, confirm, { logout: 'yes' });
      expect(done.status).toBe(0);
      const landed = new URL(done.url);
      expect(`${landed.origin}${landed.pathname}`).toBe(postLogout);
      expect(landed.searchParams.get('state')).toBe(state);
      // Signing out ends the grants made in the session, so their tokens stop working.
      expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });

      const afterwards = await authorizationRequest(config, client.redirectUri, 'openid');
      expect(isLoginPage(await browser.go(afterwards.url.toString()))).toBe(true);

      // The sign-out is an event, with the start of the session it ended (activity, analytics).
      const logouts = async () =>
        (
          await server.t.stores.durable.outbox.listEvents({ types: ['user.logout'], limit: 1000 })
        ).items.filter((e) => (e.data as { user: { id: string } }).user.id === user.user.id);
      for (let i = 0; i < 100 && (await logouts()).length === 0; i += 1)
        await new Promise((r) => setTimeout(r, 20));
      const [logout] = await logouts();
      expect(logout!.data).toMatchObject({ user: { id: user.user.id }, signed_in_at: expect.any(String) });
      expect(Date.parse((logout!.data as { signed_in_at: string }).signed_in_at)).toBeLessThanOrEqual(
        logout!.timestamp.getTime(),
      );
    });

    it('without a post_logout_redirect_uri ends on our signed-out page', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa');
      const config = await discover(server.url, client);
      const { tokens, browser } = await codeFlow(config, client, user, { scope: 'openid' });
      const confirm = await browser.go(
        oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! }).toString(),
      );
      const done = await submit(browser, confirm, { logout: 'yes' });
      expect(done.status).toBe(200);
      expect(done.html).toContain('You have signed out.');
    });

    it('refuses an unregistered post_logout_redirect_uri without redirecting', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa');
      const config = await discover(server.url, client);
      const { tokens, browser } = await codeFlow(config, client, user, { scope: 'openid' });
      const page = await browser.go(
        oidc
          .buildEndSessionUrl(config, {
            id_token_hint: tokens.id_token!,
            post_logout_redirect_uri: 'https://evil.example.com/signed-out',
          })
          .toString(),
      );
      expect(page.status).toBe(400);
      expect(page.html).toContain('<code>invalid_request</code>');
      expect(page.html).toContain('post_logout_redirect_uri not registered');
    });

    it('answers an unregistered post_logout_redirect_uri with the HTML error page whatever the request accepts', async () => {
      const client = await registerClient(server.t, 'web');
      const url = new URL('/oauth/logout', server.url);
      url.search = new URLSearchParams({
        client_id: client.clientId,
        post_logout_redirect_uri: 'https://evil.example.com/signed-out',
      }).toString();
      // A browser-like Accept, curl's */*, none at all, and even one that prefers JSON.
      for (const accept of [
        'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
        '*/*',
        undefined,
        'application/json',
      ]) {
        const res = await fetch(url, { headers: accept ? { accept } : {}, redirect: 'manual' });
        expect(res.status).toBe(400);
        expect(res.headers.get('content-type')).toMatch(/^text\/html/);
        const html = await res.text();
        expect(html).toContain('<h1 id="page-heading">Something went wrong</h1>');
        expect(html).toContain('<p>post_logout_redirect_uri not registered</p>');
        expect(html).toContain('<code>invalid_request</code>');
      }
    });

    it('keeps offline_access grants: their refresh tokens outlive the session by design', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa');
      const config = await discover(server.url, client);
      const { tokens, browser } = await codeFlow(config, client, user, {
        scope: 'openid offline_access',
        params: { prompt: 'consent' },
      });
      const confirm = await browser.go(
        oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! }).toString(),
      );
      await submit(browser, confirm, { logout: 'yes' });
      expect((await oidc.tokenIntrospection(gateway, tokens.refresh_token!)).active).toBe(true);
      expect((await oidc.refreshTokenGrant(config, tokens.refresh_token!)).access_token).toEqual(
        expect.any(String),
      );
    });

    it('declining signs out of the application only: its tokens are revoked, the session stays', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa', { firstParty: true });
      const config = await discover(server.url, client);
      const { tokens, browser } = await codeFlow(config, client, user, { scope: 'openid' });
      const confirm = await browser.go(
        oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! }).toString(),
      );
      // The "No" button submits the same form without logout=yes.
      const done = await submit(browser, confirm, {});
      expect(done.html).toContain('You have signed out of Test SPA.');
      expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
      const again = await authorizationRequest(config, client.redirectUri, 'openid');
      expect((await browser.go(again.url.toString())).status).toBe(0);
    });
  },
);
