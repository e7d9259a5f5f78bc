/**
 * Password reset by e-mail, driven the way a person does it: an openid-client authorization request,
 * "Forgot password?" on our sign-in page, the link from the message a real SMTP server (smtp-server,
 * read with mailparser) received, a new password (policy applied), then sign-in with it; the old
 * refresh token is refused. The answer to asking is the same for an unknown address; links work once,
 * expire, die with a later password change, and asking is rate-limited. An administrator's
 * `send_email` mails a link too.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { ParsedMail } from 'mailparser';
import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import {
  authorizationRequest,
  codeFlow,
  discover,
  isLoginPage,
  oauthFailure,
  submit,
} from '../helpers/relying-party.js';
import { startSmtpCapture, type SmtpCapture } from '../helpers/smtp-capture.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const NEW_PASSWORD = 'a new and quite long passphrase 7';
const OFFLINE = { scope: 'openid email offline_access', params: { prompt: 'consent' } };

describe.each(availableBackends())(
  'password reset by e-mail, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let smtp: SmtpCapture;
    let api: AdminApi;
    let spa: TestClient;
    let config: oidc.Configuration;
    const linkIn = (mail: ParsedMail) => {
      const match = /(http:\/\/127\.0\.0\.1:\d+\/interaction\/password-reset\?token=[A-Za-z0-9_-]+)/.exec(
        mail.text ?? '',
      );
      if (!match) throw new Error(`no link in ${mail.text}`);
      return match[1]!;
    };

    beforeAll(async () => {
      smtp = await startSmtpCapture();
      server = await startTestServer({
        ...backends,
        env: {
          SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
          WEBHOOK_POLL_MS: '50',
          PASSWORD_RESET_PER_ADDRESS_PER_HOUR: '3',
        },
      });
      api = await adminApi(server.t);
      spa = await registerClient(server.t, 'spa');
      config = await discover(server.url, spa);
    });
    afterAll(async () => {
      await server?.close();
      await smtp?.close();
    });

    /** From an authorization request to the "Forgot password?" page, then the answer to asking. */
    async function askForLink(browser: FormBrowser, email: string): Promise<Page> {
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email');
      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      const href = /href="(\/interaction\/[^"]+\/forgot)"/.exec(login.html)?.[1];
      expect(href).toBeDefined();
      const forgot = await browser.go(href!);
      expect(forgot.status).toBe(200);
      return submit(browser, forgot, { email });
    }

    it('resets a forgotten password from the sign-in page through the mail; the old refresh token is refused', async () => {
      const user = await createUser(server.t);
      const before = await codeFlow(config, spa, user, OFFLINE);
      expect(before.tokens.refresh_token).toEqual(expect.any(String));

      const browser = new FormBrowser(server.url);
      const sent = await askForLink(browser, user.email);
      expect(sent.status).toBe(200);
      expect(sent.html).toContain('If an account exists for that address');
      const mail = await smtp.waitFor(user.email);
      expect(mail.subject).toBe('Reset your Latchkey password');
      const link = linkIn(mail);

      // The link opens the form; a password the policy refuses leaves the link usable.
      const form = await browser.go(link);
      expect(form.status).toBe(200);
      const weak = await submit(browser, form, { password: 'short', confirm: 'short' });
      expect(weak.status).toBe(400);
      const done = await submit(browser, await browser.go(link), {
        password: NEW_PASSWORD,
        confirm: NEW_PASSWORD,
      });
      expect(done.status).toBe(200);
      expect(done.html).toContain('Your password was changed');
      expect(done.html).toMatch(/href="\/interaction\/[^"]+"/);

      // Used once: the link is dead now.
      const again = await browser.go(link);
      expect(again.status).toBe(400);
      expect(again.html).toContain('This link is not valid any more');

      // Everything the user was signed in to ended; the new password signs in.
      expect(await oauthFailure(oidc.refreshTokenGrant(config, before.tokens.refresh_token!))).toMatchObject({
        error: 'invalid_grant',
      });
      const after = await codeFlow(config, spa, { email: user.email, password: NEW_PASSWORD });
      expect(after.tokens.claims()?.sub).toBe(user.user.id);
      await expect(codeFlow(config, spa, user)).rejects.toThrow(/sign-in stopped/);
    });

    it('answers an unknown address exactly as a known one, and sends nothing', async () => {
      const unknown = `nobody-${Date.now()}@example.com`;
      const known = await createUser(server.t);
      const a = await askForLink(new FormBrowser(server.url), unknown);
      const b = await askForLink(new FormBrowser(server.url), known.email);
      const body = (page: Page) => page.html.replace(/\/interaction\/[A-Za-z0-9_-]+/g, '/interaction/UID');
      expect([a.status, body(a)]).toEqual([b.status, body(b)]);
      await smtp.waitFor(known.email);
      expect(smtp.received.filter((m) => JSON.stringify(m.to).includes(unknown))).toHaveLength(0);
    });

    it('voids a link when the password changes another way, and limits asking per address', async () => {
      const user = await createUser(server.t);
      await askForLink(new FormBrowser(server.url), user.email);
      const link = linkIn(await smtp.waitFor(user.email));
      const set = await api.put(`/v2/users/${user.user.id}/password`, { password: NEW_PASSWORD });
      expect(set.status).toBe(204);
      expect((await new FormBrowser(server.url).go(link)).status).toBe(400);

      // PASSWORD_RESET_PER_ADDRESS_PER_HOUR=3: the fourth request for the address is refused.
      for (let i = 0; i < 2; i++)
        expect((await askForLink(new FormBrowser(server.url), user.email)).status).toBe(200);
      expect((await askForLink(new FormBrowser(server.url), user.email)).status).toBe(429);
    });

    it('mails a link when an administrator asks with send_email', async () => {
      const user = await createUser(server.t);
      const res = await api.post(`/v2/users/${user.user.id}/password-reset`, { send_email: true });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ password_reset_required: true, email_sent: true });
      const link = linkIn(await smtp.waitFor(user.email));
      const browser = new FormBrowser(server.url);
      const done = await submit(browser, await browser.go(link), {
        password: NEW_PASSWORD,
        confirm: NEW_PASSWORD,
      });
      expect(done.status).toBe(200);
      expect(done.html).not.toMatch(/href="\/interaction\//);
      const after = await api.get(`/v2/users/${user.user.id}`);
      expect(after.body.password_reset_required).toBeUndefined();
      // Without a body the flag is set and nothing is mailed.
      const plain = await api.post(`/v2/users/${user.user.id}/password-reset`);
      expect(plain.status).toBe(200);
      expect(plain.body.email_sent).toBe(false);
    });
  },
);
