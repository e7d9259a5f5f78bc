/**
 * Protocol benchmark: the OAuth/OIDC endpoints relying parties and APIs call, measured against the
 * compiled server, next to two ceilings measured in the same run on the same machine:
 * - bare oidc-provider (bench/bare-provider.ts: the library alone, in-memory adapter, one static
 *   client) for client credentials, so our figure reads as a share of what the library can do;
 * - raw argon2id at our parameters (bench/argon2-rate.ts), so full sign-ins read as a share of the
 *   password hashing they cannot avoid.
 * Peak RSS of the server is recorded per scenario, and its idle RSS after start.
 *
 * Usage: npm run bench -- protocol [--duration S] [--logins-concurrency N] [--mongo URI --redis URL]
 *        [--redis-cluster HOST:PORT,HOST:PORT,...] [--only REGEX] [--cpu-prof DIR]
 * --redis-cluster runs the server on a Redis Cluster (REDIS_CLUSTER_NODES) instead of --redis;
 * `REDIS_CLUSTER=1 scripts/test-services.sh sh -c 'npm run bench -- protocol --redis-cluster "$REDIS_CLUSTER_NODES"'`.
 * --only runs just the scenarios whose names match (case-insensitive; "bare" and "argon2" name the
 * two ceilings) and prints their rows without the floor summary; --cpu-prof writes V8 CPU profiles
 * of the server process into DIR (open them in Chrome DevTools) — for finding where time goes.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  adminToken,
  basicAuth,
  closedLoop,
  freePort,
  machine,
  measure,
  ROOT,
  rssMiB,
  startServer,
  StopLoop,
  table,
  threadCpuMs,
  watchProcess,
  type Measurement,
} from './lib.ts';

/** The floors the suite prints next to its figures. */
const FLOORS = {
  clientCredentialsPerCore: 2000,
  clientCredentialsShareOfBare: 0.7,
  introspectionPerCore: 3000,
  loginShareOfRawHash: 0.8,
  idleRssMB: 150,
};

/**
 * The server gives memory back after this long without requests (IDLE_MEMORY_RELEASE_MS, 30 s by
 * default); shortened so the run can show the RSS an instance returns to when its traffic stops.
 */
const IDLE_RELEASE_MS = 2000;
/** Two release periods (a release comes one to two periods after the last request) and a margin. */
const IDLE_AGAIN_WAIT_MS = 2 * IDLE_RELEASE_MS + 1000;

const API = 'https://bench-api.example.com';
const WEB_REDIRECT = 'https://bench-web.example.com/callback';
const SPA_REDIRECT = 'https://bench-spa.example.com/callback';
const PASSWORD = 'Lantern-orchard-47 drifting quietly';

interface Row extends Measurement {
  peakMiB: number;
  /** Server CPU time per request (per sign-in for the sign-in row), in ms. */
  cpuPerRequest: number;
  floor: string;
}

const mark = (ok: boolean) => (ok ? '✔' : '✘');

function toRow(watched: { result: Measurement; peakMiB: number; cpuMs: number }, floor = ''): Row {
  const { result, peakMiB, cpuMs } = watched;
  return { ...result, peakMiB, cpuPerRequest: cpuMs / Math.max(1, result.requests), floor };
}

/** The password-hash parameters the server runs with: config/defaults.env, unless set in our env. */
export function passwordParams(): Record<string, string> {
  const defaults = readFileSync(join(ROOT, 'config', 'defaults.env'), 'utf8');
  const params: Record<string, string> = {};
  for (const name of ['PASSWORD_HASH_MEMORY_KIB', 'PASSWORD_HASH_TIME_COST', 'PASSWORD_HASH_PARALLELISM']) {
    const value = process.env[name] ?? new RegExp(`^${name}=(.*)$`, 'm').exec(defaults)?.[1]?.trim();
    if (!value) throw new Error(`${name} is not set in config/defaults.env`);
    params[name] = value;
  }
  return params;
}

