/**
 * Suspending, deactivating or deleting a user through /v2 ends what they hold on the OAuth side:
 * their browser session, grants, refresh and access tokens are deleted at once (not only hidden
 * while the user is inactive), so restoring or reactivating the user brings none of them back. The
 * tokens come from a real sign-in (code + PKCE with offline_access) through openid-client.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { adminClient, errorOf, type AdminClient } from '../helpers/admin-client.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import type { FormBrowser } from '../helpers/form-browser.js';
import {
  authorizationRequest,
  codeFlow,
  discover,
  isLoginPage,
  oauthFailure,
  submit,
  type Tokens,
} from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const INVALID_GRANT = { status: 400, error: 'invalid_grant', error_description: 'grant request is invalid' };
const INVALID_TOKEN = { status: 401, error: 'invalid_token', error_description: 'invalid token provided' };
const LOGIN_REQUIRED = {
  status: 0,
  error: 'login_required',
  error_description: 'End-User authentication is required',
};
/** offline_access is only honoured together with prompt=consent (OpenID Connect Core §11). */
const OFFLINE = { scope: 'openid email offline_access', params: { prompt: 'consent' } };
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

interface SignedIn {
  user: Awaited<ReturnType<typeof createUser>>;
  tokens: Tokens;
  browser: FormBrowser;
  grantId: string;
  sessionId: string;
}

