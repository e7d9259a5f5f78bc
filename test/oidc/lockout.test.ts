/**
 * Brute-force protection on the login form: after LOGIN_MAX_FAILURES wrong passwords the account is
 * locked (429 with Retry-After, the right password refused too), and however many wrong passwords
 * arrive at once, no more than LOGIN_MAX_FAILURES of them reach the password check. The counters are
 * in Redis when it is configured, else in the embedded store, so this runs on every backend.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';

import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import { authorizationRequest, discover, isLoginPage, submit } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const MAX_FAILURES = 5;
const LOCKOUT_S = 60;
const PARALLEL = 50;

describe.each(availableBackends())(
  'login lockout with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let client: TestClient;
    beforeAll(async () => {
      server = await startTestServer({
        durable,
        shortLived,
        env: {
          LOGIN_MAX_FAILURES: String(MAX_FAILURES),
          LOGIN_LOCKOUT_BASE_S: String(LOCKOUT_S),
          // Every request here comes from 127.0.0.1; keep the per-address limit out of the way so
          // what is measured is the per-account limit.
          LOGIN_IP_MAX_FAILURES: '10000',
        },
      });
      client = await registerClient(server.t, 'spa');
    });
    afterAll(() => server.close());

    /** A browser sitting on a fresh login page (its own interaction, cookies and CSRF token). */
    async function openLoginPage(): Promise<{ browser: FormBrowser; page: Page }> {
      const config = await discover(server.url, client);
      const request = await authorizationRequest(config, client.redirectUri, 'openid');
      const browser = new FormBrowser(server.url);
      const page = await browser.go(request.url.toString());
      expect(isLoginPage(page)).toBe(true);
      return { browser, page };
    }

    /** Counts the password checks the server makes from now on. */
    function countPasswordChecks(): { count(): number; restore(): void } {
      const spy = jest.spyOn(server.t.services.passwords, 'verify');
      return { count: () => spy.mock.calls.length, restore: () => spy.mockRestore() };
    }

    it('POST /interaction/:uid/login locks an account after LOGIN_MAX_FAILURES wrong passwords: 429, Retry-After, right password refused', async () => {
      const user = await createUser(server.t);
      const { browser, page } = await openLoginPage();
      for (let i = 0; i < MAX_FAILURES; i += 1) {
        const wrong = await submit(browser, page, { email: user.email, password: `wrong ${i}` });
        expect(wrong.status).toBe(401);
        expect(wrong.html).toContain('The email or password is incorrect.');
      }

      const locked = await submit(browser, page, { email: user.email, password: 'wrong again' });
      expect(locked.status).toBe(429);
      const retryAfter = Number(locked.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(LOCKOUT_S);
      expect(locked.html).toContain('Too many sign-in attempts. Try again in 1 minute(s).');

      const checks = countPasswordChecks();
      try {
        const right = await submit(browser, page, { email: user.email, password: user.password });
        expect(right.status).toBe(429);
        expect(Number(right.headers.get('retry-after'))).toBeLessThanOrEqual(LOCKOUT_S);
        // Refused before the password was even looked at.
        expect(checks.count()).toBe(0);
      } finally {
        checks.restore();
      }

      // The lock is per account: another user signs in from the same address meanwhile.
      const other = await createUser(server.t);
      const fresh = await openLoginPage();
      const signedIn = await submit(fresh.browser, fresh.page, {
        email: other.email,
        password: other.password,
      });
      expect(signedIn.status).toBe(200);
      expect(signedIn.html).toContain('/consent');
    });

    it('treats an unknown email like a wrong password, and locks it the same way', async () => {
      const email = `nobody-${Date.now()}@example.com`;
      const { browser, page } = await openLoginPage();
      const statuses: number[] = [];
      const messages = new Set<string>();
      for (let i = 0; i <= MAX_FAILURES; i += 1) {
        const res = await submit(browser, page, { email, password: 'whatever it is' });
        statuses.push(res.status);
        if (res.status === 401) messages.add(/id="login-error">([^<]*)</.exec(res.html)?.[1] ?? '');
      }
      expect(statuses).toEqual([...Array<number>(MAX_FAILURES).fill(401), 429]);
      expect([...messages]).toEqual(['The email or password is incorrect.']);
    });

    it(`${PARALLEL} parallel wrong passwords from separate browsers get exactly LOGIN_MAX_FAILURES password checks`, async () => {
      const user = await createUser(server.t);
      // Each attacker has its own interaction, cookies and CSRF token, so nothing on the way
      // (interaction lookups, cookies) serializes the requests before the throttle sees them.
      const attackers = await Promise.all(Array.from({ length: PARALLEL }, () => openLoginPage()));
      const checks = countPasswordChecks();
      let responses: Page[];
      try {
        responses = await Promise.all(
          attackers.map(({ browser, page }, i) =>
            submit(browser, page, { email: user.email, password: `guess ${i}` }),
          ),
        );
        expect(checks.count()).toBe(MAX_FAILURES);
      } finally {
        checks.restore();
      }
      const statuses = responses.map((r) => r.status);
      expect(statuses.filter((s) => s === 401)).toHaveLength(MAX_FAILURES);
      expect(statuses.filter((s) => s === 429)).toHaveLength(PARALLEL - MAX_FAILURES);
      for (const res of responses.filter((r) => r.status === 429)) {
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      }

      // And the account stays locked for the right password.
      const { browser, page } = await openLoginPage();
      expect((await submit(browser, page, { email: user.email, password: user.password })).status).toBe(429);
    });

    it(`${PARALLEL} parallel wrong passwords posting one login form get exactly LOGIN_MAX_FAILURES password checks`, async () => {
      const user = await createUser(server.t);
      // A script replaying one form: same interaction, same cookies, same CSRF token.
      const { browser, page } = await openLoginPage();
      const checks = countPasswordChecks();
      let statuses: number[];
      try {
        const responses = await Promise.all(
          Array.from({ length: PARALLEL }, (_, i) =>
            submit(browser, page, { email: user.email, password: `guess ${i}` }),
          ),
        );
        statuses = responses.map((r) => r.status);
        expect(checks.count()).toBe(MAX_FAILURES);
      } finally {
        checks.restore();
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(MAX_FAILURES);
      expect(statuses.filter((s) => s === 429)).toHaveLength(PARALLEL - MAX_FAILURES);
    });
  },
);
