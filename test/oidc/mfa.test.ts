/**
 * Multi-factor sign-in from openid-client authorization requests, on every backend pair: an
 * authenticator app added on the account page (codes computed here with otplib), sign-in asking for
 * its code, `amr`/`acr` in the ID token, a code used once only (also on a second instance), recovery
 * codes that work once, wrong codes counting toward the lockout, step-up with acr_values, enrolment
 * forced by MFA=required and by MFA_REQUIRED_ROLES, and the management API's list and reset.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import * as oidc from 'openid-client';
import { generateSync } from 'otplib';

import { ACR_MFA, ACR_PASSWORD } from '../../src/services/mfa.js';
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
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const hidden = (html: string, name: string) =>
  new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';
const secretOf = (html: string) => (/id="totp-secret">([A-Z2-7 ]+)</.exec(html)?.[1] ?? '').replace(/ /g, '');
const codesOf = (html: string) =>
  [...html.matchAll(/<li><code>([a-z0-9-]+)<\/code><\/li>/g)].map((m) => m[1]!);
/** A TOTP code of the step `offset` steps from now (±1 is accepted). */
const totp = (secret: string, offset = 0) =>
  generateSync({ secret, epoch: Math.floor(Date.now() / 1000) + offset * 30 });

/** Posts the form of `page` whose action ends with `suffix`, with its hidden fields and `fields`. */
function post(
  browser: FormBrowser,
  page: Page,
  suffix: string,
  fields: Record<string, string>,
): Promise<Page> {
  const form = [...page.html.matchAll(/<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/g)].find((f) =>
    f[1]!.endsWith(suffix),
  );
  if (!form) throw new Error(`no form for ${suffix} on ${page.url}:\n${page.html.slice(0, 800)}`);
  const hiddenFields: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = /name="([^"]+)"/.exec(input[0])?.[1];
    if (name) hiddenFields[name] = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
  }
  return browser.go(form[1]!, { form: { ...hiddenFields, ...fields } });
}