describe.each(availableBackends())(
  'user lifecycle revocation with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    /** An API gateway's client, authenticated, used to introspect. */
    let gateway: oidc.Configuration;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      admin = await adminClient(server);
      gateway = await discover(server.url, await registerClient(server.t, 'service'));
      spa = await registerClient(server.t, 'spa');
      spaConfig = await discover(server.url, spa);
    });
    afterAll(() => server.close());

    const provider = () => server.t.services.provider.current;

    /** A user signed in through the browser with an access token, a refresh token and a session. */
    async function signIn(): Promise<SignedIn> {
      const user = await createUser(server.t);
      const { tokens, browser } = await codeFlow(spaConfig, spa, user, OFFLINE);
      expect(tokens.refresh_token).toEqual(expect.any(String));
      const access = await provider().AccessToken.find(tokens.access_token);
      const sessionId = /(?:^|; )_lk_session=([^;]+)/.exec(browser.cookieHeader())?.[1];
      const session = sessionId ? await provider().Session.find(sessionId) : undefined;
      expect(session?.accountId).toBe(user.user.id);
      expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);
      return { user, tokens, browser, grantId: access!.grantId!, sessionId: sessionId! };
    }

    /** A silent authorization request from the user's browser; the OAuth error it ends with, if any. */
    async function silentSignIn(browser: FormBrowser) {
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', { prompt: 'none' });
      const page = await browser.go(request.url.toString());
      expect(page.status).toBe(0);
      return oauthFailure(
        oidc.authorizationCodeGrant(spaConfig, new URL(page.url), {
          pkceCodeVerifier: request.verifier,
          expectedState: request.state,
          expectedNonce: request.nonce,
        }),
      );
    }

    /** Everything the sign-in produced is refused, and gone from the artifact store. */
    async function expectRevoked(s: SignedIn) {
      expect(await oidc.tokenIntrospection(gateway, s.tokens.access_token)).toEqual({ active: false });
      expect(await oidc.tokenIntrospection(gateway, s.tokens.refresh_token!)).toEqual({ active: false });
      expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, s.tokens.refresh_token!))).toEqual(
        INVALID_GRANT,
      );
      expect(
        await oauthFailure(oidc.fetchUserInfo(spaConfig, s.tokens.access_token, s.user.user.id)),
      ).toEqual(INVALID_TOKEN);
      expect(await silentSignIn(s.browser)).toEqual(LOGIN_REQUIRED);

      // Deleted, not merely refused while the user is inactive.
      expect(await provider().AccessToken.find(s.tokens.access_token)).toBeUndefined();
      expect(await provider().RefreshToken.find(s.tokens.refresh_token!)).toBeUndefined();
      expect(await provider().Grant.find(s.grantId)).toBeUndefined();
      expect(await provider().Session.find(s.sessionId)).toBeUndefined();
      expect(await server.t.stores.artifacts.revokeByAccountId(s.user.user.id)).toBe(0);
    }

    /** The old tokens stay dead once the user may sign in again; a new sign-in works. */
    async function expectNothingComesBack(s: SignedIn) {
      expect(await oidc.tokenIntrospection(gateway, s.tokens.access_token)).toEqual({ active: false });
      expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, s.tokens.refresh_token!))).toEqual(
        INVALID_GRANT,
      );
      expect(
        await oauthFailure(oidc.fetchUserInfo(spaConfig, s.tokens.access_token, s.user.user.id)),
      ).toEqual(INVALID_TOKEN);
      const again = await codeFlow(spaConfig, spa, s.user, { scope: 'openid' });
      expect(again.tokens.claims()?.sub).toBe(s.user.user.id);
    }

    it.each(['suspended', 'inactive'] as const)(
      'PUT /v2/users/{id} { status: "%s" } revokes the user’s session, grants and tokens at once',
      async (status) => {
        const s = await signIn();
        const bystander = await signIn();

        const res = await admin.put(`/v2/users/${s.user.user.id}`, { status });
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ id: s.user.user.id, status });
        await expectRevoked(s);

        // Nobody else is affected.
        expect((await oidc.tokenIntrospection(gateway, bystander.tokens.access_token)).active).toBe(true);
        const refreshed = await oidc.refreshTokenGrant(spaConfig, bystander.tokens.refresh_token!);
        expect(refreshed.access_token).toEqual(expect.any(String));

        // Reactivated, the user signs in afresh; the revoked tokens do not come back.
        const back = await admin.put(`/v2/users/${s.user.user.id}`, { status: 'active' });
        expect(back.status).toBe(200);
        await expectNothingComesBack(s);
      },
    );

    it('a suspended user cannot sign in again: the right password gets 403 and the inactive message', async () => {
      const s = await signIn();
      expect((await admin.put(`/v2/users/${s.user.user.id}`, { status: 'suspended' })).status).toBe(200);
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid');
      const login = await s.browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      const refused = await submit(s.browser, login, { email: s.user.email, password: s.user.password });
      expect(refused.status).toBe(403);
      expect(refused.html).toContain('This account cannot sign in. Contact your administrator.');
      expect(await server.t.stores.artifacts.revokeByAccountId(s.user.user.id)).toBe(0);
    });

    it('PUT /v2/users/{id} changing only a name keeps the user’s tokens and session', async () => {
      const s = await signIn();
      const res = await admin.put(`/v2/users/${s.user.user.id}`, { first_name: 'Renamed' });
      expect(res.status).toBe(200);
      expect((await oidc.tokenIntrospection(gateway, s.tokens.access_token)).active).toBe(true);
      expect(await provider().Session.find(s.sessionId)).toBeDefined();
      const refreshed = await oidc.refreshTokenGrant(spaConfig, s.tokens.refresh_token!);
      expect(refreshed.access_token).toEqual(expect.any(String));
    });

    it('DELETE /v2/users/{id}?soft_delete=true revokes everything, and a restore brings none of it back', async () => {
      const s = await signIn();
      const res = await admin.del(`/v2/users/${s.user.user.id}?soft_delete=true`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        message: 'User deleted (restorable)',
        deleted_at: expect.stringMatching(TIMESTAMP),
        soft_delete: true,
      });
      await expectRevoked(s);
      expect((await admin.get(`/v2/users/${s.user.user.id}`)).status).toBe(404);

      const restored = await admin.post(`/v2/users/${s.user.user.id}/restore`);
      expect(restored.status).toBe(200);
      expect(restored.body).toMatchObject({ id: s.user.user.id, status: 'active' });
      await expectNothingComesBack(s);
    });

    it('DELETE /v2/users/{id} erases the user and revokes everything', async () => {
      const s = await signIn();
      const res = await admin.del(`/v2/users/${s.user.user.id}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        message: 'User erased',
        deleted_at: expect.stringMatching(TIMESTAMP),
        soft_delete: false,
      });
      await expectRevoked(s);
      const gone = await admin.get(`/v2/users/${s.user.user.id}`);
      expect(gone.status).toBe(404);
      expect(errorOf(gone.body).code).toBe('USER_NOT_FOUND');
      expect(await server.t.stores.durable.users.findById(s.user.user.id, 'include')).toBeNull();
    });

    it('DELETE /v2/users/{id} of a soft-deleted user erases it; the tokens stay revoked', async () => {
      const s = await signIn();
      expect((await admin.del(`/v2/users/${s.user.user.id}?soft_delete=true`)).status).toBe(200);
      const res = await admin.del(`/v2/users/${s.user.user.id}`);
      expect(res.status).toBe(200);
      expect(res.body.soft_delete).toBe(false);
      await expectRevoked(s);
      expect(await server.t.stores.durable.users.findById(s.user.user.id, 'include')).toBeNull();
    });
  },
);
