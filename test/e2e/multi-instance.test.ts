/**
 * Two server processes as one service: different ports, one issuer (the address of a load balancer
 * in front of both), the same cookie and key-encryption secrets, one MongoDB-wire database and one
 * Redis key space, and a DATA_DIR each (so nothing passes between them but those stores). Every
 * request goes through the balancer, which the test tells which instance must answer; its log
 * confirms who did. Whatever one instance starts or changes, the other must honour: codes,
 * sessions, refresh-token rotation, lockout and rate-limit counters, signing keys, suspensions and
 * client settings (the last two within their documented cache bounds).
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import * as oidc from 'openid-client';

import { describeWithRedisAndMongo, tempDir } from '../helpers/backends.js';
import {
  call,
  clientCredentialsToken,
  clusterEnv,
  clusterStores,
  pollUntil,
  removeClusterData,
  startInstance,
  stopInstance,
  type ClusterStores,
  type Instance,
} from '../helpers/cluster.js';
import { FormBrowser, type Page } from '../helpers/form-browser.js';
import { LoadBalancer } from '../helpers/load-balancer.js';
import { CLI, runToEnd } from '../helpers/processes.js';
import {
  authorizationRequest,
  discover,
  isLoginPage,
  oauthFailure,
  signIn,
  submit,
  type AuthorizationRequest,
} from '../helpers/relying-party.js';

const CLIENT_CACHE_TTL_S = 2;
const KEY_REFRESH_INTERVAL_S = 1;
const MAX_FAILURES = 4;
/** Beyond a setting's own bound, what a busy two-core machine may add before a poll sees the change. */
const SLACK_MS = 4000;
const PASSWORD = 'correct horse battery staple';
const OFFLINE = { scope: 'openid email offline_access', params: { prompt: 'consent' } };

const INVALID_GRANT = { status: 400, error: 'invalid_grant', error_description: 'grant request is invalid' };
const INVALID_TOKEN = { status: 401, error: 'invalid_token', error_description: 'invalid token provided' };

type Name = 'A' | 'B';

