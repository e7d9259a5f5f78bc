/**
 * Requests the server must refuse, each with the exact OAuth error a client library sees: PKCE
 * mistakes, code replay, redirect mismatches, bad client credentials, expired and revoked tokens,
 * refused consent, forged forms, and users who may no longer sign in.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { withClockShiftedBy } from '../helpers/clock.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import {
  authorizationRequest,
  codeFlow,
  discover,
  isConsentPage,
  isLoginPage,
  oauthFailure,
  signIn,
  submit,
} from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const INVALID_GRANT = { status: 400, error: 'invalid_grant', error_description: 'grant request is invalid' };
const INVALID_TOKEN = { status: 401, error: 'invalid_token', error_description: 'invalid token provided' };
const PKCE_REQUIRED = {
  status: 0,
  error: 'invalid_request',
  error_description: 'Authorization Server policy requires PKCE to be used for this request',
};

/** An error page of ours: rendered HTML, not cached, and no redirect anywhere. */
function expectErrorPage(page: Page, status: number, error: string, description: string): void {
  expect(page.status).toBe(status);
  expect(page.headers.get('location')).toBeNull();
  expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(page.headers.get('cache-control')).toBe('no-store');
  expect(page.html).toContain(`<code>${error}</code>`);
  expect(page.html).toContain(description.replace(/'/g, '&#39;'));
}

describe.each(availableBackends())(
  'refusals with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let gateway: oidc.Configuration;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      gateway = await discover(server.url, await registerClient(server.t, 'service'));
      spa = await registerClient(server.t, 'spa');
      spaConfig = await discover(server.url, spa);
    });
    afterAll(() => server.close());

    /** Signs in and returns the callback URL with a fresh code, plus what the exchange needs. */
    async function authorize(
      config: oidc.Configuration,
      client: TestClient,
      params: Record<string, string | undefined> = {},
      scope = 'openid',
    ) {
      const user = await createUser(server.t);
      const request = await authorizationRequest(config, client.redirectUri, scope, params);
      const page = await signIn(new FormBrowser(server.url), request.url, user);
      expect(page.status).toBe(0);
      return { user, request, callback: new URL(page.url) };
    }

    describe('PKCE', () => {
      it('POST /oauth/token refuses a wrong code_verifier with invalid_grant', async () => {
        const { request, callback } = await authorize(spaConfig, spa);
        const wrong = oidc.randomPKCECodeVerifier();
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(spaConfig, callback, {
              pkceCodeVerifier: wrong,
              expectedState: request.state,
              expectedNonce: request.nonce,
            }),
          ),
        ).toEqual(INVALID_GRANT);
      });

      it('GET /oauth/authorize refuses a public client without PKCE with invalid_request on the redirect URI', async () => {
        const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', {
          code_challenge: undefined,
          code_challenge_method: undefined,
        });
        const page = await new FormBrowser(server.url).go(request.url.toString());
        // Refused before any login: the browser goes straight back to the (registered) redirect URI.
        expect(page.status).toBe(0);
        const callback = new URL(page.url);
        expect(`${callback.origin}${callback.pathname}`).toBe(spa.redirectUri);
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(spaConfig, callback, {
              pkceCodeVerifier: request.verifier,
              expectedState: request.state,
            }),
          ),
        ).toEqual(PKCE_REQUIRED);
      });

      it('GET /oauth/authorize requires PKCE from confidential clients too', async () => {
        const web = await registerClient(server.t, 'web');
        const config = await discover(server.url, web);
        const request = await authorizationRequest(config, web.redirectUri, 'openid', {
          code_challenge: undefined,
          code_challenge_method: undefined,
        });
        const page = await new FormBrowser(server.url).go(request.url.toString());
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(config, new URL(page.url), { expectedState: request.state }),
          ),
        ).toEqual(PKCE_REQUIRED);
      });

      it('GET /oauth/authorize refuses code_challenge_method=plain with invalid_request', async () => {
        const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', {
          code_challenge_method: 'plain',
        });
        const page = await new FormBrowser(server.url).go(request.url.toString());
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(spaConfig, new URL(page.url), { expectedState: request.state }),
          ),
        ).toEqual({
          status: 0,
          error: 'invalid_request',
          error_description: 'not supported value of code_challenge_method',
        });
      });
    });

    it('POST /oauth/token refuses a replayed code with invalid_grant and revokes the tokens issued from it', async () => {
      const { user, request, callback } = await authorize(
        spaConfig,
        spa,
        { prompt: 'consent' },
        'openid offline_access',
      );
      const checks = {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      };
      const tokens = await oidc.authorizationCodeGrant(spaConfig, callback, checks);
      expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);

      expect(await oauthFailure(oidc.authorizationCodeGrant(spaConfig, callback, checks))).toEqual(
        INVALID_GRANT,
      );
      // RFC 6749 §4.1.2: a code used twice means it leaked; what it bought is withdrawn.
      expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
      expect(await oidc.tokenIntrospection(gateway, tokens.refresh_token!)).toEqual({ active: false });
      expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!))).toEqual(
        INVALID_GRANT,
      );
      expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id))).toEqual(
        INVALID_TOKEN,
      );
    });

    it('POST /oauth/token refuses an expired authorization code with invalid_grant', async () => {
      const { request, callback } = await authorize(spaConfig, spa);
      const late = server.t.config.authorizationCodeTtlS + 1;
      const failure = await withClockShiftedBy(late, () =>
        oauthFailure(
          oidc.authorizationCodeGrant(spaConfig, callback, {
            pkceCodeVerifier: request.verifier,
            expectedState: request.state,
            expectedNonce: request.nonce,
          }),
        ),
      );
      expect(failure).toEqual(INVALID_GRANT);
    });

    describe('redirect_uri', () => {
      it.each([
        ['an unregistered host', () => 'https://evil.example.com/callback'],
        ['an extra query parameter', () => `${spa.redirectUri}?next=https://evil.example.com`],
        ['a longer path', () => `${spa.redirectUri}/more`],
        ['http instead of https', () => spa.redirectUri.replace(/^https:/, 'http:')],
      ])(
        'GET /oauth/authorize shows an error page, and does not redirect, for %s',
        async (_what, redirectUri) => {
          const request = await authorizationRequest(spaConfig, redirectUri(), 'openid');
          const page = await new FormBrowser(server.url).go(request.url.toString());
          expectErrorPage(
            page,
            400,
            'invalid_redirect_uri',
            "redirect_uri did not match any of the client's registered redirect_uris",
          );
        },
      );

      it('POST /oauth/token refuses a code with a redirect_uri other than the one it was issued for', async () => {
        const native = await registerClient(server.t, 'native');
        const config = await discover(server.url, native);
        const user = await createUser(server.t);
        const request = await authorizationRequest(config, 'http://127.0.0.1:50001/callback', 'openid');
        const page = await signIn(new FormBrowser(server.url), request.url, user);
        // Same code, presented as if it had arrived on another (also acceptable) loopback port.
        const moved = new URL(page.url);
        moved.port = '50002';
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(config, moved, {
              pkceCodeVerifier: request.verifier,
              expectedState: request.state,
              expectedNonce: request.nonce,
            }),
          ),
        ).toEqual(INVALID_GRANT);
      });
    });

    it('POST /oauth/token refuses a wrong client secret with invalid_client', async () => {
      const web = await registerClient(server.t, 'web');
      const right = await discover(server.url, web);
      const { request, callback } = await authorize(right, web);
      const wrong = await discover(server.url, web, 'client_secret_basic', 'not-the-secret');
      const checks = {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      };
      expect(await oauthFailure(oidc.authorizationCodeGrant(wrong, callback, checks))).toEqual({
        status: 401,
        error: 'invalid_client',
        error_description: 'client authentication failed',
      });
      const service = await registerClient(server.t, 'service');
      const wrongService = await discover(server.url, service, 'client_secret_post', 'not-the-secret');
      expect(await oauthFailure(oidc.clientCredentialsGrant(wrongService, { scope: 'user:read' }))).toEqual({
        status: 401,
        error: 'invalid_client',
        error_description: 'client authentication failed',
      });
    });

    it('an expired access token is refused by userinfo and reported inactive by introspection', async () => {
      const user = await createUser(server.t);
      const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid email' });
      expect((await oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id)).sub).toBe(user.user.id);
      // Past the lifetime and oidc-provider's 15-second clock tolerance for stored tokens.
      await withClockShiftedBy(server.t.config.accessTokenTtlS + 16, async () => {
        expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id))).toEqual(
          INVALID_TOKEN,
        );
        expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
      });
    });

    it('GET /oauth/userinfo refuses a revoked access token with invalid_token', async () => {
      const user = await createUser(server.t);
      const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
      await oidc.tokenRevocation(spaConfig, tokens.access_token);
      expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id))).toEqual(
        INVALID_TOKEN,
      );
      expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
    });

    it('GET /oauth/authorize refuses response_type=token (no implicit flow) on the redirect URI', async () => {
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', {
        response_type: 'token',
      });
      const page = await new FormBrowser(server.url).go(request.url.toString());
      expect(page.status).toBe(0);
      // The error is delivered the way a token response would have been: in the fragment.
      const callback = new URL(page.url);
      const params = new URLSearchParams(callback.hash.slice(1) || callback.search);
      expect(params.get('error')).toBe('unsupported_response_type');
      expect(params.get('error_description')).toBe('unsupported response_type requested');
    });

    it('a denied consent returns access_denied to the client', async () => {
      const user = await createUser(server.t);
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid email');
      const browser = new FormBrowser(server.url);
      const consent = await submit(browser, await browser.go(request.url.toString()), {
        email: user.email,
        password: user.password,
      });
      expect(isConsentPage(consent)).toBe(true);
      const back = await submit(browser, consent, { decision: 'deny' });
      expect(
        await oauthFailure(
          oidc.authorizationCodeGrant(spaConfig, new URL(back.url), {
            pkceCodeVerifier: request.verifier,
            expectedState: request.state,
          }),
        ),
      ).toEqual({
        status: 0,
        error: 'access_denied',
        error_description: 'End-User denied the authorization request',
      });
    });

    it('POST /interaction/:uid/login refuses a form without its CSRF token with 403', async () => {
      const user = await createUser(server.t);
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
      const browser = new FormBrowser(server.url);
      const login = await browser.go(request.url.toString());
      const form = FormBrowser.form(login.html);
      const forged = await browser.go(form.action, {
        form: { csrf: 'forged', email: user.email, password: user.password },
      });
      expect(forged.status).toBe(403);
      expect(forged.html).toContain('This form has expired');
      // The real form still works afterwards.
      expect(
        isConsentPage(await submit(browser, login, { email: user.email, password: user.password })),
      ).toBe(true);
    });

    describe('a user who may no longer sign in', () => {
      it.each(['suspended', 'inactive'] as const)(
        'POST /interaction/:uid/login refuses a %s user with the right password with 403',
        async (status) => {
          const user = await createUser(server.t, { status });
          const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
          const browser = new FormBrowser(server.url);
          const login = await browser.go(request.url.toString());
          const refused = await submit(browser, login, { email: user.email, password: user.password });
          expect(refused.status).toBe(403);
          // The login form again, with the reason: the password was right, so saying so is safe.
          expect(refused.html).toMatch(/action="\/interaction\/[^"]+\/login"/);
          expect(refused.html).toContain('This account cannot sign in. Contact your administrator.');
        },
      );

      it('a suspended user’s existing tokens stop working: refresh, userinfo and introspection', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, {
          scope: 'openid email offline_access',
          params: { prompt: 'consent' },
        });
        expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);

        await server.t.stores.durable.users.update(user.user.id, { status: 'suspended' });

        expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!))).toEqual(
          INVALID_GRANT,
        );
        expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id))).toEqual(
          INVALID_TOKEN,
        );
        expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
        expect(await oidc.tokenIntrospection(gateway, tokens.refresh_token!)).toEqual({ active: false });
      });

      it('a suspended user’s browser session no longer signs them in silently', async () => {
        const user = await createUser(server.t);
        const client = await registerClient(server.t, 'spa', { firstParty: true });
        const config = await discover(server.url, client);
        const { browser } = await codeFlow(config, client, user, { scope: 'openid' });
        await server.t.stores.durable.users.update(user.user.id, { status: 'suspended' });

        // A silent request (prompt=none) gets login_required instead of a code.
        const silent = await authorizationRequest(config, client.redirectUri, 'openid', { prompt: 'none' });
        const silentPage = await browser.go(silent.url.toString());
        expect(silentPage.status).toBe(0);
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(config, new URL(silentPage.url), {
              pkceCodeVerifier: silent.verifier,
              expectedState: silent.state,
            }),
          ),
        ).toEqual({
          status: 0,
          error: 'login_required',
          error_description: 'End-User authentication is required',
        });

        // An interactive one asks for the password again, which the suspended user cannot get past.
        const again = await authorizationRequest(config, client.redirectUri, 'openid');
        const login = await browser.go(again.url.toString());
        expect(isLoginPage(login)).toBe(true);
        const refused = await submit(browser, login, { email: user.email, password: user.password });
        expect(refused.status).toBe(403);
      });
    });
  },
);