describe.each(availableBackends())(
  'multi-factor sign-in, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let second: TestServer;
    let api: AdminApi;
    let web: TestClient;
    let config: oidc.Configuration;
    let configSecond: oidc.Configuration;

    beforeAll(async () => {
      server = await startTestServer({ ...backends, env: { LOGIN_MAX_FAILURES: '4' } });
      // A second instance on the same data: what one took, the other must refuse.
      second = await startTestServer({ ...backends, shareWith: server.t, env: { LOGIN_MAX_FAILURES: '4' } });
      api = await adminApi(server.t);
      web = await registerClient(server.t, 'web');
      config = await discover(server.url, web);
      configSecond = await discover(second.url, web);
    });
    afterAll(async () => {
      await second?.close();
      await server?.close();
    });

    /** Signs in on the account page with a password (no second factor yet). */
    async function accountSession(email: string, password: string, at = server) {
      const browser = new FormBrowser(at.url);
      const login = await browser.go('/account');
      const page = await submit(browser, login, { email, password });
      expect(page.url).toBe(`${at.url}/account`);
      return { browser, page };
    }

    /** Adds an authenticator app on the account page; the secret and the recovery codes shown. */
    async function enrolTotp(browser: FormBrowser) {
      const account = await browser.go('/account');
      expect(account.html).toContain('href="/account/mfa/totp"');
      const enrol = await browser.go('/account/mfa/totp');
      expect(enrol.status).toBe(200);
      expect(enrol.html).toContain('<svg');
      const secret = secretOf(enrol.html);
      expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
      const wrong = await post(browser, enrol, '/account/mfa/totp', {
        code: '000000' === totp(secret) ? '111111' : '000000',
      });
      expect(wrong.status).toBe(400);
      // The same pending secret is shown again after a wrong code.
      expect(secretOf(wrong.html)).toBe(secret);
      const done = await post(browser, wrong, '/account/mfa/totp', { code: totp(secret) });
      expect(done.status).toBe(200);
      const codes = codesOf(done.html);
      expect(codes).toHaveLength(10);
      return { secret, codes };
    }

    async function passwordStep(
      cfg: oidc.Configuration,
      email: string,
      password: string,
      params: Record<string, string> = {},
    ) {
      const request = await authorizationRequest(cfg, web.redirectUri, 'openid email', params);
      const browser = new FormBrowser(new URL(cfg.serverMetadata().issuer).origin);
      const login = await browser.go(request.url.toString());
      expect(isLoginPage(login)).toBe(true);
      const page = await submit(browser, login, { email, password });
      return { browser, request, page };
    }

    async function tokensOf(
      cfg: oidc.Configuration,
      browser: FormBrowser,
      page: Page,
      request: Awaited<ReturnType<typeof authorizationRequest>>,
    ) {
      let step = page;
      if (isConsentPage(step)) step = await submit(browser, step, { decision: 'approve' });
      expect(step.status).toBe(0);
      return oidc.authorizationCodeGrant(cfg, new URL(step.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
    }

    it('adds an authenticator app on the account page, then asks for its code; amr and acr say so', async () => {
      const { email, password, user } = await createUser(server.t);
      const { browser: account } = await accountSession(email, password);
      const { secret } = await enrolTotp(account);
      const stored = await server.t.stores.durable.users.findById(user.id);
      expect(stored!.mfa_enabled).toBe(true);
      const [factor] = await server.t.stores.durable.mfa.listFactors(user.id);
      expect(factor).toMatchObject({ type: 'totp', name: 'Authenticator app' });
      // Encrypted at rest: the stored value is not the secret, and is bound to the factor.
      expect(factor!.secret).toMatch(/^v1\./);
      expect(factor!.secret).not.toContain(secret);

      const { browser, request, page } = await passwordStep(config, email, password);
      expect(page.status).toBe(200);
      expect(page.html).toContain('/mfa/totp');
      expect(page.html).toContain('autocomplete="one-time-code"');
      // The code that confirmed the enrolment counts as used.
      const replayed = await post(browser, page, '/mfa/totp', { code: totp(secret) });
      expect(replayed.status).toBe(401);
      expect(replayed.html).toContain('role="alert"');
      const next = await post(browser, replayed, '/mfa/totp', { code: totp(secret, 1) });
      const tokens = await tokensOf(config, browser, next, request);
      const claims = tokens.claims()!;
      expect(claims.amr).toEqual(['pwd', 'otp', 'mfa']);
      expect(claims.acr).toBe(ACR_MFA);
      expect((await server.t.stores.durable.mfa.findFactor(factor!.id))!.last_used_at).not.toBeNull();

      // The same code, sent to the second instance, is refused there too.
      const other = await passwordStep(configSecond, email, password);
      expect(other.page.html).toContain('/mfa/totp');
      const again = await post(other.browser, other.page, '/mfa/totp', { code: totp(secret, 1) });
      expect(again.status).toBe(401);
    });

    it('takes each recovery code once, and wrong codes count toward the lockout', async () => {
      const { email, password, user } = await createUser(server.t);
      const { browser: account } = await accountSession(email, password);
      const { codes } = await enrolTotp(account);

      const first = await passwordStep(config, email, password);
      const used = await post(first.browser, first.page, '/mfa/recovery', { code: codes[0]!.toUpperCase() });
      const tokens = await tokensOf(config, first.browser, used, first.request);
      expect(tokens.claims()!.amr).toEqual(['pwd', 'otp', 'mfa']);
      expect(await server.t.stores.durable.mfa.countRecoveryCodes(user.id)).toBe(9);

      // LOGIN_MAX_FAILURES=4: the password and the wrong codes after it, on either instance, are one
      // count; the fifth attempt is refused.
      const again = await passwordStep(configSecond, email, password);
      const reused = await post(again.browser, again.page, '/mfa/recovery', { code: codes[0]! });
      expect(reused.status).toBe(401);
      const wrong = await post(again.browser, reused, '/mfa/totp', { code: '000001' });
      expect(wrong.status).toBe(401);
      const fourth = await post(again.browser, wrong, '/mfa/totp', { code: '000002' });
      expect(fourth.status).toBe(401);
      const locked = await post(again.browser, fourth, '/mfa/totp', { code: '000003' });
      expect(locked.status).toBe(429);
      expect(locked.headers.get('retry-after')).toMatch(/^\d+$/);
      // Locked for passwords too, and a good recovery code is not even checked while locked.
      const refused = await post(again.browser, locked, '/mfa/recovery', { code: codes[1]! });
      expect(refused.status).toBe(429);
      expect(await server.t.stores.durable.mfa.countRecoveryCodes(user.id)).toBe(9);
      const audit = await api.get('/v2/audit', { target_id: user.id, action: 'user.login_failed' });
      expect(audit.body.data.length).toBeGreaterThanOrEqual(3);
    });

    it('steps up a password-only session to the second factor when a client asks for acr_values mfa', async () => {
      const { email, password } = await createUser(server.t);
      // A session signed in with a password before the app was added.
      const { browser } = await accountSession(email, password);
      const { secret } = await enrolTotp(browser);

      const plain = await authorizationRequest(config, web.redirectUri, 'openid');
      let page = await browser.go(plain.url.toString());
      if (isConsentPage(page)) page = await submit(browser, page, { decision: 'approve' });
      const single = await tokensOf(config, browser, page, plain);
      expect(single.claims()!.amr).toEqual(['pwd']);
      expect(single.claims()!.acr).toBe(ACR_PASSWORD);

      const request = await authorizationRequest(config, web.redirectUri, 'openid', { acr_values: ACR_MFA });
      const stepUp = await browser.go(request.url.toString());
      expect(isLoginPage(stepUp)).toBe(false);
      expect(stepUp.html).toContain('/mfa/totp');
      const done = await post(browser, stepUp, '/mfa/totp', { code: totp(secret, 1) });
      const tokens = await tokensOf(config, browser, done, request);
      expect(tokens.claims()!.acr).toBe(ACR_MFA);
      expect(tokens.claims()!.amr).toEqual(['pwd', 'otp', 'mfa']);

      // prompt=none cannot step up: the client is told login_required.
      const fresh = new FormBrowser(server.url);
      const unsigned = await authorizationRequest(config, web.redirectUri, 'openid', {
        acr_values: ACR_MFA,
        prompt: 'none',
      });
      const quiet = await fresh.go(unsigned.url.toString());
      expect(new URL(quiet.url).searchParams.get('error')).toBe('login_required');
    });

    it('lists and resets factors through the management API, audited and recorded as user.mfa_reset', async () => {
      const { email, password, user } = await createUser(server.t);
      const { browser } = await accountSession(email, password);
      await enrolTotp(browser);

      const listed = await api.get(`/v2/users/${user.id}/mfa`);
      expect(listed.status).toBe(200);
      expect(listed.body).toMatchObject({ mfa_enabled: true, recovery_codes_remaining: 10 });
      expect(listed.body.data).toHaveLength(1);
      expect(listed.body.data[0]).toEqual({
        id: expect.stringMatching(/^mfa_/),
        type: 'totp',
        name: 'Authenticator app',
        created_at: expect.any(String),
        last_used_at: null,
      });
      expect(JSON.stringify(listed.body)).not.toMatch(/secret|v1\./);
      const shown = await api.get(`/v2/users/${user.id}`);
      expect(shown.body.mfa_enabled).toBe(true);
      const filtered = await api.get('/v2/users', { mfa_enabled: 'true', search: email });
      expect(filtered.body.data.map((u: { id: string }) => u.id)).toEqual([user.id]);
      const searched = await api.get('/v2/users/search', {
        q: email,
        filters: JSON.stringify({ mfa_enabled: true }),
      });
      expect(searched.body.data.map((u: { id: string }) => u.id)).toEqual([user.id]);
      const without = await api.get('/v2/users', { mfa_enabled: 'false', search: email });
      expect(without.body.data).toEqual([]);

      expect((await api.delete(`/v2/users/${user.id}/mfa/mfa_missing`)).status).toBe(404);
      const reset = await api.delete(`/v2/users/${user.id}/mfa/${listed.body.data[0].id}`);
      expect(reset.status).toBe(204);
      const after = await api.get(`/v2/users/${user.id}/mfa`);
      expect(after.body).toEqual({ mfa_enabled: false, data: [], recovery_codes_remaining: 0 });
      expect((await server.t.stores.durable.users.findById(user.id))!.mfa_enabled).toBe(false);
      const audit = await api.get('/v2/audit', { target_id: user.id, action: 'user.mfa_reset' });
      expect(audit.body.data).toHaveLength(1);
      const events = await server.t.stores.durable.outbox.listEvents({
        types: ['user.mfa_reset'],
        limit: 1000,
      });
      const mine = events.items.filter((e) => (e.data as { user: { id: string } }).user.id === user.id);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.data).toMatchObject({
        user: { id: user.id, mfa_enabled: false },
        factor: { id: listed.body.data[0].id, type: 'totp' },
        removed: 1,
      });

      // Signing in now takes the password alone again (MFA=optional).
      const { browser: b2, request, page } = await passwordStep(config, email, password);
      const tokens = await tokensOf(config, b2, page, request);
      expect(tokens.claims()!.amr).toEqual(['pwd']);
    });
  },
);