describeWithRedisAndMongo('two server processes sharing Redis and MongoDB behind one issuer', (urls) => {
  let lb: LoadBalancer;
  let stores: ClusterStores;
  let env: Record<string, string>;
  const instances: Instance[] = [];
  let admin: string;

  beforeAll(async () => {
    lb = await LoadBalancer.start();
    stores = clusterStores(urls);
    env = {
      ...clusterEnv(lb.url, stores),
      CLIENT_CACHE_TTL_S: String(CLIENT_CACHE_TTL_S),
      SIGNING_KEY_REFRESH_INTERVAL_S: String(KEY_REFRESH_INTERVAL_S),
      LOGIN_MAX_FAILURES: String(MAX_FAILURES),
      LOGIN_LOCKOUT_BASE_S: '300',
      // Every request comes from 127.0.0.1; keep the per-address limit out of the way.
      LOGIN_IP_MAX_FAILURES: '10000',
      LOG_LEVEL: 'warn',
    };
    // One after the other, as a rolling start would: B finds what A bootstrapped.
    for (const name of ['A', 'B'] as const) {
      const instance = await startInstance(name, env);
      instances.push(instance);
      lb.add(name, instance.baseUrl);
    }
    admin = await clientCredentialsToken(lb.url, { backend: 'A' });
  }, 120_000);

  afterAll(async () => {
    for (const instance of instances) await stopInstance(instance);
    await lb?.close();
    if (stores) await removeClusterData(stores);
  }, 60_000);

  /** Sends the following balancer traffic (browser, openid-client) to `name`; returns a log mark. */
  function route(name: Name): number {
    lb.target = name;
    return lb.forwarded.length;
  }

  function v2(backend: Name, method: string, path: string, json?: unknown) {
    return call(lb.url, method, `/v2${path}`, { token: admin, json, backend });
  }

  let serial = 0;
  async function createUser(backend: Name): Promise<{ id: string; email: string; password: string }> {
    serial += 1;
    const email = `cluster-${serial}-${Date.now().toString(36)}@example.com`;
    const res = await v2(backend, 'POST', '/users', {
      email,
      first_name: 'Cluster',
      last_name: `User${serial}`,
      email_verified: true,
      password: PASSWORD,
    });
    expect(res.status).toBe(201);
    return { id: res.body.id as string, email, password: PASSWORD };
  }

  async function createSpa(backend: Name, redirectUris?: string[]) {
    serial += 1;
    const redirectUri = `https://app-${serial}.example.com/callback`;
    const res = await v2(backend, 'POST', '/clients', {
      kind: 'spa',
      client_name: `Cluster SPA ${serial}`,
      redirect_uris: redirectUris ?? [redirectUri],
    });
    expect(res.status).toBe(201);
    const client = { clientId: res.body.client_id as string, redirectUri: redirectUris?.[0] ?? redirectUri };
    return { ...client, config: await discover(lb.url, client) };
  }

  type Spa = Awaited<ReturnType<typeof createSpa>>;

  /** Signs in at `backend` through the forms and returns the callback with its code. */
  async function signInAt(
    backend: Name,
    spa: Spa,
    user: { email: string; password: string },
    options: { scope?: string; params?: Record<string, string>; browser?: FormBrowser } = {},
  ): Promise<{ browser: FormBrowser; request: AuthorizationRequest; callback: URL }> {
    route(backend);
    const browser = options.browser ?? new FormBrowser(lb.url);
    const request = await authorizationRequest(
      spa.config,
      spa.redirectUri,
      options.scope ?? 'openid email',
      options.params,
    );
    const page = await signIn(browser, request.url, user);
    expect(page.status).toBe(0);
    return { browser, request, callback: new URL(page.url) };
  }

  function exchange(spa: Spa, request: AuthorizationRequest, callback: URL) {
    return oidc.authorizationCodeGrant(spa.config, callback, {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
  }

  it('an authorization code issued by A (sign-in and consent on A) is redeemed at B, and is spent on A too', async () => {
    const user = await createUser('A');
    const spa = await createSpa('A');
    const start = route('A');
    const { request, callback } = await signInAt('A', spa, user);
    const signInTraffic = lb.since(start);
    expect(signInTraffic.some((f) => f.method === 'POST' && f.path.endsWith('/login'))).toBe(true);
    expect(new Set(signInTraffic.map((f) => f.backend))).toEqual(new Set(['A']));

    const mark = route('B');
    const tokens = await exchange(spa, request, callback);
    expect(tokens.claims()).toMatchObject({ sub: user.id, aud: spa.clientId, iss: lb.url });
    expect(lb.since(mark)).toEqual([
      expect.objectContaining({ backend: 'B', method: 'POST', path: '/oauth/token', status: 200 }),
    ]);

    // A serves B's access token, and refuses the code B consumed.
    route('A');
    expect(await oidc.fetchUserInfo(spa.config, tokens.access_token, user.id)).toEqual({
      sub: user.id,
      email: user.email,
      email_verified: true,
    });
    expect(await oauthFailure(exchange(spa, request, callback))).toEqual(INVALID_GRANT);
  });

  it('a session made by signing in on A is honoured by B: a second authorization at B skips the login page', async () => {
    const user = await createUser('A');
    const spa = await createSpa('A');
    const first = await signInAt('A', spa, user);
    expect(first.browser.cookieHeader()).toMatch(/_session=/);

    const mark = route('B');
    const again = await authorizationRequest(spa.config, spa.redirectUri, 'openid email');
    const page = await first.browser.go(again.url.toString());
    expect(page.status).toBe(0); // straight back to the client, no login page, no consent
    const callback = new URL(page.url);
    expect(callback.origin + callback.pathname).toBe(spa.redirectUri);
    expect(callback.searchParams.get('code')).toEqual(expect.any(String));
    const atB = lb.since(mark);
    expect(atB.length).toBeGreaterThan(0);
    expect(atB.every((f) => f.backend === 'B')).toBe(true);
    expect(atB.some((f) => f.path.startsWith('/interaction/'))).toBe(false);

    const tokens = await exchange(spa, again, callback);
    expect(tokens.claims()?.sub).toBe(user.id);
  });

  it('a refresh token rotated on A and presented again at B is refused as reused, and the grant is revoked', async () => {
    const user = await createUser('A');
    const spa = await createSpa('A');
    const { request, callback } = await signInAt('A', spa, user, OFFLINE);
    const tokens = await exchange(spa, request, callback);
    expect(tokens.refresh_token).toEqual(expect.any(String));

    route('A');
    const rotated = await oidc.refreshTokenGrant(spa.config, tokens.refresh_token!);
    expect(rotated.refresh_token).toEqual(expect.any(String));
    expect(rotated.refresh_token).not.toBe(tokens.refresh_token);

    const mark = route('B');
    expect(await oauthFailure(oidc.refreshTokenGrant(spa.config, tokens.refresh_token!))).toEqual(
      INVALID_GRANT,
    );
    // Reuse revoked the whole grant: the newest refresh token fails at B, its access token at A.
    expect(await oauthFailure(oidc.refreshTokenGrant(spa.config, rotated.refresh_token!))).toEqual(
      INVALID_GRANT,
    );
    expect(lb.since(mark).map((f) => [f.backend, f.path, f.status])).toEqual([
      ['B', '/oauth/token', 400],
      ['B', '/oauth/token', 400],
    ]);
    route('A');
    expect(await oauthFailure(oidc.fetchUserInfo(spa.config, rotated.access_token, user.id))).toEqual(
      INVALID_TOKEN,
    );
  });

  it('failed sign-ins split across A and B count together and lock the account on both', async () => {
    const user = await createUser('A');
    const spa = await createSpa('A');
    route('A');
    const browser = new FormBrowser(lb.url);
    const request = await authorizationRequest(spa.config, spa.redirectUri, 'openid');
    const loginPage = await browser.go(request.url.toString());
    expect(isLoginPage(loginPage)).toBe(true);

    // MAX_FAILURES wrong passwords, alternately at A and B: neither instance alone sees enough.
    const answers: [Name, number, string][] = [];
    for (let i = 0; i < MAX_FAILURES; i += 1) {
      const at: Name = i % 2 === 0 ? 'A' : 'B';
      route(at);
      const page = await submit(browser, loginPage, { email: user.email, password: `wrong ${i}` });
      answers.push([at, page.status, /id="login-error">([^<]*)</.exec(page.html)?.[1] ?? '']);
    }
    expect(answers).toEqual([
      ['A', 401, 'The email or password is incorrect.'],
      ['B', 401, 'The email or password is incorrect.'],
      ['A', 401, 'The email or password is incorrect.'],
      ['B', 401, 'The email or password is incorrect.'],
    ]);

    // B has seen only two failures itself, yet the next one locks the account ...
    route('B');
    const locked = await submit(browser, loginPage, { email: user.email, password: 'wrong again' });
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    // ... and the right password is refused on both instances.
    for (const at of ['A', 'B'] as const) {
      route(at);
      const right = await submit(browser, loginPage, { email: user.email, password: user.password });
      expect([at, right.status]).toEqual([at, 429]);
      expect(right.html).toContain('Too many sign-in attempts.');
    }
  });

  it('a basic-plan client’s /v2 requests on A and B count against one hourly and one burst allowance', async () => {
    const created = await v2('A', 'POST', '/clients', {
      kind: 'service',
      client_name: 'Cluster reporting job',
      scope: 'user:read',
    });
    expect(created.status).toBe(201);
    expect(created.body.plan).toBe('basic');
    const token = await clientCredentialsToken(lb.url, {
      client: [created.body.client_id as string, created.body.client_secret as string],
      scope: 'user:read',
      backend: 'A',
    });
    const get = (backend: Name) => call(lb.url, 'GET', '/v2/users?limit=1', { token, backend });

    // One hourly count: each answer, from either instance, is one less than the one before.
    const seen: [Name, number, string | null, string | null][] = [];
    for (let i = 0; i < 6; i += 1) {
      const at: Name = i % 2 === 0 ? 'A' : 'B';
      const res = await get(at);
      seen.push([
        at,
        res.status,
        res.headers.get('x-ratelimit-remaining'),
        res.headers.get('x-ratelimit-plan'),
      ]);
    }
    expect(seen).toEqual([
      ['A', 200, '999', 'basic'],
      ['B', 200, '998', 'basic'],
      ['A', 200, '997', 'basic'],
      ['B', 200, '996', 'basic'],
      ['A', 200, '995', 'basic'],
      ['B', 200, '994', 'basic'],
    ]);

    // One burst count: 49 requests at each instance at once stay within the basic plan's 50 per
    // second on each instance alone, so only a count shared by both can refuse any of them.
    // (A single-user read, so the burst is short: a burst that took longer than a second or two
    // could spread over two windows.)
    const PER_INSTANCE = 49;
    const someone = await createUser('A');
    const read = (backend: Name) => call(lb.url, 'GET', `/v2/users/${someone.id}`, { token, backend });
    const mark = lb.forwarded.length;
    const answers = await Promise.all(
      Array.from({ length: 2 * PER_INSTANCE }, (_, i) => read(i % 2 === 0 ? 'A' : 'B')),
    );
    const served = lb.since(mark);
    expect(served.filter((f) => f.backend === 'A')).toHaveLength(PER_INSTANCE);
    expect(served.filter((f) => f.backend === 'B')).toHaveLength(PER_INSTANCE);
    const refused = answers.filter((r) => r.status === 429);
    expect(answers.filter((r) => r.status !== 200 && r.status !== 429)).toEqual([]);
    expect(refused.length).toBeGreaterThan(0);
    for (const res of refused) {
      expect(res.body.error).toMatchObject({
        code: 'RATE_LIMIT_EXCEEDED',
        message: "More than 50 requests within one second (the basic plan's burst allowance)",
      });
    }
  });

  it('signing keys rotated through the shared store are published by B and sign on A, and B verifies them', async () => {
    const kidsAt = async (backend: Name) =>
      ((await call(lb.url, 'GET', '/oauth/jwks', { backend })).body as JSONWebKeySet).keys.map((k) => k.kid!);
    const before = await kidsAt('B');

    // The operator's command writes the new keys to MongoDB; no instance is told.
    const cliDir = tempDir('latchkey-cli-');
    let rotated;
    try {
      rotated = await runToEnd(CLI, ['keys', 'rotate', '--delay', '0'], { ...env, DATA_DIR: cliDir.path });
    } finally {
      cliDir.remove();
    }
    expect(rotated.code).toBe(0);
    const newKids = (JSON.parse(rotated.stdout) as { kid: string }[]).map((k) => k.kid);
    expect(newKids).toHaveLength(2);

    // Each instance re-reads the keys every SIGNING_KEY_REFRESH_INTERVAL_S.
    const bound = KEY_REFRESH_INTERVAL_S * 1000 + SLACK_MS;
    for (const backend of ['B', 'A'] as const) {
      const published = await pollUntil(
        () => kidsAt(backend),
        (kids) => newKids.every((k) => kids.includes(k)),
        bound,
      );
      expect([backend, published.value]).toEqual([backend, expect.arrayContaining([...newKids, ...before])]);
    }

    // A signs a management-API JWT with a new key; B's JWKS verifies it and B accepts it.
    const jwt = await clientCredentialsToken(lb.url, {
      scope: 'user:read',
      resource: `${lb.url}/v2`,
      backend: 'A',
    });
    expect(newKids).toContain(decodeProtectedHeader(jwt).kid);
    const jwksAtB = (await call(lb.url, 'GET', '/oauth/jwks', { backend: 'B' })).body as JSONWebKeySet;
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(jwksAtB), { issuer: lb.url });
    expect(payload.aud).toBe(`${lb.url}/v2`);
    expect((await call(lb.url, 'GET', '/v2/users?limit=1', { token: jwt, backend: 'B' })).status).toBe(200);
  });

  it('a user suspended through A’s /v2 loses the session and tokens on B and cannot sign in at B', async () => {
    const user = await createUser('A');
    const spa = await createSpa('A');
    const { browser, request, callback } = await signInAt('A', spa, user, OFFLINE);
    route('A');
    const tokens = await exchange(spa, request, callback);

    const suspended = await v2('A', 'PUT', `/users/${user.id}`, { status: 'suspended' });
    expect(suspended.status).toBe(200);
    expect(suspended.body.status).toBe('suspended');

    route('B');
    // The browser's session from A no longer signs anyone in: B shows the login page ...
    const again = await authorizationRequest(spa.config, spa.redirectUri, 'openid email');
    const page = await browser.go(again.url.toString());
    expect(isLoginPage(page)).toBe(true);
    // ... where the right password is refused for the account's state.
    const refused = await submit(browser, page, { email: user.email, password: user.password });
    expect(refused.status).toBe(403);
    expect(refused.html).toContain('This account cannot sign in. Contact your administrator.');
    // The refresh and access tokens issued on A are dead on B.
    expect(await oauthFailure(oidc.refreshTokenGrant(spa.config, tokens.refresh_token!))).toEqual(
      INVALID_GRANT,
    );
    expect(await oauthFailure(oidc.fetchUserInfo(spa.config, tokens.access_token, user.id))).toEqual(
      INVALID_TOKEN,
    );
  });

  it(`a client changed or deleted on A takes effect on B within CLIENT_CACHE_TTL_S (${CLIENT_CACHE_TTL_S} s)`, async () => {
    const kept = 'https://kept.example.com/callback';
    const dropped = 'https://dropped.example.com/callback';
    const spa = await createSpa('A', [kept, dropped]);

    /** What a browser meets at `backend` for an authorization request to `redirectUri`. */
    async function outcome(backend: Name, redirectUri: string): Promise<string> {
      route(backend);
      const request = await authorizationRequest(spa.config, redirectUri, 'openid');
      const page: Page = await new FormBrowser(lb.url).go(request.url.toString());
      if (isLoginPage(page)) return 'login';
      return /<code>([a-z_]+)<\/code>/.exec(page.html)?.[1] ?? `status ${page.status}`;
    }

    // Both instances have the client cached, with both redirect URIs.
    expect(await outcome('B', dropped)).toBe('login');
    expect(await outcome('A', dropped)).toBe('login');

    const changed = await v2('A', 'PUT', `/clients/${spa.clientId}`, { redirect_uris: [kept] });
    expect(changed.status).toBe(200);
    expect(changed.body.redirect_uris).toEqual([kept]);
    // A forgets its own cached copy at once; B reads the change within the cache lifetime.
    expect(await outcome('A', dropped)).toBe('invalid_redirect_uri');
    const bound = CLIENT_CACHE_TTL_S * 1000 + SLACK_MS;
    const onB = await pollUntil(
      () => outcome('B', dropped),
      (o) => o === 'invalid_redirect_uri',
      bound,
    );
    expect(onB.value).toBe('invalid_redirect_uri');
    expect(await outcome('B', kept)).toBe('login');

    // B has the changed client cached now; deleting it on A stops it on B within the same bound.
    const deleted = await v2('A', 'DELETE', `/clients/${spa.clientId}`);
    expect(deleted.status).toBe(204);
    expect(await outcome('A', kept)).toBe('invalid_client');
    const goneOnB = await pollUntil(
      () => outcome('B', kept),
      (o) => o === 'invalid_client',
      bound,
    );
    expect(goneOnB.value).toBe('invalid_client');
  });
});
