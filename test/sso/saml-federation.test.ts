/**
 * Single sign-on through a real SAML 2.0 IdP (samlify, test/sso/saml-idp.ts), on every backend
 * pair: an openid-client authorization request to us, our sign-in page, an e-mail of the
 * connection's domain, our signed AuthnRequest (HTTP-Redirect) verified by the IdP, its signed
 * response posted to our ACS, the code, and our ID token with amr `fed`, `idp`, the mapped claims
 * and a just-in-time provisioned user. Refused, each with a page and an audit entry: an unsigned
 * assertion (bare, or inside a signed response), a tampered one, a wrong audience, an expired one,
 * a replayed response, a response to a request we never sent, an IdP-initiated one. A sign-in
 * started on one instance finishes on the other. The IdP's metadata comes from its URL.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import * as oidc from 'openid-client';

import { adminApi, randomTag, type AdminApi } from '../helpers/admin-api.js';
import { registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import { freePort } from '../helpers/processes.js';
import {
  authorizationRequest,
  discover,
  isConsentPage,
  isLoginPage,
  submit,
} from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import {
  keyAndCertificate,
  startSamlIdp,
  type ResponseOptions,
  type SamlIdp,
  type SamlUser,
} from './saml-idp.js';

const SSO_ENV = { SSO_ALLOW_PRIVATE_NETWORKS: 'true' };

describe.each(availableBackends())(
  'SAML single sign-on, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let second: TestServer;
    let idp: SamlIdp;
    let api: AdminApi;
    let web: TestClient;
    let config: oidc.Configuration;
    let role: string;
    let connection: string;
    let spMetadata: string;
    const domain = `saml-${randomTag()}.example`;

    beforeAll(async () => {
      server = await startTestServer({ ...backends, env: SSO_ENV });
      second = await startTestServer({
        ...backends,
        shareWith: server.t,
        env: { ...SSO_ENV, ISSUER: server.url },
      });
      api = await adminApi(server.t);
      web = await registerClient(server.t, 'web');
      config = await discover(server.url, web);
      role = (await api.createRole({ name: `saml-${randomTag()}` })).name;
      idp = await startSamlIdp(await freePort());
      const res = await api.post('/v2/sso/connections', {
        provider: 'saml',
        domain,
        metadata_url: idp.metadataUrl,
        auto_provision: true,
        default_role: role,
        attribute_mapping: {
          email: 'email',
          first_name: 'firstName',
          last_name: 'lastName',
          'metadata.department': 'department',
        },
      });
      expect(res.status).toBe(201);
      connection = res.body.id as string;
      const metadata = await fetch(`${server.url}/sso/saml/${connection}/metadata`);
      expect(metadata.status).toBe(200);
      spMetadata = await metadata.text();
    });
    afterAll(async () => {
      await idp?.close();
      await second?.close();
      await server?.close();
    });

    const acs = () => `${server.url}/sso/saml/${connection}/acs`;

    /** From the client's authorization request, through our sign-in page, to the IdP with our request. */
    async function toIdp(email: string, via: TestServer = server) {
      const browser = new FormBrowser(via.url);
      const request = await authorizationRequest(config, web.redirectUri, 'openid email profile');
      let page = await browser.go(request.url.toString());
      expect(isLoginPage(page)).toBe(true);
      expect(page.html).toContain('id="sso-hint"');
      page = await submit(browser, page, { email, password: '' });
      expect(page.status).toBe(0);
      expect(page.url.startsWith(`${idp.entityId.replace('/metadata', '')}/sso?`)).toBe(true);
      const received = await idp.receive(page.url, spMetadata);
      return { browser, request, requestId: received.id, received };
    }

    /** The browser posts the IdP's response to our ACS; then consent, the code, our tokens. */
    async function finish(
      browser: FormBrowser,
      samlResponse: string,
      request: Awaited<ReturnType<typeof toIdp>>['request'],
    ) {
      let page: Page = await browser.go(acs(), { form: { SAMLResponse: samlResponse } });
      if (isConsentPage(page)) page = await submit(browser, page, { decision: 'approve' });
      if (page.status !== 0) {
        const why =
          page.status === 401 ? JSON.stringify((await lastFailure()).details) : page.html.slice(0, 1500);
        throw new Error(`stopped at ${page.url} (${page.status}): ${why}`);
      }
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
        idTokenExpected: true,
      });
      return tokens.claims()!;
    }

    const person = (): SamlUser => {
      const email = `ada-${randomTag()}@${domain}`;
      return {
        nameId: email,
        attributes: { email, firstName: 'Ada', lastName: 'Lovelace', department: 'Engines' },
      };
    };

    async function lastFailure() {
      const res = await api.get('/v2/audit', { action: 'sso.login_failed', target_id: connection });
      return res.body.data[0] as { details: { reason: string; message: string } };
    }

    /** A response the ACS must refuse: the page's status and text, and the audit entry's reason. */
    async function refused(options: ResponseOptions, status: number, reason: string, text: RegExp) {
      const { browser, requestId } = await toIdp(`eve-${randomTag()}@${domain}`);
      const response = await idp.respond(spMetadata, requestId, person(), options);
      const page = await browser.go(acs(), { form: { SAMLResponse: response } });
      expect(page.status).toBe(status);
      expect(page.html).toMatch(text);
      const failure = await lastFailure();
      expect(failure.details.reason).toBe(reason);
      return failure.details.message;
    }

    it('publishes SP metadata with our entity ID, ACS URL and signing certificate', () => {
      expect(spMetadata).toContain(`entityID="${server.url}/sso/saml/${connection}/metadata"`);
      expect(spMetadata).toContain(`Location="${acs()}"`);
      expect(spMetadata).toContain('urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST');
      expect(spMetadata).toMatch(/<(ds:)?X509Certificate>[A-Za-z0-9+/=\s]{200,}<\/(ds:)?X509Certificate>/);
      expect(spMetadata).toContain('AuthnRequestsSigned="true"');
      expect(spMetadata).toContain('WantAssertionsSigned="true"');
    });

    it('signs a new user in through the IdP, provisions them, and our ID token says so', async () => {
      const user = person();
      const { browser, request, requestId, received } = await toIdp(user.nameId);
      expect(received.issuer).toBe(`${server.url}/sso/saml/${connection}/metadata`);
      const claims = await finish(browser, await idp.respond(spMetadata, requestId, user), request);
      expect(claims.amr).toEqual(['fed']);
      expect(claims.idp).toBe(connection);
      expect(claims).toMatchObject({ email: user.nameId, given_name: 'Ada', family_name: 'Lovelace' });
      const found = await server.t.stores.durable.users.findByEmail(user.nameId);
      const shown = await api.get(`/v2/users/${found!.id}`);
      expect(shown.body).toMatchObject({
        id: claims.sub,
        email: user.nameId,
        first_name: 'Ada',
        last_name: 'Lovelace',
        role,
        email_verified: false,
        metadata: { department: 'Engines' },
        identities: [{ connection, subject: user.nameId }],
      });
      const logins = await api.get('/v2/audit', { action: 'sso.login', target_id: connection });
      expect(logins.body.data.some((e: { actor: { id: string } }) => e.actor.id === claims.sub)).toBe(true);
    });

    it('accepts every signing certificate of inline metadata (an IdP in the middle of a rollover)', async () => {
      // The IdP's metadata as an operator pastes it, listing a new certificate before the one in use.
      const next = (await keyAndCertificate()).cert.replace(/-----[A-Z ]+-----|\s/g, '');
      const prefix = /<(\w+:)?KeyDescriptor/.exec(idp.metadataXml)!;
      const [tag, ns = ''] = [prefix[0], prefix[1] ?? ''];
      const extra = `${tag} use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>${next}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></${ns}KeyDescriptor>`;
      const rollover = idp.metadataXml.replace(tag, `${extra}${tag}`);
      expect(rollover.match(/X509Certificate>/g)!.length).toBe(4);
      const rolloverDomain = `rollover-${randomTag()}.example`;
      const res = await api.post('/v2/sso/connections', {
        provider: 'saml',
        domain: rolloverDomain,
        metadata_xml: rollover,
        auto_provision: true,
      });
      expect(res.status).toBe(201);
      const id = res.body.id as string;
      const metadata = await (await fetch(`${server.url}/sso/saml/${id}/metadata`)).text();
      const email = `grace-${randomTag()}@${rolloverDomain}`;
      const browser = new FormBrowser(server.url);
      const request = await authorizationRequest(config, web.redirectUri, 'openid email');
      let page = await submit(browser, await browser.go(request.url.toString()), { email, password: '' });
      const { id: requestId } = await idp.receive(page.url, metadata);
      const response = await idp.respond(metadata, requestId, { nameId: email, attributes: { email } });
      page = await browser.go(`${server.url}/sso/saml/${id}/acs`, { form: { SAMLResponse: response } });
      if (isConsentPage(page)) page = await submit(browser, page, { decision: 'approve' });
      expect(page.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
        idTokenExpected: true,
      });
      expect(tokens.claims()).toMatchObject({ email, amr: ['fed'], idp: id });
    });

    it('finishes on the other instance a sign-in started on this one', async () => {
      const user = person();
      const { browser, request, requestId } = await toIdp(user.nameId);
      const response = await idp.respond(spMetadata, requestId, user);
      // The IdP's form posts to the other instance (same public URL behind a load balancer).
      const atSecond = await new FormBrowser(second.url).go(`${second.url}/sso/saml/${connection}/acs`, {
        form: { SAMLResponse: response },
      });
      expect(atSecond.status).toBe(0);
      expect(atSecond.url.startsWith(`${server.url}/oauth/`)).toBe(true);
      // The browser that started the sign-in resumes it (its resume cookie) and gets our tokens.
      let page = await browser.go(atSecond.url);
      if (isConsentPage(page)) page = await submit(browser, page, { decision: 'approve' });
      expect(page.status).toBe(0);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
        idTokenExpected: true,
      });
      expect(tokens.claims()).toMatchObject({ email: user.nameId, amr: ['fed'], idp: connection });
      // The same response again, at the first instance: the request was taken already.
      const again = await browser.go(acs(), { form: { SAMLResponse: response } });
      expect(again.status).toBe(400);
      expect(again.html).toContain('unknown, expired or was used already');
      expect((await lastFailure()).details.reason).toBe('state');
    });

    it('refuses a replayed response (the same InResponseTo twice)', async () => {
      const user = person();
      const { browser, request, requestId } = await toIdp(user.nameId);
      const response = await idp.respond(spMetadata, requestId, user);
      await finish(browser, response, request);
      const replay = await new FormBrowser(server.url).go(acs(), { form: { SAMLResponse: response } });
      expect(replay.status).toBe(400);
      expect(replay.html).toContain('unknown, expired or was used already');
      expect((await lastFailure()).details.reason).toBe('state');
    });

    it('refuses a response to a request we never sent', async () => {
      await refused(
        { values: { InResponseTo: `_never-${randomTag()}` } },
        400,
        'state',
        /unknown, expired or was used/,
      );
    });

    it('refuses IdP-initiated sign-on', async () => {
      const message = await refused(
        { template: (t) => t.replaceAll(' InResponseTo="{InResponseTo}"', '') },
        400,
        'idp_initiated',
        /not started here \(IdP-initiated sign-on\)/,
      );
      expect(message).toMatch(/IdP-initiated/);
    });

    it('refuses an assertion that is not signed, even inside a signed response', async () => {
      const message = await refused({ unsignedAssertion: true }, 401, 'validation', /could not be verified/);
      expect(message).toMatch(/signature/i);
      // No signature at all: the response as the IdP would send it before signing.
      const { browser, requestId } = await toIdp(`bare-${randomTag()}@${domain}`);
      const signed = Buffer.from(await idp.respond(spMetadata, requestId, person()), 'base64').toString(
        'utf8',
      );
      const bare = signed.replace(/<ds:Signature[\s\S]*?<\/ds:Signature>/g, '');
      expect(bare).not.toContain('Signature');
      const page = await browser.go(acs(), { form: { SAMLResponse: Buffer.from(bare).toString('base64') } });
      expect(page.status).toBe(401);
      expect((await lastFailure()).details.reason).toBe('validation');
    });

    it('refuses a tampered assertion (one attribute changed after signing)', async () => {
      const { browser, requestId } = await toIdp(`mallory-${randomTag()}@${domain}`);
      const signed = Buffer.from(await idp.respond(spMetadata, requestId, person()), 'base64').toString(
        'utf8',
      );
      const tampered = signed.replace('>Engines<', '>Finance<');
      expect(tampered).not.toBe(signed);
      const page = await browser.go(acs(), {
        form: { SAMLResponse: Buffer.from(tampered).toString('base64') },
      });
      expect(page.status).toBe(401);
      expect(page.html).toContain('could not be verified');
      expect((await lastFailure()).details).toMatchObject({ reason: 'validation' });
    });

    it('refuses an assertion for another audience', async () => {
      const message = await refused(
        { values: { Audience: 'https://other-sp.example/metadata' } },
        401,
        'validation',
        /could not be verified/,
      );
      expect(message).toMatch(/audience/i);
    });

    it('refuses an expired assertion', async () => {
      const past = new Date(Date.now() - 3_600_000).toISOString();
      const message = await refused(
        {
          values: {
            IssueInstant: new Date(Date.now() - 3_700_000).toISOString(),
            ConditionsNotBefore: new Date(Date.now() - 3_700_000).toISOString(),
            ConditionsNotOnOrAfter: past,
            SubjectConfirmationDataNotOnOrAfter: past,
          },
        },
        401,
        'validation',
        /could not be verified/,
      );
      expect(message).toMatch(/expired|NotOnOrAfter|subject confirmation/i);
    });

    it('refuses an assertion addressed to another ACS (Recipient)', async () => {
      const message = await refused(
        { values: { SubjectRecipient: 'https://other-sp.example/acs' } },
        401,
        'validation',
        /could not be verified/,
      );
      expect(message).toMatch(/Recipient/);
    });
  },
);
