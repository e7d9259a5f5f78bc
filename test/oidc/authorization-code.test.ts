/**
 * The authorization code flow with PKCE as each client kind runs it through openid-client: a public
 * SPA, a confidential web app (client_secret_basic and client_secret_post), a first-party app that
 * skips consent, and a native app with RFC 8252 redirects. The browser part posts our real login
 * and consent forms with their CSRF tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { createUser, registerClient } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { freePort } from '../helpers/processes.js';
import {
  authorizationRequest,
  codeFlow,
  discover,
  isConsentPage,
  isLoginPage,
  submit,
} from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe.each(availableBackends())(
  'authorization code + PKCE with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
    });
    afterAll(() => server.close());

    it('a public SPA client signs a user in through the login and consent forms and gets a verified ID token', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa');
      const config = await discover(server.url, client);
      // Check the ID token's signature against the JWKS too, not only its claims.
      oidc.enableNonRepudiationChecks(config);
      const request = await authorizationRequest(config, client.redirectUri, 'openid email');
      const browser = new FormBrowser(server.url);

      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      expect(login.headers.get('cache-control')).toBe('no-store');
      expect(FormBrowser.form(login.html).fields.csrf).toEqual(expect.any(String));

      const consent = await submit(browser, login, { email: user.email, password: user.password });
      expect(isConsentPage(consent)).toBe(true);
      expect(consent.html).toContain('Test SPA');

      const callback = await submit(browser, consent, { decision: 'approve' });
      expect(callback.status).toBe(0);
      const callbackUrl = new URL(callback.url);
      expect(`${callbackUrl.origin}${callbackUrl.pathname}`).toBe(client.redirectUri);
      expect(callbackUrl.searchParams.get('iss')).toBe(server.url);

      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      expect(tokens.token_type).toBe('bearer');
      expect(tokens.scope).toBe('openid email');
      expect(tokens.expires_in).toBe(server.t.config.accessTokenTtlS);
      // No offline_access asked for: no refresh token.
      expect(tokens.refresh_token).toBeUndefined();

      const claims = tokens.claims()!;
      expect(claims).toMatchObject({
        iss: server.url,
        aud: client.clientId,
        sub: user.user.id,
        nonce: request.nonce,
      });
      // The ID token carries the granted scope's claims as userinfo does.
      expect(claims).toMatchObject({ email: user.email, email_verified: true });
      const header = decodeProtectedHeader(tokens.id_token!);
      expect(header.alg).toBe('RS256');
      const jwks = (await (await fetch(`${server.url}/oauth/jwks`)).json()) as { keys: { kid: string }[] };
      expect(jwks.keys.map((k) => k.kid)).toContain(header.kid);

      const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
      expect(info).toEqual({ sub: user.user.id, email: user.email, email_verified: true });
    });

    it('a confidential web client authenticates at the token endpoint with client_secret_basic', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'web');
      const config = await discover(server.url, client, 'client_secret_basic');
      const { tokens } = await codeFlow(config, client, user, { scope: 'openid profile' });
      expect(tokens.claims()).toMatchObject({ aud: client.clientId, sub: user.user.id });
      const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
      expect(info.given_name).toBe('Test');
    });

    it('a confidential web client authenticates at the token endpoint with client_secret_post', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'web', {
        metadata: { token_endpoint_auth_method: 'client_secret_post' },
      });
      const config = await discover(server.url, client, 'client_secret_post');
      const { tokens } = await codeFlow(config, client, user, { scope: 'openid email' });
      expect(tokens.claims()).toMatchObject({ aud: client.clientId, sub: user.user.id });
      const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
      expect(info.email).toBe(user.email);
    });

    describe('GET /oauth/userinfo releases claims by granted scope', () => {
      let user: Awaited<ReturnType<typeof createUser>>;
      let config: oidc.Configuration;
      let client: Awaited<ReturnType<typeof registerClient>>;
      beforeAll(async () => {
        user = await createUser(server.t, { first_name: 'Ada' });
        const role = await server.t.stores.durable.roles.create({ name: `editor-${user.user.id}` });
        await server.t.stores.durable.roles.assign(user.user.id, role.id);
        client = await registerClient(server.t, 'spa');
        config = await discover(server.url, client);
      });

      async function userinfoFor(scope: string) {
        const { tokens } = await codeFlow(config, client, user, { scope });
        expect(tokens.scope).toBe(scope);
        return oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
      }

      it('openid: sub only', async () => {
        expect(await userinfoFor('openid')).toEqual({ sub: user.user.id });
      });

      it('profile: name, given_name, family_name, updated_at', async () => {
        const info = await userinfoFor('openid profile');
        const stored = await server.t.stores.durable.users.findById(user.user.id);
        expect(info).toEqual({
          sub: user.user.id,
          name: 'Ada User',
          given_name: 'Ada',
          family_name: 'User',
          updated_at: Math.floor(stored!.updated_at.getTime() / 1000),
        });
      });

      it('email: email, email_verified', async () => {
        expect(await userinfoFor('openid email')).toEqual({
          sub: user.user.id,
          email: user.email,
          email_verified: true,
        });
      });

      it('roles: the primary role and every linked role', async () => {
        expect(await userinfoFor('openid roles')).toEqual({
          sub: user.user.id,
          roles: ['user', `editor-${user.user.id}`],
        });
      });
    });

    it('remembers consent: a second request for the same scopes in the same browser skips login and consent', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa');
      const config = await discover(server.url, client);
      const first = await codeFlow(config, client, user, { scope: 'openid email' });

      const again = await authorizationRequest(config, client.redirectUri, 'openid email');
      const page = await first.browser.go(again.url.toString());
      expect(page.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
        pkceCodeVerifier: again.verifier,
        expectedState: again.state,
        expectedNonce: again.nonce,
      });
      expect(tokens.claims()?.sub).toBe(user.user.id);

      // Asking for more than was granted shows the consent page again, for the new scope only.
      const more = await authorizationRequest(config, client.redirectUri, 'openid email profile');
      const consent = await first.browser.go(more.url.toString());
      expect(isConsentPage(consent)).toBe(true);
      expect(consent.html).toContain('See your name');
      expect(consent.html).not.toContain('See your email address');
    });

    it('a first-party client goes from the login form straight back to the application, without a consent page', async () => {
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'spa', { firstParty: true });
      const config = await discover(server.url, client);
      const request = await authorizationRequest(config, client.redirectUri, 'openid profile email');
      const browser = new FormBrowser(server.url);
      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      const afterLogin = await submit(browser, login, { email: user.email, password: user.password });
      expect(afterLogin.status).toBe(0);
      expect(afterLogin.url.startsWith(`${client.redirectUri}?`)).toBe(true);
      // No consent interaction at all, not even one that approves itself: the sign-in form's post
      // resumes the authorization, which answers with the code.
      const interactions = browser.visited.filter((hop) => hop.includes('/interaction/'));
      expect(interactions).toEqual([
        expect.stringMatching(/^GET \/interaction\/[\w-]+$/),
        expect.stringMatching(/^POST \/interaction\/[\w-]+\/login$/),
      ]);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(afterLogin.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      expect(tokens.scope).toBe('openid profile email');
      const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
      expect(info.email).toBe(user.email);

      // Signed in, the same client asking for more (a silent prompt=none request, as SPAs renew) is
      // granted it without a page, and the token carries the new scope.
      const more = await authorizationRequest(config, client.redirectUri, 'openid profile email roles', {
        prompt: 'none',
      });
      const silent = await browser.go(more.url.toString());
      expect(silent.status).toBe(0);
      const moreTokens = await oidc.authorizationCodeGrant(config, new URL(silent.url), {
        pkceCodeVerifier: more.verifier,
        expectedState: more.state,
        expectedNonce: more.nonce,
      });
      expect(moreTokens.scope).toBe('openid profile email roles');
    });

    it("a first-party client is granted a registered API's scopes it asks for, without a consent page", async () => {
      const API = `https://first-party-${Date.now()}.example.com`;
      await server.t.stores.durable.resourceServers.create({
        identifier: API,
        name: 'Reports API',
        scopes: ['reports:read', 'reports:write'],
        access_token_format: 'jwt',
        access_token_ttl: 600,
      });
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'web', { firstParty: true });
      const config = await discover(server.url, client);
      const request = await authorizationRequest(config, client.redirectUri, 'openid reports:read', {
        resource: API,
      });
      const browser = new FormBrowser(server.url);
      const callback = await browser
        .go(request.url.toString())
        .then((login) => submit(browser, login, { email: user.email, password: user.password }));
      expect(callback.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(
        config,
        new URL(callback.url),
        { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce },
        { resource: API },
      );
      // Only what was asked for: reports:write exists on the API but was not requested.
      expect(tokens.scope).toBe('reports:read');
      const jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
      const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: server.url, audience: API });
      expect(payload.scope).toBe('reports:read');
    });

    it('a web client gets a JWT access token for a registered API by naming it as resource', async () => {
      const API = `https://orders-${Date.now()}.example.com`;
      await server.t.stores.durable.resourceServers.create({
        identifier: API,
        name: 'Orders API',
        scopes: ['orders:read'],
        access_token_format: 'jwt',
        access_token_ttl: 900,
      });
      const user = await createUser(server.t);
      const client = await registerClient(server.t, 'web');
      const config = await discover(server.url, client);
      const request = await authorizationRequest(config, client.redirectUri, 'openid orders:read', {
        resource: API,
      });
      const browser = new FormBrowser(server.url);
      const consent = await browser
        .go(request.url.toString())
        .then((login) => submit(browser, login, { email: user.email, password: user.password }));
      expect(isConsentPage(consent)).toBe(true);
      expect(consent.html).toContain(`Use ${API}: orders:read`);
      const callback = await submit(browser, consent, { decision: 'approve' });
      const tokens = await oidc.authorizationCodeGrant(
        config,
        new URL(callback.url),
        { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce },
        { resource: API },
      );
      expect(tokens.claims()?.sub).toBe(user.user.id);
      expect(tokens.scope).toBe('orders:read');
      // The API's lifetime applies to user tokens as it does to client-credentials tokens.
      expect(tokens.expires_in).toBe(900);
      const jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
      const { payload } = await jwtVerify(tokens.access_token, jwks, {
        issuer: server.url,
        audience: API,
        typ: 'at+jwt',
      });
      expect(payload).toMatchObject({ sub: user.user.id, client_id: client.clientId, scope: 'orders:read' });
      expect(payload.exp! - payload.iat!).toBe(900);
    });

    describe('a native app (RFC 8252)', () => {
      it('redirects to the registered loopback URI on whatever port the app listens on', async () => {
        const user = await createUser(server.t);
        const client = await registerClient(server.t, 'native');
        expect(client.redirectUri).toBe('http://127.0.0.1/callback');
        const config = await discover(server.url, client);
        // The port an app's temporary loopback listener happened to get.
        const loopback = `http://127.0.0.1:${await freePort()}/callback`;
        const { tokens, callback } = await codeFlow(config, { redirectUri: loopback }, user, {
          scope: 'openid email offline_access',
          params: { prompt: 'consent' },
        });
        expect(`${callback.origin}${callback.pathname}`).toBe(loopback);
        expect(tokens.claims()?.sub).toBe(user.user.id);
        expect(tokens.refresh_token).toEqual(expect.any(String));
        const info = await oidc.fetchUserInfo(config, tokens.access_token, user.user.id);
        expect(info.email).toBe(user.email);
      });

      it('redirects to its private-use URI scheme', async () => {
        const user = await createUser(server.t);
        const client = await registerClient(server.t, 'native');
        const config = await discover(server.url, client);
        const { tokens, callback } = await codeFlow(
          config,
          { redirectUri: 'com.example.app:/oauth2redirect' },
          user,
          { scope: 'openid' },
        );
        expect(callback.protocol).toBe('com.example.app:');
        expect(callback.pathname).toBe('/oauth2redirect');
        expect(tokens.claims()?.sub).toBe(user.user.id);
      });

      it('refuses a loopback redirect with another path, without redirecting', async () => {
        const client = await registerClient(server.t, 'native');
        const config = await discover(server.url, client);
        const request = await authorizationRequest(
          config,
          `http://127.0.0.1:${await freePort()}/elsewhere`,
          'openid',
        );
        const page = await new FormBrowser(server.url).go(request.url.toString());
        expect(page.status).toBe(400);
        expect(page.html).toContain('<code>invalid_redirect_uri</code>');
      });
    });
  },
);