// --- A cookie-keeping form client for the sign-in flow, on plain fetch ------------------------------

export type Jar = Map<string, string>;

function keepCookies(jar: Jar, res: Response): void {
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(';', 1)[0]!;
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name);
    else jar.set(name, value);
  }
}

interface Step {
  status: number;
  html: string;
  url: string;
  /** Where the server sent the browser off our origin (the client's redirect URI). */
  offsite?: URL;
}

/**
 * One navigation, following redirects on the server's origin (the issuer names it localhost, the
 * bench reaches it at 127.0.0.1) and stopping at the first redirect that leaves it.
 */
export async function browse(
  jar: Jar,
  base: string,
  path: string,
  form?: Record<string, string>,
): Promise<Step> {
  const origin = new URL(base);
  let target = new URL(path, base);
  let body = form ? new URLSearchParams(form).toString() : undefined;
  for (let hop = 0; hop < 10; hop += 1) {
    const res = await fetch(target, {
      method: body ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        accept: 'text/html',
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body,
    });
    keepCookies(jar, res);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.arrayBuffer();
      const next = new URL(location, target);
      const ours =
        next.port === origin.port && (next.hostname === 'localhost' || next.hostname === origin.hostname);
      if (!ours) return { status: res.status, html: '', url: target.href, offsite: next };
      target = new URL(next.pathname + next.search, base);
      body = undefined;
      continue;
    }
    return { status: res.status, html: await res.text(), url: target.href };
  }
  throw new Error(`too many redirects from ${path}`);
}

export function formOf(html: string): { action: string; hidden: Record<string, string> } {
  const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) throw new Error(`no form on the page: ${html.slice(0, 200)}`);
  const hidden: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
    const name = /name="([^"]+)"/.exec(input[0])?.[1];
    if (name) hidden[name] = (/value="([^"]*)"/.exec(input[0])?.[1] ?? '').replace(/&amp;/g, '&');
  }
  return { action: form[1]!.replace(/&amp;/g, '&'), hidden };
}

export interface LoginClient {
  clientId: string;
  /** Absent for a public client, which names itself in the token request instead. */
  secret?: string;
  redirectUri: string;
}

interface TokenSet {
  access_token: string;
  refresh_token?: string;
}

/**
 * A whole sign-in as a browser and a relying party do it: authorize with PKCE S256, the login form
 * (email and password, CSRF token), the consent form if shown, the code at the redirect URI, and
 * the code exchanged at the token endpoint. A fresh cookie jar each time, so every sign-in checks a
 * password.
 */
export async function signIn(
  base: string,
  client: LoginClient,
  user: { email: string; password: string },
  scope: string,
  extra: Record<string, string> = {},
): Promise<TokenSet> {
  const jar: Jar = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const query = new URLSearchParams({
    client_id: client.clientId,
    response_type: 'code',
    redirect_uri: client.redirectUri,
    scope,
    state,
    nonce: randomBytes(16).toString('base64url'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    ...extra,
  });
  let step = await browse(jar, base, `/oauth/authorize?${query}`);
  for (let forms = 0; !step.offsite && step.status === 200 && forms < 3; forms += 1) {
    const form = formOf(step.html);
    const fields: Record<string, string> | null = form.action.endsWith('/login')
      ? { email: user.email, password: user.password }
      : form.action.endsWith('/consent')
        ? { decision: 'approve' }
        : null;
    if (!fields) throw new Error(`unexpected form ${form.action}`);
    step = await browse(jar, base, form.action, { ...form.hidden, ...fields });
  }
  if (!step.offsite) throw new Error(`sign-in stopped at ${step.url} with ${step.status}`);
  const code = step.offsite.searchParams.get('code');
  if (!code || step.offsite.searchParams.get('state') !== state) {
    throw new Error(`no code at the redirect URI: ${step.offsite.search}`);
  }
  const res = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(client.secret ? { authorization: basicAuth(client.clientId, client.secret) } : {}),
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: client.redirectUri,
      code_verifier: verifier,
      ...(client.secret ? {} : { client_id: client.clientId }),
    }),
  });
  const tokens = (await res.json()) as Partial<TokenSet> & { error?: string };
  if (!res.ok || !tokens.access_token) throw new Error(`code exchange failed: ${JSON.stringify(tokens)}`);
  return tokens as TokenSet;
}

