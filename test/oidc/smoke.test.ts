import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { createUser, registerClient } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe('smoke', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('code + PKCE for a public client', async () => {
    const { email, password } = await createUser(server.t);
    const client = await registerClient(server.t, 'spa');
    const config = await oidc.discovery(new URL(server.url), client.clientId, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: client.redirectUri,
      scope: 'openid profile email offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      prompt: 'consent',
    });
    const browser = new FormBrowser(server.url);
    const login = await browser.go(url.toString());
    expect(login.status).toBe(200);
    const form = FormBrowser.form(login.html);
    const consent = await browser.go(form.action, { form: { ...form.fields, email, password } });
    expect(consent.status).toBe(200);
    const consentForm = FormBrowser.form(consent.html);
    const callback = await browser.go(consentForm.action, {
      form: { ...consentForm.fields, decision: 'approve' },
    });
    expect(callback.url.startsWith(client.redirectUri)).toBe(true);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(callback.url), {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    expect(tokens.refresh_token).toBeDefined();
    const claims = tokens.claims()!;
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info.email).toBe(email);
  });
});
