/**
 * Passwords set or reset by an administrator, as the user meets them at sign-in: a forced reset
 * (POST /v2/users/{id}/password-reset) ends the user's sessions, and the next sign-in with the right
 * password leads to the "Choose a new password" page, which checks its CSRF token, the confirmation
 * and the password policy before the sign-in completes and the flag is cleared. PUT
 * /v2/users/{id}/password sets a policy-checked password, optionally forcing the same change.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { adminClient, errorOf, type AdminClient } from '../helpers/admin-client.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import {
  authorizationRequest,
  codeFlow,
  discover,
  isConsentPage,
  isLoginPage,
  oauthFailure,
  submit,
  type AuthorizationRequest,
} from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const NEW_PASSWORD = 'violet-anchor-glacier-91-trombone';
const OTHER_PASSWORD = 'harbour-lantern-quartz-47-meadow';
const LOGIN_REQUIRED = {
  status: 0,
  error: 'login_required',
  error_description: 'End-User authentication is required',
};

function isPasswordChangePage(page: Page): boolean {
  return page.status === 200 && /action="\/interaction\/[^"]+\/password"/.test(page.html);
}

/** The text of the page's alert, entities decoded. */
function alertOf(page: Page): string | undefined {
  const text = /<p class="alert" role="alert"[^>]*>([\s\S]*?)<\/p>/.exec(page.html)?.[1];
  return text
    ?.replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .trim();
}