// --- Child processes for the two ceilings -----------------------------------------------------------

const childEnv = (env: Record<string, string>) => ({
  PATH: process.env.PATH ?? '',
  NODE_ENV: 'production',
  // As the server sizes its pool (src/runtime/thread-pool.ts).
  UV_THREADPOOL_SIZE: String(Math.max(2, availableParallelism())),
  ...env,
});

async function withBareProvider<T>(
  work: (bare: { url: string; pid: number; clientId: string; secret: string }) => Promise<T>,
): Promise<T> {
  const port = await freePort();
  const secret = randomBytes(32).toString('base64url');
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'bare-provider.ts')], {
    cwd: ROOT,
    env: childEnv({ PORT: String(port), BARE_CLIENT_SECRET: secret }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`bare oidc-provider exited with ${code}: ${stderr}`)));
    });
    return await work({ url: `http://127.0.0.1:${port}`, pid: child.pid!, clientId: 'bare-service', secret });
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

interface RawRate {
  verifications: number;
  seconds: number;
  perSecond: number;
  cpuMsPerVerification: number;
  /** The rate of each run, when combined from several. */
  runs?: number[];
}

/** Several raw runs as one: total verifications over total time, CPU per verification overall. */
/** Several runs of the bare provider as one row: CPU per request over all, the slower latencies. */
function combineBare(runs: Row[]): Row {
  const requests = runs.reduce((n, r) => n + r.requests, 0);
  const cpuMs = runs.reduce((n, r) => n + r.cpuPerRequest * r.requests, 0);
  return {
    ...runs[runs.length - 1]!,
    requests,
    requestsPerSecond: Math.round(runs.reduce((n, r) => n + r.requestsPerSecond, 0) / runs.length),
    p50: Math.max(...runs.map((r) => r.p50)),
    p99: Math.max(...runs.map((r) => r.p99)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    peakMiB: Math.max(...runs.map((r) => r.peakMiB)),
    cpuPerRequest: cpuMs / requests,
  };
}

function rawRunsNote(raw: RawRate): string {
  return raw.runs
    ? ` (runs right before and after the sign-ins: ${raw.runs.map((r) => `${r}/s`).join(', ')})`
    : '';
}

function combineRaw(runs: RawRate[]): RawRate {
  const verifications = runs.reduce((n, r) => n + r.verifications, 0);
  const seconds = runs.reduce((n, r) => n + r.seconds, 0);
  const cpuMs = runs.reduce((n, r) => n + r.cpuMsPerVerification * r.verifications, 0);
  return {
    verifications,
    seconds,
    perSecond: Math.round((verifications / seconds) * 10) / 10,
    cpuMsPerVerification: cpuMs / verifications,
    runs: runs.map((r) => r.perSecond),
  };
}

async function rawArgon2Rate(
  params: Record<string, string>,
  parallel: number,
  durationS: number,
): Promise<RawRate> {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'argon2-rate.ts')], {
    cwd: ROOT,
    env: childEnv({ ...params, PARALLEL: String(parallel), DURATION_S: String(durationS) }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`argon2 rate child exited with ${code}`);
  return JSON.parse(out) as RawRate;
}

// --- The suite --------------------------------------------------------------------------------------

