/**
 * Single sign-on without SSO_ALLOW_PRIVATE_NETWORKS: an upstream issuer on loopback is refused by
 * the SSRF guard before any request leaves (a page and an audit entry naming the blocked address);
 * a portal link to /sso/login/{connection} without a sign-in in progress starts one for the
 * account page with idp_hint; unknown connections and SAML connections with unusable metadata get their own pages.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { adminApi, randomTag, type AdminApi } from '../helpers/admin-api.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe('single sign-on guard rails', () => {
  let server: TestServer;
  let api: AdminApi;
  let loopback: string;
  let saml: string;
  const domain = `guarded-${randomTag()}.example`;

  beforeAll(async () => {
    server = await startTestServer();
    api = await adminApi(server.t);
    const res = await api.post('/v2/sso/connections', {
      provider: 'oidc',
      domain,
      // Our own server: a real OpenID provider, on a loopback address.
      issuer: server.url,
      client_id: 'anything',
    });
    expect(res.status).toBe(201);
    loopback = res.body.id as string;
    const samlRes = await api.post('/v2/sso/configure', {
      provider: 'saml',
      domain: `saml-${randomTag()}.example`,
      metadata_xml: '<EntityDescriptor/>',
    });
    saml = samlRes.body.id as string;
  });
  afterAll(() => server?.close());

  it('refuses an upstream on a private address, before sending anything to it', async () => {
    const browser = new FormBrowser(server.url);
    // A link from a portal: no sign-in in progress, so one for the account page starts, with idp_hint.
    const page = await browser.go(`/sso/login/${loopback}`);
    expect(browser.visited).toEqual(
      expect.arrayContaining(['GET /oauth/authorize', `GET /sso/login/${loopback}`]),
    );
    expect(page.status).toBe(502);
    expect(page.html).toContain('could not be reached or did not describe itself correctly');
    const audit = await api.get('/v2/audit', { action: 'sso.login_failed', target_id: loopback });
    expect(audit.body.data[0].details).toMatchObject({ reason: 'discovery' });
    expect(String(audit.body.data[0].details.message)).toMatch(/loopback|private|blocked|not allowed/i);
  });

  it('says so for an unknown connection and for a SAML one', async () => {
    const browser = new FormBrowser(server.url);
    const unknown = await browser.go(`/sso/login/sso_${randomTag()}`);
    expect(unknown.status).toBe(404);
    expect(unknown.html).toContain('There is no single sign-on connection with this name.');
    // shared/API.md's /sso/login/{provider}: the one enabled connection of that provider.
    const byProvider = await browser.go('/sso/login/oidc');
    expect(byProvider.status).toBe(502);
    const audit = await api.get('/v2/audit', { action: 'sso.login_failed', target_id: loopback });
    expect(audit.body.data.length).toBeGreaterThanOrEqual(1);
    // A SAML connection whose metadata describes no IdP: refused at the start, with the reason.
    const samlPage = await browser.go(`/sso/login/${saml}`);
    expect(samlPage.status).toBe(502);
    expect(samlPage.html).toContain('could not be reached or did not describe itself correctly');
    const samlAudit = await api.get('/v2/audit', { action: 'sso.login_failed', target_id: saml });
    expect(samlAudit.body.data[0].details).toMatchObject({
      reason: 'discovery',
      message: 'the metadata describes no identity provider (IDPSSODescriptor)',
    });
    // Its SP metadata needs nothing of the IdP's.
    const metadata = await fetch(`${server.url}/sso/saml/${saml}/metadata`);
    expect(metadata.status).toBe(200);
    expect(await metadata.text()).toContain(`entityID="${server.url}/sso/saml/${saml}/metadata"`);
    // An OIDC connection has no SAML endpoints.
    expect((await fetch(`${server.url}/sso/saml/${loopback}/metadata`)).status).toBe(501);
    const stale = await browser.go(`/sso/oidc/${loopback}/callback?code=x&state=never-issued`);
    expect(stale.status).toBe(400);
    expect(stale.html).toContain('unknown, expired or was used already');
  });
});
