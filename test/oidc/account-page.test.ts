import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { ACCOUNT_CLIENT_ID } from '../../src/account/router.js';
import { StoreConflictError } from '../../src/store/errors.js';
import { createUser } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe.each(availableBackends())(
  'GET /account with durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer(backends);
    });
    afterAll(() => server.close());

    async function signIn(browser: FormBrowser, email: string, password: string) {
      const login = await browser.go('/account');
      expect(login.status).toBe(200);
      expect(login.html).toContain('Sign in to Your account');
      const form = FormBrowser.form(login.html);
      return browser.go(form.action, { form: { ...form.fields, email, password } });
    }

    it('sends a visitor without a session to sign in, then shows who is signed in without a consent page', async () => {
      const { email, password, user } = await createUser(server.t, { first_name: 'Ada' });
      const browser = new FormBrowser(server.url);
      const page = await signIn(browser, email, password);
      expect(page.url).toBe(`${server.url}/account`);
      expect(page.status).toBe(200);
      expect(page.html).toContain('Signed in as Ada User');
      expect(page.html).toContain(email);
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect((await server.t.stores.durable.users.findById(user.id))!.login_count).toBe(1);

      // The session is what the page reads: a second visit does not sign in again.
      const again = await browser.go('/account');
      expect(again.url).toBe(`${server.url}/account`);
      expect(again.html).toContain('Signed in as Ada User');
    });

    it('signs out through RP-initiated logout and asks to sign in again afterwards', async () => {
      const { email, password } = await createUser(server.t);
      const browser = new FormBrowser(server.url);
      const page = await signIn(browser, email, password);
      const signOutHref = /href="([^"]*\/oauth\/logout[^"]*)"/.exec(page.html)![1]!.replace(/&amp;/g, '&');
      const confirm = await browser.go(signOutHref);
      expect(confirm.html).toContain('Sign out everywhere');
      const form = FormBrowser.form(confirm.html);
      const after = await browser.go(form.action, { form: { ...form.fields, logout: 'yes' } });
      // Signed out, the account page sends the browser back to the sign-in page.
      expect(after.url).toMatch(/\/interaction\/[\w-]+$/);
      expect(after.html).toContain('Sign in to Your account');
    });

    it('signs in with a code request and PKCE S256 (no response_type=none)', async () => {
      const { email, password } = await createUser(server.t);
      const browser = new FormBrowser(server.url);
      const start = await fetch(`${server.url}/account`, { redirect: 'manual' });
      const authorize = new URL(start.headers.get('location')!);
      expect(authorize.pathname).toBe('/oauth/authorize');
      expect(authorize.searchParams.get('response_type')).toBe('code');
      expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
      expect(authorize.searchParams.get('code_challenge')).toMatch(/^[\w-]{43}$/);

      const page = await signIn(browser, email, password);
      expect(page.html).toContain('Signed in as');
      // The code came back to the account page's callback, which sends the browser on to the page.
      expect(browser.visited).toContain('GET /account/callback');
    });

    it('does not issue tokens for the account page, and keeps its client id reserved', async () => {
      const res = await fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: ACCOUNT_CLIENT_ID }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: 'invalid_request',
        error_description: 'requested grant type is not allowed for this client',
      });
      await expect(
        server.t.services.clientService.create({ client_id: ACCOUNT_CLIENT_ID, kind: 'spa', metadata: {} }),
      ).rejects.toEqual(new StoreConflictError('client_id'));
    });

    it('shows a fixed message when signing in was cancelled, never text from the query', async () => {
      const res = await fetch(
        `${server.url}/account/callback?error=access_denied&error_description=${encodeURIComponent('<b>Call +1 555</b>')}`,
      );
      expect(res.status).toBe(400);
      const html = await res.text();
      expect(html).toContain('You cancelled signing in');
      expect(html).not.toContain('555');
    });
  },
);
