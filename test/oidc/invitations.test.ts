/**
 * REGISTRATION=invite: nobody signs up on their own; an administrator invites an address
 * (POST /v2/invitations), the invitee follows the link mailed to a real SMTP server (smtp-server +
 * mailparser) and gets the sign-up page with that address fixed. The account starts confirmed,
 * `user.created` is recorded, the welcome message follows, and the person lands on /account signed
 * in. The link works once; invitations are refused for a taken address and when sign-up is closed.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { ParsedMail } from 'mailparser';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser, registerClient } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { authorizationRequest, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { startSmtpCapture, type SmtpCapture } from '../helpers/smtp-capture.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const PASSWORD = 'an invited passphrase of some length 7';

const inviteLink = (mail: ParsedMail) => {
  const match = /(http:\/\/127\.0\.0\.1:\d+\/interaction\/invitation\?token=[A-Za-z0-9_-]+)/.exec(
    mail.text ?? '',
  );
  if (!match) throw new Error(`no link in ${mail.text}`);
  return match[1]!;
};

describe.each(availableBackends())(
  'invitations (REGISTRATION=invite), durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let smtp: SmtpCapture;
    let api: AdminApi;

    beforeAll(async () => {
      smtp = await startSmtpCapture();
      server = await startTestServer({
        ...backends,
        env: {
          SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
          WEBHOOK_POLL_MS: '50',
          REGISTRATION: 'invite',
          // Invitations are not limited by the allow-list: an administrator chose the address.
          REGISTRATION_DOMAINS: 'example.com',
          REQUIRE_VERIFIED_EMAIL: 'true',
        },
      });
      api = await adminApi(server.t);
    });
    afterAll(async () => {
      await server?.close();
      await smtp?.close();
    });

    it('offers no sign-up without an invitation', async () => {
      const spa = await registerClient(server.t, 'spa');
      const config = await discover(server.url, spa);
      expect(config.serverMetadata().prompt_values_supported ?? []).not.toContain('create');
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email');
      const browser = new FormBrowser(server.url);
      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      expect(login.html).not.toContain('/register');
      const uid = /\/interaction\/([^/"]+)\/login/.exec(login.html)![1]!;
      expect((await browser.go(`/interaction/${uid}/register`)).status).toBeGreaterThanOrEqual(400);
      const csrf = FormBrowser.form(login.html).fields.csrf!;
      const email = `uninvited-${Date.now()}@example.com`;
      const posted = await browser.go(`/interaction/${uid}/register`, {
        form: { csrf, email, password: PASSWORD },
      });
      expect(posted.status).toBeGreaterThanOrEqual(400);
      expect(await server.t.stores.durable.users.findByEmail(email)).toBeNull();
    });

    it('mails a link that signs the invitee up with a confirmed address, once', async () => {
      const since = new Date();
      const email = `invitee-${Date.now()}@example.org`;
      const invited = await api.post('/v2/invitations', { email, first_name: 'Ada', last_name: 'Lovelace' });
      expect(invited.status).toBe(202);
      expect(invited.body).toEqual({ email, expires_at: expect.any(String), email_sent: true });
      const expires = Date.parse(invited.body.expires_at) - Date.now();
      expect(expires).toBeGreaterThan(6 * 86_400_000);
      expect(expires).toBeLessThanOrEqual(7 * 86_400_000);

      const mail = await smtp.waitFor(email, /invited/);
      const link = inviteLink(mail);
      const browser = new FormBrowser(server.url);
      const page = await browser.go(link);
      expect(page.status).toBe(200);
      expect(page.html).toMatch(/action="\/interaction\/[^"]+\/register"/);
      expect(page.html).toMatch(new RegExp(`id="email"[^>]*readonly[^>]*value="${email}"`));
      expect(page.html).toContain('value="Ada"');

      // The address is the invitation's, whatever is posted.
      const weak = await submit(browser, page, { email: 'someone-else@example.com', password: 'short' });
      expect(weak.status).toBe(400);
      expect(weak.html).toContain('role="alert"');
      // The names as a browser posts the filled-in fields.
      const done = await submit(browser, weak, {
        email: 'someone-else@example.com',
        password: PASSWORD,
        first_name: 'Ada',
        last_name: 'Lovelace',
      });
      expect(done.status).toBe(200);
      expect(new URL(done.url).pathname).toBe('/account');
      expect(done.html).toContain(email);
      expect(await server.t.stores.durable.users.findByEmail('someone-else@example.com')).toBeNull();
      const user = await server.t.stores.durable.users.findByEmail(email);
      expect(user).toMatchObject({ email_verified: true, first_name: 'Ada', last_name: 'Lovelace' });

      await smtp.waitFor(email, /Welcome/);
      const events = await server.t.stores.durable.outbox.listEvents({ from: since, limit: 1000 });
      const created = events.items.filter(
        (e) => e.type === 'user.created' && (e.data as { user: { id: string } }).user.id === user!.id,
      );
      expect(created).toHaveLength(1);
      const audit = await api.get('/v2/audit', { target_id: email });
      expect(audit.body.data.map((e: { action: string }) => e.action)).toContain('user.invited');

      // The link works once; an account for the address now exists anyway.
      const again = await new FormBrowser(server.url).go(link);
      expect(again.status).toBe(400);
      expect(again.html).toContain('This invitation does not work');

      // The invitee signs in like anyone else.
      const spa = await registerClient(server.t, 'spa');
      const config = await discover(server.url, spa);
      const request = await authorizationRequest(config, spa.redirectUri, 'openid');
      const fresh = new FormBrowser(server.url);
      const signedIn = await submit(fresh, await fresh.go(request.url.toString()), {
        email,
        password: PASSWORD,
      });
      expect(signedIn.status === 0 || /\/consent"/.test(signedIn.html)).toBe(true);
    });

    it('refuses a link that is not an invitation, and an invitation for a taken address', async () => {
      const bogus = await new FormBrowser(server.url).go(`/interaction/invitation?token=${'A'.repeat(43)}`);
      expect(bogus.status).toBe(400);
      expect(bogus.html).toContain('This invitation does not work');

      const existing = await createUser(server.t);
      const taken = await api.post('/v2/invitations', { email: existing.email });
      expect(taken.status).toBe(409);
      expect(taken.body.error.code).toBe('USER_ALREADY_EXISTS');
      expect((await api.post('/v2/invitations', { email: 'not an address' })).status).toBe(400);

      // Invited, but the address got an account before the link was followed: the link is dead.
      const email = `raced-${Date.now()}@example.com`;
      expect((await api.post('/v2/invitations', { email })).status).toBe(202);
      const link = inviteLink(await smtp.waitFor(email, /invited/));
      await api.createUser({ email });
      expect((await new FormBrowser(server.url).go(link)).status).toBe(400);
    });

    it('needs user:write', async () => {
      const reader = await adminApi(server.t, { scope: 'user:read' });
      const res = await reader.post('/v2/invitations', { email: `x-${Date.now()}@example.com` });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    });
  },
);

describe('invitations with sign-up closed', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { REGISTRATION: 'closed' } });
  });
  afterAll(() => server?.close());

  it('are refused with REGISTRATION_CLOSED', async () => {
    const api = await adminApi(server.t);
    const res = await api.post('/v2/invitations', { email: `closed-${Date.now()}@example.com` });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('REGISTRATION_CLOSED');
  });
});