describe.each(availableBackends())(
  'admin-set passwords at sign-in with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      admin = await adminClient(server);
      spa = await registerClient(server.t, 'spa');
      spaConfig = await discover(server.url, spa);
    });
    afterAll(() => server.close());

    /** A browser on a fresh login page of the SPA. */
    async function openLogin(browser = new FormBrowser(server.url)) {
      const request = await authorizationRequest(spaConfig, spa.redirectUri, 'openid email');
      const page = await browser.go(request.url.toString());
      expect(isLoginPage(page)).toBe(true);
      return { browser, page, request };
    }

    /** Signs in with `password`, expecting the "Choose a new password" page. */
    async function reachPasswordChange(user: { email: string }, password: string) {
      const { browser, page, request } = await openLogin();
      const change = await submit(browser, page, { email: user.email, password });
      expect(isPasswordChangePage(change)).toBe(true);
      return { browser, change, request };
    }

    /** From a page that leads on to the client (consent shown for this third-party SPA), the tokens. */
    async function finishAtClient(browser: FormBrowser, page: Page, request: AuthorizationRequest) {
      let next = page;
      if (isConsentPage(next)) next = await submit(browser, next, { decision: 'approve' });
      expect(next.status).toBe(0);
      const callback = new URL(next.url);
      expect(`${callback.origin}${callback.pathname}`).toBe(spa.redirectUri);
      expect(callback.searchParams.get('code')).toEqual(expect.any(String));
      return oidc.authorizationCodeGrant(spaConfig, callback, {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
    }

    /** Whether `password` signs the user in (true) or is refused as wrong (false). */
    async function signsIn(user: { email: string }, password: string): Promise<boolean> {
      const { browser, page } = await openLogin();
      const after = await submit(browser, page, { email: user.email, password });
      if (after.status === 401) {
        expect(after.html).toContain('The email or password is incorrect.');
        return false;
      }
      expect(isPasswordChangePage(after)).toBe(false);
      expect(after.status === 0 || isConsentPage(after)).toBe(true);
      return true;
    }

    const flagOf = async (id: string) =>
      (await server.t.stores.durable.users.findById(id))?.password_reset_required;

    describe('POST /v2/users/{id}/password-reset', () => {
      it('POST /v2/users/{id}/password-reset sets the flag and ends the user’s sessions and tokens', async () => {
        const user = await createUser(server.t);
        const gateway = await discover(server.url, await registerClient(server.t, 'service'));
        const { tokens, browser } = await codeFlow(spaConfig, spa, user, {
          scope: 'openid offline_access',
          params: { prompt: 'consent' },
        });

        const res = await admin.post(`/v2/users/${user.user.id}/password-reset`);
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ id: user.user.id, status: 'active', password_reset_required: true });
        expect(await flagOf(user.user.id)).toBe(true);

        expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
        expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!))).toMatchObject({
          error: 'invalid_grant',
        });
        const silent = await authorizationRequest(spaConfig, spa.redirectUri, 'openid', { prompt: 'none' });
        const page = await browser.go(silent.url.toString());
        expect(
          await oauthFailure(
            oidc.authorizationCodeGrant(spaConfig, new URL(page.url), {
              pkceCodeVerifier: silent.verifier,
              expectedState: silent.state,
            }),
          ),
        ).toEqual(LOGIN_REQUIRED);
        expect(await server.t.stores.artifacts.revokeByAccountId(user.user.id)).toBe(0);
      });

      it('POST /v2/users/{id}/password-reset answers 404 USER_NOT_FOUND for an unknown user', async () => {
        const res = await admin.post('/v2/users/usr_nope/password-reset');
        expect(res.status).toBe(404);
        expect(errorOf(res.body)).toEqual({ code: 'USER_NOT_FOUND', message: 'User not found' });
      });
    });

    describe('the "Choose a new password" page', () => {
      it('the right old password leads to the page: no-store, a strict CSP, a CSRF token, a pending cookie bound to the interaction', async () => {
        const user = await createUser(server.t);
        expect((await admin.post(`/v2/users/${user.user.id}/password-reset`)).status).toBe(200);

        // A wrong password is just a wrong password.
        const { browser: b0, page: login } = await openLogin();
        const wrong = await submit(b0, login, { email: user.email, password: 'not the password at all' });
        expect(wrong.status).toBe(401);
        expect(isPasswordChangePage(wrong)).toBe(false);

        const { change } = await reachPasswordChange(user, user.password);
        expect(change.html).toContain('<h1 id="page-heading">Choose a new password</h1>');
        expect(change.html).toContain('Your administrator asked you to choose a new password');
        expect(change.headers.get('cache-control')).toBe('no-store');
        expect(change.headers.get('content-type')).toBe('text/html; charset=utf-8');
        expect(change.headers.get('content-security-policy')).toBe(
          [
            "default-src 'none'",
            "style-src 'self'",
            "img-src 'self' data:",
            `form-action 'self' ${new URL(spa.redirectUri).origin}`,
            "frame-ancestors 'none'",
            "base-uri 'none'",
          ].join('; '),
        );
        const form = FormBrowser.form(change.html);
        const uid = /^\/interaction\/([^/]+)\/password$/.exec(form.action)?.[1];
        expect(uid).toEqual(expect.any(String));
        expect(form.fields.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
        const pending = change.headers.getSetCookie().find((c) => c.startsWith('_lk_pending='));
        expect(pending).toEqual(expect.stringContaining(`path=/interaction/${uid}`));
        expect(pending).toEqual(expect.stringContaining('httponly'));
        expect(pending).toEqual(expect.stringContaining('samesite=lax'));
        // Nothing is signed in yet.
        expect(await flagOf(user.user.id)).toBe(true);
      });

      it('POST /interaction/:uid/password refuses a missing or forged CSRF token with 403', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        const { browser, change } = await reachPasswordChange(user, user.password);
        const form = FormBrowser.form(change.html);
        for (const csrf of ['', 'forged-token-forged-token-forged-token-xyz']) {
          const res = await browser.go(form.action, {
            form: { csrf, password: NEW_PASSWORD, confirm: NEW_PASSWORD },
          });
          expect(res.status).toBe(403);
          expect(res.html).toContain('This form has expired');
        }
        expect(await flagOf(user.user.id)).toBe(true);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(false);
      });

      it('POST /interaction/:uid/password without a verified old password (no pending cookie) is refused', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        // Another browser, at the login page of its own interaction, posts straight to the change form.
        const { browser, page } = await openLogin();
        const { csrf } = FormBrowser.form(page.html).fields;
        const action = FormBrowser.form(page.html).action.replace(/\/login$/, '/password');
        const res = await browser.go(action, {
          form: { csrf: csrf!, password: NEW_PASSWORD, confirm: NEW_PASSWORD },
        });
        expect(res.status).toBe(400);
        expect(res.html).toContain('This sign-in page has expired');
        expect(await flagOf(user.user.id)).toBe(true);
      });

      it('POST /interaction/:uid/password with a different confirmation answers 400 and changes nothing', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        const { browser, change } = await reachPasswordChange(user, user.password);
        const res = await submit(browser, change, { password: NEW_PASSWORD, confirm: `${NEW_PASSWORD}x` });
        expect(res.status).toBe(400);
        expect(isPasswordChangePage({ ...res, status: 200 })).toBe(true);
        expect(alertOf(res)).toBe('The two passwords are not the same.');
        expect(res.headers.get('cache-control')).toBe('no-store');
        expect(await flagOf(user.user.id)).toBe(true);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(false);
      });

      it.each([
        ['too short', 'short', 'Use at least 12 characters'],
        [
          'a common password',
          'qwertyuiopasdf',
          'This is similar to a commonly used password. Add more words that are less common.',
        ],
        [
          'a repeated pattern',
          'passwordpassword',
          'Repeated character patterns like "abcabcabc" are easy to guess. Add more words that are less common. Avoid repeated words and characters.',
        ],
      ])(
        'POST /interaction/:uid/password refuses a weak password (%s) with 400 naming the problem',
        async (_name, weak, problem) => {
          const user = await createUser(server.t);
          await admin.post(`/v2/users/${user.user.id}/password-reset`);
          const { browser, change } = await reachPasswordChange(user, user.password);
          const res = await submit(browser, change, { password: weak, confirm: weak });
          expect(res.status).toBe(400);
          expect(isPasswordChangePage({ ...res, status: 200 })).toBe(true);
          expect(alertOf(res)).toBe(problem);
          expect(await flagOf(user.user.id)).toBe(true);

          // The page stays usable: a good password now completes the sign-in.
          const good = await submit(browser, res, { password: NEW_PASSWORD, confirm: NEW_PASSWORD });
          expect(isConsentPage(good) || good.status === 0).toBe(true);
          expect(await flagOf(user.user.id)).toBe(false);
        },
      );

      it('POST /interaction/:uid/password refuses the current password: a forced reset needs a new one', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        const { browser, change } = await reachPasswordChange(user, user.password);
        const res = await submit(browser, change, { password: user.password, confirm: user.password });
        expect(res.status).toBe(400);
        expect(alertOf(res)).toBe('Choose a password different from your current one.');
        expect(await flagOf(user.user.id)).toBe(true);
      });

      it('a good new password completes the sign-in (the code arrives at the client), clears the flag, and replaces the old password', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        const { browser, change, request } = await reachPasswordChange(user, user.password);
        const next = await submit(browser, change, { password: NEW_PASSWORD, confirm: NEW_PASSWORD });
        // The pending cookie is cleared once used.
        expect(browser.hasCookie('_lk_pending')).toBe(false);
        const tokens = await finishAtClient(browser, next, request);
        expect(tokens.claims()?.sub).toBe(user.user.id);
        const info = await oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id);
        expect(info.email).toBe(user.email);

        expect(await flagOf(user.user.id)).toBe(false);
        const stored = await server.t.stores.durable.users.findById(user.user.id);
        expect(stored?.login_count).toBe(1);
        expect(stored?.last_login).toBeInstanceOf(Date);

        expect(await signsIn(user, user.password)).toBe(false);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(true);

        // Signed in now, the same browser is signed in silently (no second password change).
        const silent = await authorizationRequest(spaConfig, spa.redirectUri, 'openid email', {
          prompt: 'none',
        });
        const again = await browser.go(silent.url.toString());
        expect((await finishAtClient(browser, again, silent)).claims()?.sub).toBe(user.user.id);
      });
    });

    describe('PUT /v2/users/{id}/password', () => {
      it('PUT /v2/users/{id}/password sets a policy-checked password: 204, the new one signs in, the old one not', async () => {
        const user = await createUser(server.t);
        const res = await admin.put(`/v2/users/${user.user.id}/password`, { password: NEW_PASSWORD });
        expect(res.status).toBe(204);
        expect(res.text).toBe('');
        expect(await flagOf(user.user.id)).toBe(false);
        expect(await signsIn(user, user.password)).toBe(false);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(true);
      });

      it('PUT /v2/users/{id}/password refuses a weak password with 422 BUSINESS_RULE_VIOLATION, never echoing it', async () => {
        const user = await createUser(server.t);
        const res = await admin.put(`/v2/users/${user.user.id}/password`, { password: 'short' });
        expect(res.status).toBe(422);
        expect(errorOf(res.body)).toEqual({
          code: 'BUSINESS_RULE_VIOLATION',
          message: 'The password does not meet the password policy',
          details: [{ field: 'password', issue: 'Use at least 12 characters' }],
        });
        expect(JSON.stringify(res.body)).not.toContain('"short"');
        const common = await admin.put(`/v2/users/${user.user.id}/password`, { password: 'qwertyuiopasdf' });
        expect(common.status).toBe(422);
        expect(errorOf(common.body).details).toEqual([
          {
            field: 'password',
            issue: 'This is similar to a commonly used password. Add more words that are less common.',
          },
        ]);
        expect(await signsIn(user, user.password)).toBe(true);
      });

      it('PUT /v2/users/{id}/password without a password answers 400 MISSING_REQUIRED_FIELD; unknown user 404', async () => {
        const user = await createUser(server.t);
        const missing = await admin.put(`/v2/users/${user.user.id}/password`, {});
        expect(missing.status).toBe(400);
        expect(errorOf(missing.body)).toEqual({
          code: 'MISSING_REQUIRED_FIELD',
          message: 'A required field is missing',
          details: [{ field: 'password', issue: 'Required' }],
        });
        const unknown = await admin.put('/v2/users/usr_nope/password', { password: NEW_PASSWORD });
        expect(unknown.status).toBe(404);
        expect(errorOf(unknown.body).code).toBe('USER_NOT_FOUND');
      });

      it('PUT /v2/users/{id}/password with require_reset: true makes the user choose another at next sign-in', async () => {
        const user = await createUser(server.t);
        const res = await admin.put(`/v2/users/${user.user.id}/password`, {
          password: NEW_PASSWORD,
          require_reset: true,
        });
        expect(res.status).toBe(204);
        expect(await flagOf(user.user.id)).toBe(true);

        const { browser, change, request } = await reachPasswordChange(user, NEW_PASSWORD);
        const next = await submit(browser, change, { password: OTHER_PASSWORD, confirm: OTHER_PASSWORD });
        const tokens = await finishAtClient(browser, next, request);
        expect(tokens.claims()?.sub).toBe(user.user.id);
        expect(await flagOf(user.user.id)).toBe(false);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(false);
        expect(await signsIn(user, OTHER_PASSWORD)).toBe(true);
      });

      it('PUT /v2/users/{id}/password without require_reset lifts a pending forced reset', async () => {
        const user = await createUser(server.t);
        await admin.post(`/v2/users/${user.user.id}/password-reset`);
        expect(
          (await admin.put(`/v2/users/${user.user.id}/password`, { password: NEW_PASSWORD })).status,
        ).toBe(204);
        expect(await flagOf(user.user.id)).toBe(false);
        expect(await signsIn(user, NEW_PASSWORD)).toBe(true);
      });
    });
  },
);
