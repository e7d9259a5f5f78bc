/**
 * Self-service sign-up and address confirmation, as a person does it from an openid-client
 * authorization request: "Create an account" on the sign-in page, the password policy's messages
 * inline, then (REQUIRE_VERIFIED_EMAIL=true) sign-in refused until the link mailed to a real SMTP
 * server (smtp-server + mailparser) is followed; then the flow completes and userinfo says
 * `email_verified: true`, the welcome message follows, and `user.email_verified` is recorded. A
 * changed address is unconfirmed again and gets a link; sign-up can be closed or limited to domains.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { ParsedMail } from 'mailparser';
import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import {
  authorizationRequest,
  discover,
  isConsentPage,
  isLoginPage,
  submit,
} from '../helpers/relying-party.js';
import { startSmtpCapture, type SmtpCapture } from '../helpers/smtp-capture.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const PASSWORD = 'correct horse battery staple 9';

describe.each(availableBackends())(
  'sign-up and address confirmation, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let smtp: SmtpCapture;
    let api: AdminApi;
    let spa: TestClient;
    let config: oidc.Configuration;
    const confirmLink = (mail: ParsedMail) => {
      const match = /(http:\/\/127\.0\.0\.1:\d+\/interaction\/verify-email\?token=[A-Za-z0-9_-]+)/.exec(
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
          REGISTRATION: 'open',
          REGISTRATION_DOMAINS: 'example.com,example.org',
          REQUIRE_VERIFIED_EMAIL: 'true',
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

    async function registerPage(
      browser: FormBrowser,
    ): Promise<{ page: Page; request: Awaited<ReturnType<typeof authorizationRequest>> }> {
      const request = await authorizationRequest(config, spa.redirectUri, 'openid email');
      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      const href = /href="(\/interaction\/[^"]+\/register)"/.exec(login.html)?.[1];
      expect(href).toBeDefined();
      const page = await browser.go(href!);
      expect(page.status).toBe(200);
      return { page, request };
    }

    it('signs up, waits for the confirmation link, then completes the flow with a confirmed address', async () => {
      const email = `new-${Date.now()}@example.com`;
      const browser = new FormBrowser(server.url);
      const { page, request } = await registerPage(browser);

      const weak = await submit(browser, page, { email, password: 'short' });
      expect(weak.status).toBe(400);
      expect(weak.html).toContain('role="alert"');
      expect(weak.html).toContain(`value="${email}"`);

      const sent = await submit(browser, weak, { email, password: PASSWORD, first_name: 'Grace' });
      expect(sent.status).toBe(200);
      expect(sent.html).toContain(`We sent a link to ${email}`);
      const created = await server.t.stores.durable.users.findByEmail(email);
      expect(created).toMatchObject({ email_verified: false, first_name: 'Grace', last_name: '' });

      // Sign-in is refused until the address is confirmed, with a way to get the link again.
      const refused = await submit(browser, await browser.go(request.url.toString()), {
        email,
        password: PASSWORD,
      });
      expect(refused.status).toBe(403);
      expect(refused.html).toContain('Confirm your email address first');
      expect(refused.html).toContain('/verify-resend');

      const mail = await smtp.waitFor(email, /Confirm your email/);
      const confirmed = await browser.go(confirmLink(mail));
      expect(confirmed.status).toBe(200);
      expect(confirmed.html).toContain('Email address confirmed');
      expect((await browser.go(confirmLink(mail))).status).toBe(400);
      await smtp.waitFor(email, /Welcome/);

      let step = await submit(browser, await browser.go(request.url.toString()), {
        email,
        password: PASSWORD,
      });
      if (isConsentPage(step)) step = await submit(browser, step, { decision: 'approve' });
      expect(step.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(step.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      const info = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub);
      expect(info).toMatchObject({ email, email_verified: true });

      const audit = await api.get('/v2/audit', { target_id: created!.id });
      expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual(
        expect.arrayContaining(['user.created', 'user.email_verified']),
      );
    });

    it('confirms by the 6-digit code typed on the page; wrong codes are limited', async () => {
      const browser = new FormBrowser(server.url);
      const { page } = await registerPage(browser);
      const email = `code-${Date.now()}@example.com`;
      const sent = await submit(browser, page, { email, password: PASSWORD });
      expect(sent.html).toContain('/verify-code');
      const mail = await smtp.waitFor(email, /Confirm your email/);
      const code = /code on the page that asked for it: (\d{6})/.exec(mail.text ?? '')?.[1];
      expect(code).toMatch(/^\d{6}$/);
      const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
      const refused = await submit(browser, sent, { code: wrong });
      expect(refused.status).toBe(400);
      const done = await submit(browser, refused, { code: code! });
      expect(done.status).toBe(200);
      expect(done.html).toContain('Email address confirmed');
      expect((await server.t.stores.durable.users.findByEmail(email))!.email_verified).toBe(true);
      // The link of the same message now confirms nothing more: one welcome message.
      expect((await browser.go(confirmLink(mail))).status).toBe(200);
      await smtp.waitFor(email, /Welcome/);
      await new Promise((r) => setTimeout(r, 300));
      expect(
        smtp.received.filter((m) => JSON.stringify(m.to).includes(email) && /Welcome/.test(m.subject ?? '')),
      ).toHaveLength(1);

      // Five wrong codes, then even the right one is refused for the hour.
      const other = `guess-${Date.now()}@example.com`;
      const otherBrowser = new FormBrowser(server.url);
      const { page: form } = await registerPage(otherBrowser);
      let step = await submit(otherBrowser, form, { email: other, password: PASSWORD });
      const otherMail = await smtp.waitFor(other, /Confirm your email/);
      const right = /code on the page that asked for it: (\d{6})/.exec(otherMail.text ?? '')![1]!;
      for (let i = 0; i < 5; i++) {
        step = await submit(otherBrowser, step, {
          code: String((Number(right) + 1 + i) % 1_000_000).padStart(6, '0'),
        });
        expect(step.status).toBe(400);
      }
      expect((await submit(otherBrowser, step, { code: right })).status).toBe(400);
    });

    it('refuses an address already taken, one of another domain, and a malformed one, keeping what was typed', async () => {
      const browser = new FormBrowser(server.url);
      const taken = `taken-${Date.now()}@example.org`;
      expect((await api.post('/v2/users', { email: taken, first_name: 'T', last_name: 'T' })).status).toBe(
        201,
      );
      const { page } = await registerPage(browser);
      const exists = await submit(browser, page, { email: taken, password: PASSWORD });
      expect(exists.status).toBe(409);
      const elsewhere = await submit(browser, exists, {
        email: `x-${Date.now()}@elsewhere.test`,
        password: PASSWORD,
      });
      expect(elsewhere.status).toBe(400);
      expect(elsewhere.html).toContain('cannot be created here');
      const malformed = await submit(browser, elsewhere, { email: 'not an address', password: PASSWORD });
      expect(malformed.status).toBe(400);
      expect(malformed.html).toContain('Enter a valid email address');
    });

    it('makes a changed address unconfirmed and mails a link to the new one', async () => {
      const first = `first-${Date.now()}@example.com`;
      const created = await api.post('/v2/users', {
        email: first,
        first_name: 'C',
        last_name: 'C',
        email_verified: true,
      });
      expect(created.status).toBe(201);
      const second = `second-${Date.now()}@example.com`;
      const changed = await api.put(`/v2/users/${created.body.id}`, { email: second });
      expect(changed.status).toBe(200);
      expect(changed.body.email_verified).toBe(false);
      const mail = await smtp.waitFor(second, /Confirm your email/);
      expect((await new FormBrowser(server.url).go(confirmLink(mail))).status).toBe(200);
      expect((await api.get(`/v2/users/${created.body.id}`)).body.email_verified).toBe(true);
    });
  },
);

describe('prompt=create (OpenID Connect Prompt Create), sign-up open, no confirmation required', () => {
  let server: TestServer;
  let spa: TestClient;
  let config: oidc.Configuration;
  beforeAll(async () => {
    server = await startTestServer({ env: { REGISTRATION: 'open' } });
    spa = await registerClient(server.t, 'spa');
    config = await discover(server.url, spa);
  });
  afterAll(() => server.close());

  const exchange = async (step: Page, request: Awaited<ReturnType<typeof authorizationRequest>>) => {
    expect(step.status).toBe(0);
    return oidc.authorizationCodeGrant(config, new URL(step.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
  };

  it('is advertised, opens the sign-up page, and signing up completes the flow at once', async () => {
    expect(config.serverMetadata().prompt_values_supported).toEqual(expect.arrayContaining(['create']));
    const request = await authorizationRequest(config, spa.redirectUri, 'openid email', { prompt: 'create' });
    const browser = new FormBrowser(server.url);
    const page = await browser.go(request.url.toString());
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/action="\/interaction\/[^"]+\/register"/);
    const email = `create-${Date.now()}@example.com`;
    let step = await submit(browser, page, { email, password: PASSWORD });
    if (isConsentPage(step)) step = await submit(browser, step, { decision: 'approve' });
    const tokens = await exchange(step, request);
    const user = await server.t.stores.durable.users.findByEmail(email);
    expect(tokens.claims()?.sub).toBe(user!.id);
  });

  it('lets an existing user sign in instead', async () => {
    const request = await authorizationRequest(config, spa.redirectUri, 'openid', { prompt: 'create' });
    const browser = new FormBrowser(server.url);
    const page = await browser.go(request.url.toString());
    const href = /href="(\/interaction\/[^"]+\/signin)"/.exec(page.html)?.[1];
    expect(href).toBeDefined();
    const login = await browser.go(href!);
    expect(isLoginPage(login)).toBe(true);
    const existing = await createUser(server.t);
    let step = await submit(browser, login, { email: existing.email, password: existing.password });
    if (isConsentPage(step)) step = await submit(browser, step, { decision: 'approve' });
    expect((await exchange(step, request)).claims()?.sub).toBe(existing.user.id);
  });
});

describe('sign-up closed', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { REGISTRATION: 'closed' } });
  });
  afterAll(() => server.close());

  it('shows no link and refuses the page', async () => {
    const spa = await registerClient(server.t, 'spa');
    const config = await discover(server.url, spa);
    const request = await authorizationRequest(config, spa.redirectUri, 'openid');
    const browser = new FormBrowser(server.url);
    const login = await browser.go(request.url.toString());
    expect(isLoginPage(login)).toBe(true);
    expect(login.html).not.toContain('/register');
    const uid = /\/interaction\/([^/"]+)\/login/.exec(login.html)![1]!;
    const page = await browser.go(`/interaction/${uid}/register`);
    expect(page.status).toBeGreaterThanOrEqual(400);
    // prompt=create is not offered, so it is refused as an unsupported prompt.
    expect(config.serverMetadata().prompt_values_supported ?? []).not.toContain('create');
  });
});
