/**
 * The device authorization grant (RFC 8628) driven by openid-client as a TV or command-line app
 * would, on every backend pair: a client registered with `kind: device` through /v2, a user code
 * without look-alike characters, the polling errors (authorization_pending, slow_down,
 * access_denied), our code page, confirmation, sign-in and consent in a browser (FormBrowser), and
 * the tokens; a wrong code on the page; code entry limited per client address.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { isConsentPage, isLoginPage, submit } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** base-20: consonants only, so no word and no 0/O or 1/I confusion. */
const USER_CODE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;

describe.each(availableBackends())(
  'device authorization grant, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let api: AdminApi;
    let config: oidc.Configuration;
    let clientId: string;

    beforeAll(async () => {
      server = await startTestServer(backends);
      api = await adminApi(server.t);
      const created = await api.post('/v2/clients', { kind: 'device', client_name: 'Living-room TV' });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        kind: 'device',
        grant_types: [DEVICE_GRANT, 'refresh_token'],
        token_endpoint_auth_method: 'none',
      });
      expect(created.body.client_secret).toBeUndefined();
      clientId = created.body.client_id;
      config = await oidc.discovery(new URL(server.url), clientId, undefined, oidc.None(), {
        execute: [oidc.allowInsecureRequests],
      });
    });
    afterAll(() => server?.close());

    /** One token request for the device code, as the device polls. */
    const poll = (deviceCode: string) =>
      fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as Record<string, unknown> }));

    it('signs a user in on another screen and hands the device its tokens', async () => {
      expect(config.serverMetadata().device_authorization_endpoint).toBe(`${server.url}/oauth/device/auth`);
      expect(config.serverMetadata().grant_types_supported).toContain(DEVICE_GRANT);
      const { email, password, user } = await createUser(server.t);
      const device = await oidc.initiateDeviceAuthorization(config, { scope: 'openid email offline_access' });
      expect(device.user_code).toMatch(USER_CODE);
      expect(device.verification_uri).toBe(`${server.url}/device`);
      expect(device.verification_uri_complete).toBe(`${server.url}/device?user_code=${device.user_code}`);
      expect(device.expires_in).toBeGreaterThan(0);

      const pending = await poll(device.device_code);
      expect(pending).toMatchObject({ status: 400, body: { error: 'authorization_pending' } });
      // Asking again at once, faster than `interval`, is told to slow down.
      const fast = await poll(device.device_code);
      expect(fast).toMatchObject({ status: 400, body: { error: 'slow_down' } });

      const browser = new FormBrowser(server.url);
      const page = await browser.go('/device');
      expect(page.status).toBe(200);
      expect(page.html).toContain('<label for="user_code"');
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      const wrong = await submit(browser, page, { user_code: 'BBBB-BBBB' });
      expect(wrong.status).toBe(400);
      expect(wrong.html).toContain('role="alert"');
      // Typed in lower case and without the dash, the code is still recognized.
      const confirm = await submit(browser, wrong, {
        user_code: device.user_code.replace('-', '').toLowerCase(),
      });
      expect(confirm.status).toBe(200);
      expect(confirm.html).toContain('Connect Living-room TV?');
      expect(confirm.html).toContain(device.user_code);
      let step = await submit(browser, confirm, {});
      expect(isLoginPage(step)).toBe(true);
      step = await submit(browser, step, { email, password });
      expect(isConsentPage(step)).toBe(true);
      const done = await submit(browser, step, { decision: 'approve' });
      expect(done.status).toBe(200);
      expect(done.html).toContain('Device connected');

      const tokens = await oidc.genericGrantRequest(config, DEVICE_GRANT, {
        device_code: device.device_code,
      });
      expect(tokens.access_token).toEqual(expect.any(String));
      expect(tokens.refresh_token).toEqual(expect.any(String));
      expect(tokens.claims()).toMatchObject({ sub: user.id, email, amr: ['pwd'] });
      const info = await oidc.fetchUserInfo(config, tokens.access_token, user.id);
      expect(info.email).toBe(email);
      // The device code is spent.
      expect((await poll(device.device_code)).body.error).toBe('invalid_grant');
    });

    it('tells the device access_denied when the person cancels on the confirmation page', async () => {
      const device = await oidc.initiateDeviceAuthorization(config, { scope: 'openid' });
      const browser = new FormBrowser(server.url);
      // verification_uri_complete posts the code by itself (a form the page submits); then the
      // confirmation.
      const posting = await browser.go(device.verification_uri_complete!);
      const confirm = await submit(browser, posting, {});
      expect(confirm.html).toContain(device.user_code);
      const cancelForm = [
        ...confirm.html.matchAll(/<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/g),
      ].find((f) => f[2]!.includes('name="abort"'))!;
      const fields = Object.fromEntries(
        [...cancelForm[2]!.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
      );
      const cancelled = await browser.go(cancelForm[1]!, { form: fields });
      expect(cancelled.html).toContain('The request was cancelled.');
      expect((await poll(device.device_code)).body.error).toBe('access_denied');
    });

    it('refuses the grant to a client not registered for it', async () => {
      const web = await api.post('/v2/clients', {
        kind: 'web',
        client_name: 'Not a device',
        redirect_uris: ['https://app.example.com/cb'],
      });
      const other = await oidc.discovery(
        new URL(server.url),
        web.body.client_id,
        undefined,
        oidc.ClientSecretBasic(web.body.client_secret),
        { execute: [oidc.allowInsecureRequests] },
      );
      const refused = await oidc.initiateDeviceAuthorization(other, { scope: 'openid' }).catch((e) => e);
      // RFC 6749 §5.2 (which RFC 8628 §3.2 refers to): unauthorized_client.
      expect(refused).toMatchObject({
        error: 'unauthorized_client',
        error_description: expect.stringContaining('device_code'),
      });
    });
  },
);

describe('device code entry is limited per client address (embedded)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it('answers 429 with Retry-After after 30 attempts in 15 minutes', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 31; i += 1) {
      const res = await fetch(`${server.url}/device`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
        body: new URLSearchParams({ user_code: 'BBBB-BBBB', xsrf: 'x' }),
      });
      statuses.push(res.status);
      if (i === 30) expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    }
    expect(statuses.slice(0, 30).every((s) => s !== 429)).toBe(true);
    expect(statuses[30]).toBe(429);
  });
});
