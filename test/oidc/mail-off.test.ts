/**
 * Production without SMTP_URL: e-mail is off, and the flows that need it say so rather than hide.
 * The sign-in page says password reset by e-mail is not available and to contact an administrator;
 * with REQUIRE_VERIFIED_EMAIL=true the sign-up page says an account cannot be confirmed here (and
 * creates none), an unconfirmed user's refused sign-in says to ask an administrator (no resend
 * button, and a resend post is answered with the same reason); the management API refuses what
 * would send mail with 422 EMAIL_NOT_CONFIGURED, before changing anything.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { authorizationRequest, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe('production without SMTP_URL', () => {
  let server: TestServer;
  let api: AdminApi;
  let spa: TestClient;
  let config: oidc.Configuration;

  beforeAll(async () => {
    server = await startTestServer({
      env: { NODE_ENV: 'production', REGISTRATION: 'open', REQUIRE_VERIFIED_EMAIL: 'true', SMTP_URL: '' },
    });
    api = await adminApi(server.t);
    spa = await registerClient(server.t, 'spa');
    config = await discover(server.url, spa);
  });
  afterAll(() => server?.close());

  async function loginPage(browser: FormBrowser) {
    const request = await authorizationRequest(config, spa.redirectUri, 'openid email');
    const page = await browser.go(request.url.toString());
    expect(isLoginPage(page)).toBe(true);
    return { page, uid: /\/interaction\/([^/"]+)\/login/.exec(page.html)![1]! };
  }

  it('logs at start that e-mail is off', () => {
    expect(server.t.logs().some((l) => l.level === 'warn' && /e-mail is off/.test(String(l.msg)))).toBe(true);
  });

  it('says on the sign-in page that password reset by e-mail is not available', async () => {
    const browser = new FormBrowser(server.url);
    const { page, uid } = await loginPage(browser);
    expect(page.html).not.toContain('/forgot');
    expect(page.html).toContain('Password reset by email is not available on this server');
    expect(page.html).toContain('contact your administrator');
    expect((await browser.go(`/interaction/${uid}/forgot`)).status).toBeGreaterThanOrEqual(400);

    const german = await fetch(page.url, {
      headers: { 'accept-language': 'de', cookie: browser.cookieHeader() },
    });
    expect(await german.text()).toContain('nicht verfügbar');
  });

  it('says that sign-up cannot be confirmed here, and creates no account', async () => {
    const browser = new FormBrowser(server.url);
    const { page: login, uid } = await loginPage(browser);
    const page = await browser.go(`/interaction/${uid}/register`);
    expect(page.status).toBe(200);
    expect(page.html).toContain('this server cannot send email');
    expect(page.html).not.toContain('action="/interaction/');
    const email = `no-mail-${Date.now()}@example.com`;
    const posted = await browser.go(`/interaction/${uid}/register`, {
      form: {
        csrf: FormBrowser.form(login.html).fields.csrf!,
        email,
        password: 'a long enough passphrase 4',
      },
    });
    expect(posted.status).toBe(503);
    expect(posted.html).toContain('this server cannot send email');
    expect(await server.t.stores.durable.users.findByEmail(email)).toBeNull();
  });

  it('tells an unconfirmed user to ask an administrator, without a resend button', async () => {
    const user = await createUser(server.t);
    await server.t.stores.durable.users.update(user.user.id, { email_verified: false });
    const browser = new FormBrowser(server.url);
    const { page, uid } = await loginPage(browser);
    const refused = await submit(browser, page, { email: user.email, password: user.password });
    expect(refused.status).toBe(403);
    expect(refused.html).toContain('ask your administrator to confirm it');
    expect(refused.html).not.toContain('/verify-resend');
    const resend = await browser.go(`/interaction/${uid}/verify-resend`, {
      form: { csrf: FormBrowser.form(refused.html).fields.csrf!, email: user.email },
    });
    expect(resend.status).toBe(503);
    expect(resend.html).toContain('This server cannot send email');
  });

  it('refuses send_email and invitations with 422 EMAIL_NOT_CONFIGURED, changing nothing', async () => {
    const user = await api.createUser();
    const reset = await api.post(`/v2/users/${user.id}/password-reset`, { send_email: true });
    expect(reset.status).toBe(422);
    expect(reset.body.error).toMatchObject({
      code: 'EMAIL_NOT_CONFIGURED',
      message: expect.stringContaining('SMTP_URL'),
    });
    expect((await server.t.stores.durable.users.findById(user.id))!.password_reset_required).toBe(false);
    // Without send_email the flag alone is set, as before.
    const flag = await api.post(`/v2/users/${user.id}/password-reset`, {});
    expect(flag.status).toBe(200);
    expect(flag.body).toMatchObject({ password_reset_required: true, email_sent: false });

    const invitation = await api.post('/v2/invitations', { email: `invitee-${Date.now()}@example.com` });
    expect(invitation.status).toBe(422);
    expect(invitation.body.error.code).toBe('EMAIL_NOT_CONFIGURED');

    const openapi = (await api.get('/v2/openapi.json')).body;
    for (const path of ['/v2/invitations', '/v2/users/{id}/password-reset']) {
      expect(openapi.paths[path].post.responses['422'].description).toContain('EMAIL_NOT_CONFIGURED');
    }
  });
});