export async function runProtocolBenchmark(argv: string[]): Promise<string> {
  const cores = availableParallelism();
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      'logins-concurrency': { type: 'string', default: String(2 * cores) },
      mongo: { type: 'string' },
      redis: { type: 'string' },
      'redis-cluster': { type: 'string' },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
    },
  });
  const only = values.only ? new RegExp(values.only, 'i') : undefined;
  const selected = (name: string) => !only || only.test(name);
  const duration = Number(values.duration);
  const loginConcurrency = Number(values['logins-concurrency']);
  if (!(duration > 0) || !(loginConcurrency >= 1))
    throw new Error('--duration and --logins-concurrency: positive numbers');
  const warmUp = Math.max(1, Math.min(3, Math.round(duration / 3)));
  if (values.redis && values['redis-cluster']) throw new Error('--redis or --redis-cluster, not both');
  const redisKind = values.redis ? 'redis' : values['redis-cluster'] ? 'redis cluster' : undefined;
  const backend = values.mongo
    ? `mongo${redisKind ? ` + ${redisKind}` : ''}`
    : redisKind
      ? `embedded + ${redisKind}`
      : 'embedded';
  const hashParams = passwordParams();

  // Bare oidc-provider is measured before our server starts and after it stops, and the two runs are
  // combined: the VM's speed drifts over minutes, and one run at the end alone can land in a faster
  // or slower phase than the client-credentials scenario (the first one after start) did.
  const bareName = 'Bare oidc-provider: client credentials, opaque (in-memory adapter)';
  const measureBare = () =>
    withBareProvider(async (b) => {
      const options = {
        url: `${b.url}/token`,
        ...{
          method: 'POST' as const,
          headers: {
            authorization: basicAuth(b.clientId, b.secret),
            'content-type': 'application/x-www-form-urlencoded',
          },
          body: 'grant_type=client_credentials',
        },
        connections: 32,
      };
      await measure('warm-up', { ...options, duration: warmUp });
      return toRow(
        await watchProcess(b.pid, () =>
          measure(bareName, {
            ...options,
            duration,
          }),
        ),
      );
    });
  const bareRuns: Row[] = [];
  if (selected(bareName)) bareRuns.push(await measureBare());

  const server = await startServer({
    ...hashParams,
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
    ...(values['redis-cluster'] ? { REDIS_CLUSTER_NODES: values['redis-cluster'] } : {}),
    IDLE_MEMORY_RELEASE_MS: String(IDLE_RELEASE_MS),
    ...(values['cpu-prof'] ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values['cpu-prof']}` } : {}),
  });
  const pid = server.child.pid!;
  const rows: Row[] = [];
  let idleMiB: number;
  /** RSS once the server has been without requests for two release periods after the last scenario. */
  let idleAfterMiB: number | undefined;
  let ours: { clientCredentials?: Row; logins?: Row };
  /** Sign-in CPU (ms per sign-in) by thread group of the server, and of this process (the load generator). */
  let signInCpu: { main: number; pool: number; other: number; generator: number } | undefined;
  /** Raw argon2id runs around the sign-ins (see there); without sign-ins, one run at the end. */
  const rawRuns: RawRate[] = [];
  const rawDuration = Math.max(3, Math.round(duration / 2));
  const rawRate = async (): Promise<RawRate> =>
    rawRuns.length > 0 ? combineRaw(rawRuns) : rawArgon2Rate(hashParams, cores, duration);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    idleMiB = rssMiB(pid);

    // --- Set-up through the management API, as an operator would -----------------------------------
    const admin = await adminToken(server.url, 'user:write client:manage');
    const v2 = async <T>(path: string, body: object): Promise<T> => {
      const res = await fetch(`${server.url}/v2${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status !== 201) throw new Error(`POST /v2${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };
    await v2('/resources', {
      identifier: API,
      name: 'Bench API',
      scopes: ['bench:read'],
      access_token_format: 'jwt',
    });
    type Created = { client_id: string; client_secret?: string };
    const service = await v2<Created>('/clients', {
      kind: 'service',
      client_name: 'Bench service',
      api_scopes: ['bench:read'],
    });
    const web = await v2<Created>('/clients', {
      kind: 'web',
      client_name: 'Bench web app',
      redirect_uris: [WEB_REDIRECT],
      first_party: true,
    });
    const spa = await v2<Created>('/clients', {
      kind: 'spa',
      client_name: 'Bench SPA',
      redirect_uris: [SPA_REDIRECT],
      first_party: true,
    });
    const webClient = { clientId: web.client_id, secret: web.client_secret!, redirectUri: WEB_REDIRECT };
    const spaClient = { clientId: spa.client_id, redirectUri: SPA_REDIRECT };
    // Sign-ins spread over several users, as real ones are (each one records the login on its user).
    const users = await Promise.all(
      Array.from({ length: 2 * loginConcurrency }, async (_, i) => {
        const email = `bench-user-${i}@bench.example`;
        await v2('/users', { email, first_name: 'Bench', last_name: `User ${i}`, password: PASSWORD });
        return { email, password: PASSWORD };
      }),
    );

    // One sign-in for a user token: offline_access needs prompt=consent (first party: granted without
    // a page). Its access token is opaque (no resource), for userinfo and introspection.
    const userTokens = await signIn(server.url, webClient, users[0]!, 'openid email offline_access', {
      prompt: 'consent',
    });
    if (!userTokens.refresh_token) throw new Error('no refresh token for offline_access');

    const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
    const post = (auth: string, body: string) => ({
      method: 'POST' as const,
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    const serviceAuth = basicAuth(service.client_id, service.client_secret!);
    const webAuth = basicAuth(web.client_id, web.client_secret!);
    const ccOpaque = {
      path: '/oauth/token',
      ...post(serviceAuth, form({ grant_type: 'client_credentials' })),
    };
    const ccJwt = {
      path: '/oauth/token',
      ...post(serviceAuth, form({ grant_type: 'client_credentials', resource: API, scope: 'bench:read' })),
    };
    // Check the requests before timing them: a bench of error answers measures nothing.
    for (const [label, request, check] of [
      ['opaque', ccOpaque, (t: string) => t.split('.').length === 1],
      ['JWT', ccJwt, (t: string) => t.split('.').length === 3],
    ] as const) {
      const res = await fetch(`${server.url}${request.path}`, request);
      const body = (await res.json()) as { access_token?: string };
      if (!res.ok || !body.access_token || !check(body.access_token)) {
        throw new Error(`client credentials (${label}) failed: ${res.status} ${JSON.stringify(body)}`);
      }
    }
    const serviceToken = ((await (await fetch(`${server.url}/oauth/token`, ccOpaque)).json()) as TokenSet)
      .access_token;
    const introspectUser = {
      path: '/oauth/introspect',
      ...post(webAuth, form({ token: userTokens.access_token, token_type_hint: 'access_token' })),
    };
    const introspectService = {
      path: '/oauth/introspect',
      ...post(webAuth, form({ token: serviceToken, token_type_hint: 'access_token' })),
    };
    for (const request of [introspectUser, introspectService]) {
      const body = (await (await fetch(`${server.url}${request.path}`, request)).json()) as {
        active?: boolean;
      };
      if (body.active !== true) throw new Error(`introspection says inactive: ${JSON.stringify(body)}`);
    }
    const userinfo = {
      path: '/oauth/userinfo',
      method: 'GET' as const,
      headers: { authorization: `Bearer ${userTokens.access_token}` },
    };
    const refresh = {
      path: '/oauth/token',
      ...post(webAuth, form({ grant_type: 'refresh_token', refresh_token: userTokens.refresh_token })),
    };
    const jwks = { path: '/oauth/jwks', method: 'GET' as const };

    // --- Autocannon scenarios, each after its own warm-up ---------------------------------------------
    const scenario = async (
      name: string,
      request: { path: string; method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string },
      floor: (m: Measurement) => string = () => '',
    ): Promise<Row | undefined> => {
      if (!selected(name)) return undefined;
      const options = { url: `${server.url}${request.path}`, ...request, connections: 32 };
      await measure('warm-up', { ...options, duration: warmUp });
      const watched = await watchProcess(pid, () => measure(name, { ...options, duration }));
      const row = toRow(watched);
      row.floor = floor(row);
      rows.push(row);
      process.stderr.write(`${name}: ${row.requestsPerSecond}/s, ${row.errors} errors\n`);
      return row;
    };
    // Per core: what one core of the server sustains, 1 / (server CPU per request). The server runs
    // its JavaScript on one core while the load generator takes the other, so requests/s divided by
    // the machine's cores would charge the server for the load generator's CPU.
    const perCore = (m: Measurement) => 1000 / Math.max(0.001, (m as Row).cpuPerRequest);
    const cc = await scenario(
      'Client credentials, opaque token',
      ccOpaque,
      (m) =>
        `≥ ${FLOORS.clientCredentialsPerCore.toLocaleString('en')}/s per core ${mark(perCore(m) >= FLOORS.clientCredentialsPerCore)}`,
    );
    await scenario('Client credentials, JWT (resource=…, RFC 9068)', ccJwt);
    const introspectionFloor = (m: Measurement) =>
      `≥ ${FLOORS.introspectionPerCore.toLocaleString('en')}/s per core ${mark(perCore(m) >= FLOORS.introspectionPerCore)}`;
    await scenario("Introspection (RFC 7662) of a user's opaque token", introspectUser, introspectionFloor);
    await scenario(
      "Introspection (RFC 7662) of a service's opaque token",
      introspectService,
      introspectionFloor,
    );
    await scenario('Userinfo (Bearer, openid email)', userinfo);
    await scenario('Refresh, confidential client (no rotation)', refresh);
    await scenario('JWKS', jwks);

    // --- Closed-loop scenarios: rotating refresh chains and full sign-ins ----------------------------
    // A public client's refresh token rotates on every use, so each request needs the previous answer:
    // 16 independent chains, one per simulated app instance.
    const rotation = 'Refresh, public client (rotation, 16 chains)';
    const chains = !selected(rotation)
      ? []
      : await Promise.all(
          Array.from({ length: 16 }, async (_, i) => {
            const tokens = await signIn(
              server.url,
              spaClient,
              users[i % users.length]!,
              'openid offline_access',
              {
                prompt: 'consent',
              },
            );
            if (!tokens.refresh_token) throw new Error('no refresh token for the SPA');
            return tokens.refresh_token;
          }),
        );
    const rotate = async (i: number) => {
      const res = await fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form({ grant_type: 'refresh_token', refresh_token: chains[i]!, client_id: spaClient.clientId }),
      });
      const body = (await res.json()) as Partial<TokenSet>;
      if (!res.ok || !body.refresh_token)
        throw new StopLoop(`refresh chain ${i} broke: ${JSON.stringify(body)}`);
      chains[i] = body.refresh_token;
    };
    if (chains.length > 0) {
      await closedLoop('warm-up', { concurrency: chains.length, durationS: warmUp }, rotate);
      const watched = await watchProcess(pid, () =>
        closedLoop(rotation, { concurrency: chains.length, durationS: duration }, rotate),
      );
      rows.push(toRow(watched));
    }

    const loginName = `Full sign-in: code + PKCE, password (${loginConcurrency} at a time)`;
    let next = 0;
    const login = async () => {
      next += 1;
      await signIn(server.url, webClient, users[next % users.length]!, 'openid email');
    };
    let loginRow: Row | undefined;
    if (selected(loginName)) {
      // The raw hash rate is measured right before and right after the sign-ins (the server idle), as
      // the speed of a shared VM drifts over minutes: comparing against a measurement taken at
      // another time can err either way by more than the floor's margin.
      if (selected('raw argon2id')) rawRuns.push(await rawArgon2Rate(hashParams, cores, rawDuration));
      await closedLoop('warm-up', { concurrency: loginConcurrency, durationS: warmUp }, login);
      const threadsBefore = threadCpuMs(pid);
      const generatorBefore = process.cpuUsage();
      const watchedLogins = await watchProcess(pid, () =>
        closedLoop(loginName, { concurrency: loginConcurrency, durationS: duration }, login),
      );
      const generator = process.cpuUsage(generatorBefore);
      const threadsAfter = threadCpuMs(pid);
      loginRow = toRow(watchedLogins);
      const n = Math.max(1, loginRow.requests);
      signInCpu = {
        main: (threadsAfter.main - threadsBefore.main) / n,
        pool: (threadsAfter.pool - threadsBefore.pool) / n,
        other: (threadsAfter.other - threadsBefore.other) / n,
        generator: (generator.user + generator.system) / 1000 / n,
      };
      rows.push(loginRow);
      process.stderr.write(`sign-ins: ${loginRow.requestsPerSecond}/s, ${loginRow.errors} errors\n`);
      if (selected('raw argon2id')) rawRuns.push(await rawArgon2Rate(hashParams, cores, rawDuration));
    }
    ours = { clientCredentials: cc, logins: loginRow };
    await new Promise((r) => setTimeout(r, IDLE_AGAIN_WAIT_MS));
    idleAfterMiB = rssMiB(pid);
  } finally {
    await server.stop();
  }

  const idleAgainLine = () =>
    `- Server RSS idle again after the run (${IDLE_AGAIN_WAIT_MS / 1000} s without requests, ` +
    `IDLE_MEMORY_RELEASE_MS=${IDLE_RELEASE_MS}): ${idleAfterMiB} MiB (${Math.round((idleAfterMiB! * 2 ** 20) / 1e6)} MB).`;

  // --- The ceilings ---------------------------------------------------------------------------------
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  /**
   * Where a sign-in's CPU goes, and the sign-in rate as a share of the raw hash rate two ways: per
   * core (raw CPU per verification ÷ server CPU per sign-in: what one core of the server completes,
   * the floor's measure, as for client credentials) and in wall-clock rates on this shared machine
   * (which also charge the server for the load generator's CPU).
   */
  const signInLines = (logins: Row, raw?: { perSecond: number; cpuMsPerVerification: number }) => {
    const lines: string[] = [];
    if (signInCpu) {
      const { main, pool, other, generator } = signInCpu;
      lines.push(
        `- CPU per sign-in: server ${logins.cpuPerRequest.toFixed(1)} ms (event loop ${main.toFixed(1)}, libuv pool ${pool.toFixed(1)}: ` +
          `the argon2id verification and the ID token's RS256 signature, other threads ${other.toFixed(1)}); ` +
          `load generator (this bench, same machine) ${generator.toFixed(1)} ms.`,
      );
    }
    if (raw) {
      const perCore = raw.cpuMsPerVerification / logins.cpuPerRequest;
      const wall = logins.requestsPerSecond / raw.perSecond;
      lines.push(
        `- Full sign-ins per core: ${(1000 / logins.cpuPerRequest).toFixed(1)}/s against ${(1000 / raw.cpuMsPerVerification).toFixed(1)} raw verifications/s = ` +
          `${pct(perCore)} ${mark(perCore >= FLOORS.loginShareOfRawHash)} (floor ${FLOORS.loginShareOfRawHash * 100}%); ` +
          `wall-clock on the shared machine: ${logins.requestsPerSecond}/s against ${raw.perSecond}/s = ${pct(wall)}.`,
      );
    }
    return lines;
  };
  const header = [
    `### Protocol endpoints on ${backend}`,
    '',
    `Machine: ${machine()}. Load generator and server share the machine; "per core" is what one core of the server sustains: 1000 / (server CPU ms per request).`,
    `Each scenario: ${warmUp} s warm-up, then ${duration} s measured; autocannon with 32 connections, closed loops as noted.`,
    '',
  ];
  const rowTable = () =>
    table(rows, {
      'Per core': (r) => String(Math.round(1000 / Math.max(0.001, r.cpuPerRequest))),
      'Server CPU/request (ms)': (r) => r.cpuPerRequest.toFixed(r.cpuPerRequest < 10 ? 2 : 0),
      'Peak RSS (MiB)': (r) => String(r.peakMiB),
      Floor: (r) => r.floor,
    });
  if (only || !ours.clientCredentials || !ours.logins) {
    // A partial run: the rows asked for, the ceilings if asked for, no floor summary.
    if (selected(bareName)) {
      bareRuns.push(await measureBare());
      rows.push(combineBare(bareRuns));
    }
    const lines = [...header, rowTable(), ''];
    if (selected('raw argon2id')) {
      const raw = await rawRate();
      lines.push(
        `- Raw argon2id, ${cores} verifications at a time: ${raw.perSecond}/s${rawRunsNote(raw)}, ${raw.cpuMsPerVerification.toFixed(1)} ms CPU each.`,
      );
      if (ours.logins) lines.push(...signInLines(ours.logins, raw));
    } else if (signInCpu) {
      lines.push(...signInLines(ours.logins!));
    }
    lines.push(`- Server RSS when idle after start: ${idleMiB} MiB.`, idleAgainLine(), '');
    return lines.join('\n');
  }
  bareRuns.push(await measureBare());
  const bare = combineBare(bareRuns);
  rows.push(bare);
  // Both measured the same way on the same machine; compared by what one core of each sustains.
  const ccShare = bare.cpuPerRequest / ours.clientCredentials.cpuPerRequest;
  const ccWallShare = ours.clientCredentials.requestsPerSecond / bare.requestsPerSecond;
  ours.clientCredentials.floor += `; ≥ ${FLOORS.clientCredentialsShareOfBare * 100}% of bare ${mark(ccShare >= FLOORS.clientCredentialsShareOfBare)}`;

  const raw = await rawRate();
  const loginShare = raw.cpuMsPerVerification / ours.logins.cpuPerRequest;
  ours.logins.floor = `≥ ${FLOORS.loginShareOfRawHash * 100}% of raw argon2id ${mark(loginShare >= FLOORS.loginShareOfRawHash)}`;

  const idleMB = (idleMiB * 2 ** 20) / 1e6;
  const m = hashParams.PASSWORD_HASH_MEMORY_KIB;
  const t = hashParams.PASSWORD_HASH_TIME_COST;
  const p = hashParams.PASSWORD_HASH_PARALLELISM;
  return [
    ...header,
    rowTable(),
    '',
    `- Client credentials (opaque): per core, ours is ${pct(ccShare)} of bare oidc-provider ${mark(ccShare >= FLOORS.clientCredentialsShareOfBare)}; ` +
      `in requests/s on the shared machine, ours ${ours.clientCredentials.requestsPerSecond}/s = ${pct(ccWallShare)} of bare's ${bare.requestsPerSecond}/s.`,
    `- Bare oidc-provider was measured before our server started and after it stopped: ${bareRuns
      .map((r) => `${r.requestsPerSecond}/s at ${r.cpuPerRequest.toFixed(2)} ms CPU per request`)
      .join(', then ')}; the row combines both.`,
    `- Server CPU per client-credentials request: ours ${ours.clientCredentials.cpuPerRequest.toFixed(2)} ms, ` +
      `bare oidc-provider ${bare.cpuPerRequest.toFixed(2)} ms (bare/ours = ${pct(bare.cpuPerRequest / ours.clientCredentials.cpuPerRequest)}; ` +
      'less sensitive to a busy machine than requests per second).',
    `- Raw argon2id at m=${m} KiB, t=${t}, p=${p}, ${cores} verifications at a time: ${raw.perSecond}/s${rawRunsNote(raw)}, ` +
      `${raw.cpuMsPerVerification.toFixed(1)} ms CPU each.`,
    ...signInLines(ours.logins, raw),
    `- Server RSS when idle after start: ${idleMiB} MiB (${Math.round(idleMB)} MB; floor < ${FLOORS.idleRssMB} MB ${mark(idleMB < FLOORS.idleRssMB)}).`,
    idleAgainLine(),
    '',
  ].join('\n');
}