describe('MFA=required and MFA_REQUIRED_ROLES (embedded)', () => {
  let server: TestServer;
  let web: TestClient;
  let config: oidc.Configuration;
  beforeAll(async () => {
    server = await startTestServer({ env: { MFA: 'required' } });
    web = await registerClient(server.t, 'web');
    config = await discover(server.url, web);
  });
  afterAll(() => server?.close());

  it('takes a user without a factor through enrolment at sign-in, shows the recovery codes once, then completes', async () => {
    const { email, password, user } = await createUser(server.t);
    const request = await authorizationRequest(config, web.redirectUri, 'openid');
    const browser = new FormBrowser(server.url);
    const enrol = await submit(browser, await browser.go(request.url.toString()), { email, password });
    expect(enrol.status).toBe(200);
    expect(enrol.html).toContain('Your account must use a second step');
    const secret = secretOf(enrol.html);
    const codes = await post(browser, enrol, '/mfa/enrol/totp', { code: totp(secret) });
    expect(codesOf(codes.html)).toHaveLength(10);
    let step = await post(browser, codes, '/mfa/continue', {});
    if (isConsentPage(step)) step = await submit(browser, step, { decision: 'approve' });
    expect(step.status).toBe(0);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(step.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    expect(tokens.claims()!.amr).toEqual(['pwd', 'otp', 'mfa']);
    expect((await server.t.stores.durable.users.findById(user.id))!.mfa_enabled).toBe(true);
    // The codes page is not shown again.
    expect(hidden(codes.html, 'csrf')).not.toBe('');
  });

  it('advertises the acr values in discovery', () => {
    expect(config.serverMetadata().acr_values_supported).toEqual([ACR_PASSWORD, ACR_MFA]);
  });
});

describe('MFA_REQUIRED_ROLES and MFA=off (embedded)', () => {
  let roles: TestServer;
  let off: TestServer;
  beforeAll(async () => {
    roles = await startTestServer({ env: { MFA: 'optional', MFA_REQUIRED_ROLES: 'admin' } });
    off = await startTestServer({ env: { MFA: 'off' } });
  });
  afterAll(async () => {
    await roles?.close();
    await off?.close();
  });

  it('requires a second factor of the holders of a named role only', async () => {
    const web = await registerClient(roles.t, 'web');
    const config = await discover(roles.url, web);
    const admin = await createUser(roles.t);
    await roles.t.stores.durable.users.update(admin.user.id, { role: 'admin' });
    const plain = await createUser(roles.t);
    for (const [who, enrol] of [
      [admin, true],
      [plain, false],
    ] as const) {
      const request = await authorizationRequest(config, web.redirectUri, 'openid');
      const browser = new FormBrowser(roles.url);
      const page = await submit(browser, await browser.go(request.url.toString()), {
        email: who.email,
        password: who.password,
      });
      if (enrol) expect(page.html).toContain('/mfa/enrol/totp');
      else expect(page.status === 0 || isConsentPage(page)).toBe(true);
    }
  });

  it('offers nothing with MFA=off: no passkey sign-in, no acr values, no account section', async () => {
    const login = await new FormBrowser(off.url).go('/account');
    expect(isLoginPage(login)).toBe(true);
    expect(login.html).not.toContain('passkey');
    expect(login.headers.get('content-security-policy')).not.toContain('script-src');
    const web = await registerClient(off.t, 'web');
    const config = await discover(off.url, web);
    expect(config.serverMetadata().acr_values_supported).toBeUndefined();
  });
});
