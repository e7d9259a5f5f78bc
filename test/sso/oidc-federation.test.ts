/**
 * Single sign-on through a real upstream OpenID provider (test/sso/upstream-oidc.ts), on every
 * backend pair: an openid-client authorization request to us, our sign-in page, an e-mail of the
 * connection's domain, the upstream's sign-in, back to us, the code, and our ID token with amr
 * `fed`, the mapped claims and `idp`. Just-in-time provisioning on and off, the linking rule, the
 * attribute update on the next sign-in, a wrong issuer and a wrong nonce refused with a page and an
 * audit entry, a state taken once, and a sign-in started on one instance finished by another.
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
import { startUpstream, type Upstream } from './upstream-oidc.js';

const SSO_ENV = { SSO_ALLOW_PRIVATE_NETWORKS: 'true' };

describe.each(availableBackends())(
  'OIDC single sign-on, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let second: TestServer;
    let upstream: Upstream;
    let api: AdminApi;
    let web: TestClient;
    let config: oidc.Configuration;
    let role: string;
    const domain = `acme-${randomTag()}.example`;
    const closedDomain = `closed-${randomTag()}.example`;
    const otherDomain = `other-${randomTag()}.example`;
    let jit: string;
    let closed: string;
    let wrongIssuer: string;

    beforeAll(async () => {
      server = await startTestServer({ ...backends, env: SSO_ENV });
      // The same data and the same public URL (as behind a load balancer).
      second = await startTestServer({
        ...backends,
        shareWith: server.t,
        env: { ...SSO_ENV, ISSUER: server.url },
      });
      api = await adminApi(server.t);
      web = await registerClient(server.t, 'web');
      config = await discover(server.url, web);
      role = (await api.createRole({ name: `sso-${randomTag()}` })).name;
      const upstreamPort = await freePort();
      const upstreamIssuer = `http://127.0.0.1:${upstreamPort}`;
      const connection = async (body: Record<string, unknown>) => {
        const res = await api.post('/v2/sso/connections', body);
        expect(res.status).toBe(201);
        return res.body.id as string;
      };
      const common = {
        provider: 'oidc',
        client_id: 'latchkey-at-upstream',
        client_secret: 'upstream-client-secret-0123456789',
      };
      jit = await connection({
        ...common,
        domain,
        issuer: upstreamIssuer,
        auto_provision: true,
        default_role: role,
        scopes: ['openid', 'email', 'profile'],
        attribute_mapping: {
          email: 'email',
          first_name: 'given_name',
          last_name: 'family_name',
          'metadata.department': 'department',
        },
      });
      closed = await connection({
        ...common,
        domain: closedDomain,
        issuer: upstreamIssuer,
        auto_provision: false,
      });
      // The upstream calls itself 127.0.0.1: discovery through "localhost" finds another issuer.
      wrongIssuer = await connection({
        ...common,
        domain: otherDomain,
        issuer: `http://localhost:${upstreamPort}`,
      });
      upstream = await startUpstream(
        upstreamPort,
        [jit, closed, wrongIssuer].map((id) => `${server.url}/sso/oidc/${id}/callback`),
      );
    });
    afterAll(async () => {
      await upstream?.close();
      await second?.close();
      await server?.close();
    });

    /** From the client's authorization request to the upstream's authorization URL. */
    async function toUpstream(email: string, params: Record<string, string> = {}) {
      const browser = new FormBrowser(server.url);
      const request = await authorizationRequest(config, web.redirectUri, 'openid email profile', params);
      let page = await browser.go(request.url.toString());
      if (isLoginPage(page)) {
        expect(page.html).toContain('id="sso-hint"');
        page = await submit(browser, page, { email, password: '' });
      }
      return { browser, request, page };
    }

    /** Signs in at the upstream as `login`; returns where it sends the browser back to (our callback). */
    async function atUpstream(url: string, login: string): Promise<string> {
      expect(url.startsWith(`${upstream.issuer}/`)).toBe(true);
      const browser = new FormBrowser(upstream.issuer);
      let page = await browser.go(url);
      for (let step = 0; step < 4 && page.status !== 0; step += 1) {
        page = await submit(browser, page, /name="login"/.test(page.html) ? { login, password: 'any' } : {});
      }
      expect(page.status).toBe(0);
      return page.url;
    }

    /** Back at us: consent, then the client's code, exchanged and checked by openid-client. */
    async function finish(
      browser: FormBrowser,
      callback: string,
      request: Awaited<ReturnType<typeof toUpstream>>['request'],
    ) {
      let page: Page = await browser.go(callback);
      if (isConsentPage(page)) page = await submit(browser, page, { decision: 'approve' });
      if (page.status !== 0)
        throw new Error(`stopped at ${page.url} (${page.status}):\n${page.html.slice(0, 1500)}`);
      const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
        idTokenExpected: true,
      });
      return tokens.claims()!;
    }

    /** The user of an address as GET /v2/users/{id} shows it; undefined when there is none. */
    async function userByEmail(email: string): Promise<Record<string, unknown> | undefined> {
      const found = await server.t.stores.durable.users.findByEmail(email);
      if (!found) return undefined;
      const res = await api.get(`/v2/users/${found.id}`);
      expect(res.status).toBe(200);
      return res.body as Record<string, unknown>;
    }

    async function auditOf(action: string, targetId: string) {
      const res = await api.get('/v2/audit', { action, target_id: targetId });
      return res.body.data as {
        action: string;
        actor: { id: string };
        details: Record<string, unknown>;
        changes: Record<string, unknown>;
      }[];
    }

    it('signs a new user in through the upstream, provisions them, and our ID token says so', async () => {
      const login = `alice-${randomTag()}`;
      const email = `${login}@${domain}`;
      upstream.accounts.set(login, {
        email,
        email_verified: true,
        given_name: 'Alice',
        family_name: 'Liddell',
        department: 'Research',
      });
      const { browser, request, page } = await toUpstream(email);
      const callback = await atUpstream(page.url, login);
      expect(callback.startsWith(`${server.url}/sso/oidc/${jit}/callback?`)).toBe(true);
      const claims = await finish(browser, callback, request);
      expect(claims.amr).toEqual(['fed']);
      expect(claims.idp).toBe(jit);
      expect(claims).toMatchObject({
        email,
        email_verified: true,
        given_name: 'Alice',
        family_name: 'Liddell',
      });

      const user = await userByEmail(email);
      expect(user).toMatchObject({
        id: claims.sub,
        email,
        first_name: 'Alice',
        last_name: 'Liddell',
        role,
        email_verified: true,
        metadata: { department: 'Research' },
        identities: [{ connection: jit, subject: login }],
      });
      const created = await api.get('/v2/audit', { action: 'user.created', target_id: String(claims.sub) });
      expect(created.body.data[0].actor).toMatchObject({ type: 'system', id: `sso:${jit}` });
      expect((await auditOf('sso.login', jit)).some((e) => e.actor.id === claims.sub)).toBe(true);

      // The next sign-in brings the IdP's changes: user.updated with the changed fields only.
      upstream.accounts.set(login, {
        email,
        email_verified: true,
        given_name: 'Alice',
        family_name: 'Hargreaves',
        department: 'Research',
      });
      const again = await toUpstream(email);
      const claims2 = await finish(again.browser, await atUpstream(again.page.url, login), again.request);
      expect(claims2.sub).toBe(claims.sub);
      expect(claims2.family_name).toBe('Hargreaves');
      const updated = await api.get('/v2/audit', { action: 'user.updated', target_id: String(claims.sub) });
      const changes = updated.body.data[0].changes as Record<string, unknown>;
      expect(changes.last_name).toEqual({ before: 'Liddell', after: 'Hargreaves' });
      expect(Object.keys(changes).sort()).toEqual(['last_name', 'updated_at']);
    });

    it('goes to the upstream at once for idp_hint, and for a login_hint of a connected domain', async () => {
      const byIdp = await toUpstream('', { idp_hint: jit });
      expect(byIdp.page.status).toBe(0);
      expect(byIdp.page.url.startsWith(`${upstream.issuer}/`)).toBe(true);
      const email = `hinted-${randomTag()}@${domain}`;
      const byHint = await toUpstream('', { login_hint: email });
      expect(byHint.page.status).toBe(0);
      expect(new URL(byHint.page.url).searchParams.get('login_hint')).toBe(email);
      // An address elsewhere keeps the password form.
      const browser = new FormBrowser(server.url);
      const request = await authorizationRequest(config, web.redirectUri, 'openid', {
        login_hint: 'someone@example.com',
      });
      expect(isLoginPage(await browser.go(request.url.toString()))).toBe(true);
    });

    it('links an existing user only by an address the IdP asserts verified', async () => {
      const local = await api.createUser({ email: `bob-${randomTag()}@${domain}`, email_verified: true });
      const unverified = `bob-unverified-${randomTag()}`;
      upstream.accounts.set(unverified, { email: local.email, email_verified: false });
      const first = await toUpstream(local.email);
      const refused = await first.browser.go(await atUpstream(first.page.url, unverified));
      expect(refused.status).toBe(403);
      expect(refused.html).toContain('not_provisioned');
      expect((await userByEmail(local.email))!.identities).toEqual([]);

      const verified = `bob-${randomTag()}`;
      upstream.accounts.set(verified, { email: local.email, email_verified: true, given_name: 'Bob' });
      const second = await toUpstream(local.email);
      const claims = await finish(
        second.browser,
        await atUpstream(second.page.url, verified),
        second.request,
      );
      expect(claims.sub).toBe(local.id);
      expect((await userByEmail(local.email))!.identities).toEqual([{ connection: jit, subject: verified }]);
    });

    it('without auto_provision an unknown user gets a clear page, and no account', async () => {
      const login = `carol-${randomTag()}`;
      const email = `${login}@${closedDomain}`;
      upstream.accounts.set(login, { email, email_verified: true });
      const { browser, page } = await toUpstream(email);
      const refused = await browser.go(await atUpstream(page.url, login));
      expect(refused.status).toBe(403);
      expect(refused.html).toContain('accounts are not created automatically for this connection');
      expect(await userByEmail(email)).toBeUndefined();
      const failures = await auditOf('sso.login_failed', closed);
      expect(failures[0]!.details).toMatchObject({ reason: 'not_provisioned' });
    });

    it('does not provision over the address of a soft-deleted user', async () => {
      const gone = await api.createUser({ email: `gina-${randomTag()}@${domain}` });
      expect((await api.delete(`/v2/users/${gone.id}`, { soft_delete: true })).status).toBe(200);
      const login = `gina-${randomTag()}`;
      upstream.accounts.set(login, { email: gone.email, email_verified: true });
      const { browser, page } = await toUpstream(gone.email);
      const refused = await browser.go(await atUpstream(page.url, login));
      expect(refused.status).toBe(403);
      expect(refused.html).toContain('not_provisioned');
      const failures = await auditOf('sso.login_failed', jit);
      expect(String(failures[0]!.details.message)).toContain('USER_ALREADY_EXISTS');
    });

    it('refuses an upstream whose discovery names another issuer, with a page and an audit entry', async () => {
      const { page } = await toUpstream(`dave@${otherDomain}`);
      expect(page.status).toBe(502);
      expect(page.html).toContain('could not be reached or did not describe itself correctly');
      const failures = await auditOf('sso.login_failed', wrongIssuer);
      expect(failures[0]!.details).toMatchObject({ reason: 'discovery' });
      expect(String(failures[0]!.details.message)).toMatch(/issuer/i);
    });

    it('refuses an ID token whose nonce is not the one sent', async () => {
      const login = `erin-${randomTag()}`;
      const email = `${login}@${domain}`;
      upstream.accounts.set(login, { email, email_verified: true });
      const { browser, page } = await toUpstream(email);
      const state = new URL(page.url).searchParams.get('state')!;
      // The nonce we keep for this state no longer matches the one the upstream puts in its ID token.
      const adapter = server.t.stores.artifacts.adapterFor('SsoState');
      const stored = (await adapter.find(state))!;
      await adapter.upsert(state, { ...stored, nonce: 'another-nonce' }, 600);
      const refused = await browser.go(await atUpstream(page.url, login));
      expect(refused.status).toBe(401);
      expect(refused.html).toContain('could not be verified');
      const failures = await auditOf('sso.login_failed', jit);
      expect(failures[0]!.details).toMatchObject({ reason: 'validation' });
      expect(String(failures[0]!.details.message)).toMatch(/nonce/i);
      expect(await userByEmail(email)).toBeUndefined();
    });

    it('finishes on another instance a sign-in started on this one, and takes the state once', async () => {
      const login = `frank-${randomTag()}`;
      const email = `${login}@${domain}`;
      upstream.accounts.set(login, { email, email_verified: true, given_name: 'Frank' });
      const { browser, request, page } = await toUpstream(email);
      const callback = new URL(await atUpstream(page.url, login));
      // The callback reaches the second instance (same public URL, another process).
      const onSecond = await fetch(`${second.url}${callback.pathname}${callback.search}`, {
        redirect: 'manual',
        headers: { cookie: browser.cookieHeader(), accept: 'text/html' },
      });
      expect(onSecond.status).toBe(303);
      const resume = onSecond.headers.get('location')!;
      expect(resume.startsWith(`${server.url}/oauth/`)).toBe(true);
      // The same answer again, on the first instance: refused, the state is gone.
      const replay = await browser.go(callback.toString());
      expect(replay.status).toBe(400);
      expect(replay.html).toContain('was used already');
      const claims = await finish(browser, resume, request);
      expect(claims).toMatchObject({ email, amr: ['fed'], idp: jit });
    });
  },
);
