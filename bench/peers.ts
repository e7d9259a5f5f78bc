/**
 * Peers benchmark: our server beside Ory Hydra and Keycloak on this machine, all on loopback, driven
 * with the same autocannon settings in alternating rounds (the order flips every round) so drift in
 * the machine's speed hits every product alike.
 *
 * - ours: the compiled server on its embedded default store (or --mongo/--redis);
 * - Ory Hydra v2.3.0 with DSN=memory: built once from the Go module proxy's source with the `sqlite`
 *   build tag (its go.mod replace of hydra-client-go dropped), kept in the cache folder;
 * - Keycloak 26 (`org.keycloak:keycloak-quarkus-dist` from Maven Central) in `start-dev`, on Java 21+.
 *
 * Scenarios: client credentials (ours and Hydra opaque, Keycloak has JWTs only: also ours as JWT),
 * introspection of a service token (ours and Keycloak authenticate the caller; Hydra's introspection
 * is on its unauthenticated admin port), refresh and the full browser sign-in with PKCE (ours and
 * Keycloak, whose argon2id is set to our parameters; Hydra needs a login and consent app of its own
 * for both, which this bench does not have yet). Figures: requests/s, p50/p99,
 * server CPU per request, peak RSS under the load, idle RSS after start, ratios ours/peer.
 *
 * Usage: npm run bench -- peers [--duration S] [--connections N] [--rounds N] [--skip-hydra]
 *        [--skip-keycloak] [--mongo URI --redis URL]
 * A peer whose toolchain is missing (Go for Hydra, Java 21+ for Keycloak) is skipped with a line.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  adminToken,
  basicAuth,
  closedLoop,
  freePort,
  machine,
  measure,
  rssMiB,
  startServer,
  watchProcess,
  type Measurement,
} from './lib.ts';
import { browse, formOf, passwordParams, signIn, type Jar, type LoginClient } from './protocol.ts';

const HYDRA_VERSION = 'v2.3.0';
const KEYCLOAK_VERSION = '26.7.3';
const PASSWORD = 'Lantern-orchard-47 drifting quietly';
const WEB_REDIRECT = 'https://bench-web.example.com/callback';

const CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'latchkey-bench');

interface Request {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

/** A scenario: one request repeated by autocannon, or a whole operation in closed loops. */
type Scenario = { note: string } & ({ request: Request } | { signIn: (loop: number) => Promise<void> });

interface Product {
  name: string;
  /** The process whose CPU and memory count (Keycloak: the JVM, not its launcher script). */
  pid(): number;
  idleMiB: number;
  scenarios: Map<string, Scenario>;
  stop(): Promise<void>;
}

/** Sign-ins at a time, and users to spread them over (each sign-in records a login on its user). */
const SIGN_IN_CONCURRENCY = 4;
const SIGN_IN_USERS = 2 * SIGN_IN_CONCURRENCY;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const post = (url: string, auth: string | undefined, body: string): Request => ({
  url,
  method: 'POST',
  headers: {
    ...(auth ? { authorization: auth } : {}),
    'content-type': 'application/x-www-form-urlencoded',
  },
  body,
});

async function call(request: Request): Promise<Record<string, unknown>> {
  const res = await fetch(request.url, request);
  const text = await res.text();
  if (!res.ok) throw new Error(`${request.method} ${request.url}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function waitFor(url: string, child: ChildProcess, what: string, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 4; i += 1) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not become ready within ${seconds} s`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const hard = setTimeout(() => child.kill('SIGKILL'), 15_000);
  return exited.finally(() => clearTimeout(hard));
}

/** The pid of the deepest single child (a launcher script that runs the real program as a child). */
function leafPid(pid: number): number {
  for (let depth = 0; depth < 4; depth += 1) {
    let children: string[];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean);
    } catch {
      return pid;
    }
    if (children.length !== 1) return pid;
    pid = Number(children[0]);
  }
  return pid;
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 3000));
}

/** Our password-hash parameters (config/defaults.env unless set here), given to Keycloak too. */
function hashParams(): { memoryKiB: string; timeCost: string; parallelism: string } {
  const params = passwordParams();
  return {
    memoryKiB: params.PASSWORD_HASH_MEMORY_KIB!,
    timeCost: params.PASSWORD_HASH_TIME_COST!,
    parallelism: params.PASSWORD_HASH_PARALLELISM!,
  };
}

function hashNote(): string {
  const { memoryKiB, timeCost, parallelism } = hashParams();
  return `m=${memoryKiB} KiB t=${timeCost} p=${parallelism}`;
}

/**
 * A whole sign-in at Keycloak as a browser and a relying party do it: the authorization request with
 * PKCE S256, its login form (username, password), the code at the redirect URI, the code exchange.
 */
async function keycloakSignIn(
  base: string,
  client: LoginClient,
  username: string,
): Promise<Record<string, unknown>> {
  const jar: Jar = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const realm = `${base}/realms/bench/protocol/openid-connect`;
  const query = new URLSearchParams({
    client_id: client.clientId,
    response_type: 'code',
    redirect_uri: client.redirectUri,
    scope: 'openid',
    state,
    nonce: randomBytes(16).toString('base64url'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  const page = await browse(jar, base, `${realm}/auth?${query}`);
  if (page.status !== 200) throw new Error(`Keycloak's login page answered ${page.status}`);
  const loginForm = formOf(page.html);
  const done = await browse(jar, base, loginForm.action, {
    ...loginForm.hidden,
    username,
    password: PASSWORD,
  });
  const code = done.offsite?.searchParams.get('code');
  if (!code || done.offsite?.searchParams.get('state') !== state) {
    throw new Error(`Keycloak sign-in stopped at ${done.url} with ${done.status}`);
  }
  return call(
    post(
      `${realm}/token`,
      basicAuth(client.clientId, client.secret!),
      form({
        grant_type: 'authorization_code',
        code,
        redirect_uri: client.redirectUri,
        code_verifier: verifier,
      }),
    ),
  );
}

// --- Ours ------------------------------------------------------------------------------------------

async function startOurs(env: Record<string, string>): Promise<Product> {
  const server = await startServer(env);
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
  type Created = { client_id: string; client_secret: string };
  const api = 'https://bench-api.example.com';
  await v2('/resources', {
    identifier: api,
    name: 'Bench API',
    scopes: ['bench:read'],
    access_token_format: 'jwt',
  });
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
  const users = await Promise.all(
    Array.from({ length: SIGN_IN_USERS }, async (_, i) => {
      const email = `bench-peers-${i}@bench.example`;
      await v2('/users', { email, first_name: 'Bench', last_name: `User ${i}`, password: PASSWORD });
      return { email, password: PASSWORD };
    }),
  );
  const webClient = { clientId: web.client_id, secret: web.client_secret, redirectUri: WEB_REDIRECT };
  const tokens = await signIn(server.url, webClient, users[0]!, 'openid offline_access', {
    prompt: 'consent',
  });
  let next = 0;
  const serviceAuth = basicAuth(service.client_id, service.client_secret);
  const webAuth = basicAuth(web.client_id, web.client_secret);
  const token = `${server.url}/oauth/token`;
  const cc = post(token, serviceAuth, form({ grant_type: 'client_credentials' }));
  const serviceToken = String((await call(cc)).access_token);
  const scenarios = new Map<string, Scenario>([
    ['client credentials', { request: cc, note: 'opaque' }],
    [
      'client credentials (JWT)',
      {
        request: post(
          token,
          serviceAuth,
          form({ grant_type: 'client_credentials', resource: api, scope: 'bench:read' }),
        ),
        note: 'JWT (RFC 9068)',
      },
    ],
    [
      'introspection',
      {
        request: post(`${server.url}/oauth/introspect`, webAuth, form({ token: serviceToken })),
        note: 'client authenticated',
      },
    ],
    [
      'refresh',
      {
        // A confidential client's refresh token is not rotated, so the same request repeats.
        request: post(
          token,
          webAuth,
          form({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }),
        ),
        note: 'confidential client, no rotation',
      },
    ],
    [
      'full sign-in',
      {
        signIn: async () => {
          next += 1;
          await signIn(server.url, webClient, users[next % users.length]!, 'openid');
        },
        note: `code + PKCE, our login form, argon2id ${hashNote()}`,
      },
    ],
  ]);
  await settle();
  const pid = server.child.pid!;
  return { name: 'ours', pid: () => pid, idleMiB: rssMiB(pid), scenarios, stop: () => server.stop() };
}

// --- Ory Hydra -------------------------------------------------------------------------------------

function hydraBinary(): string | undefined {
  const bin = join(CACHE, `hydra-${HYDRA_VERSION}`);
  if (existsSync(bin)) return bin;
  if (spawnSync('go', ['version']).status !== 0) return undefined;
  process.stderr.write(`building Ory Hydra ${HYDRA_VERSION} with the Go toolchain (several minutes, once)\n`);
  const download = spawnSync('go', ['mod', 'download', '-json', `github.com/ory/hydra/v2@${HYDRA_VERSION}`], {
    encoding: 'utf8',
  });
  const dir = /"Dir":\s*"([^"]+)"/.exec(download.stdout)?.[1];
  if (!dir) throw new Error(`go mod download of Hydra failed: ${download.stderr}`);
  const src = mkdtempSync(join(tmpdir(), 'hydra-src-'));
  try {
    spawnSync('cp', ['-r', `${dir}/.`, src], { stdio: 'inherit' });
    spawnSync('chmod', ['-R', 'u+w', src]);
    // The module's go.mod points hydra-client-go at a folder of its repository that the module
    // archive does not carry; without the replace the published client module is used.
    const gomod = join(src, 'go.mod');
    const text = readFileSync(gomod, 'utf8').replace(
      /^replace github\.com\/ory\/hydra-client-go\/v2 =>.*$/m,
      '',
    );
    spawnSync('sh', ['-c', `cat > "${gomod}"`], { input: text });
    mkdirSync(CACHE, { recursive: true });
    const built = spawnSync('go', ['build', '-tags', 'sqlite', '-trimpath', '-o', bin, '.'], {
      cwd: src,
      env: { ...process.env, GOFLAGS: '-mod=mod' },
      stdio: 'inherit',
    });
    if (built.status !== 0) throw new Error('building Hydra failed');
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
  return bin;
}

async function startHydra(bin: string): Promise<Product> {
  const [pub, adm] = [await freePort(), await freePort()];
  const publicUrl = `http://127.0.0.1:${pub}`;
  const adminUrl = `http://127.0.0.1:${adm}`;
  const child = spawn(bin, ['serve', 'all', '--dev'], {
    env: {
      PATH: process.env.PATH ?? '',
      DSN: 'memory',
      SERVE_PUBLIC_PORT: String(pub),
      SERVE_PUBLIC_HOST: '127.0.0.1',
      SERVE_ADMIN_PORT: String(adm),
      SERVE_ADMIN_HOST: '127.0.0.1',
      URLS_SELF_ISSUER: publicUrl,
      URLS_LOGIN: 'http://127.0.0.1:1/login',
      URLS_CONSENT: 'http://127.0.0.1:1/consent',
      SECRETS_SYSTEM: randomBytes(24).toString('hex'),
      LOG_LEVEL: 'error',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitFor(`${adminUrl}/health/ready`, child, 'Hydra', 60);
  const secret = randomBytes(24).toString('hex');
  const created = await call({
    url: `${adminUrl}/admin/clients`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'bench service',
      client_secret: secret,
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      access_token_strategy: 'opaque',
    }),
  });
  const auth = basicAuth(String(created.client_id), secret);
  const cc = post(`${publicUrl}/oauth2/token`, auth, form({ grant_type: 'client_credentials' }));
  const serviceToken = String((await call(cc)).access_token);
  const introspect = post(`${adminUrl}/admin/oauth2/introspect`, undefined, form({ token: serviceToken }));
  if ((await call(introspect)).active !== true) throw new Error('Hydra says its own token is inactive');
  await settle();
  const pid = child.pid!;
  return {
    name: 'Hydra',
    pid: () => pid,
    idleMiB: rssMiB(pid),
    scenarios: new Map<string, Scenario>([
      ['client credentials', { request: cc, note: 'opaque; client secret hashed with its default (bcrypt)' }],
      ['introspection', { request: introspect, note: 'admin port, caller not authenticated' }],
    ]),
    stop: () => stopChild(child),
  };
}

// --- Keycloak --------------------------------------------------------------------------------------

function javaHome(): string | undefined {
  const candidates = [
    process.env.JAVA_HOME,
    ...(existsSync('/usr/lib/jvm') ? readdirSync('/usr/lib/jvm').map((d) => join('/usr/lib/jvm', d)) : []),
  ].filter((d): d is string => Boolean(d));
  for (const home of candidates) {
    const java = join(home, 'bin', 'java');
    if (!existsSync(java)) continue;
    const out = spawnSync(java, ['-version'], { encoding: 'utf8' });
    const major = Number(/version "(\d+)/.exec(`${out.stderr}${out.stdout}`)?.[1] ?? 0);
    if (major >= 21) return home;
  }
  return undefined;
}

function keycloakHome(): string | undefined {
  const home = join(CACHE, `keycloak-${KEYCLOAK_VERSION}`);
  if (existsSync(join(home, 'bin', 'kc.sh'))) return home;
  mkdirSync(CACHE, { recursive: true });
  const zip = join(CACHE, `keycloak-${KEYCLOAK_VERSION}.zip`);
  const url =
    `https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/${KEYCLOAK_VERSION}/` +
    `keycloak-quarkus-dist-${KEYCLOAK_VERSION}.zip`;
  process.stderr.write(`downloading Keycloak ${KEYCLOAK_VERSION} from Maven Central (once)\n`);
  if (spawnSync('curl', ['-sSfL', '-o', zip, url], { stdio: 'inherit' }).status !== 0) return undefined;
  if (spawnSync('unzip', ['-q', '-o', zip, '-d', CACHE], { stdio: 'inherit' }).status !== 0) return undefined;
  return existsSync(join(home, 'bin', 'kc.sh')) ? home : undefined;
}

async function startKeycloak(home: string, java: string): Promise<Product> {
  const hash = hashParams();
  const [port, management] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(
    join(home, 'bin', 'kc.sh'),
    [
      'start-dev',
      `--http-port=${port}`,
      '--http-host=127.0.0.1',
      `--http-management-port=${management}`,
      '--hostname-strict=false',
      // Passwords hashed as ours are (argon2id, the same memory, passes and lanes).
      `--spi-password-hashing--argon2--memory=${hash.memoryKiB}`,
      `--spi-password-hashing--argon2--iterations=${hash.timeCost}`,
      `--spi-password-hashing--argon2--parallelism=${hash.parallelism}`,
      // An in-memory database: every run starts empty (the distribution's own data folder is shared).
      '--db=dev-mem',
    ],
    {
      env: {
        PATH: `${join(java, 'bin')}:${process.env.PATH ?? ''}`,
        JAVA_HOME: java,
        KC_BOOTSTRAP_ADMIN_USERNAME: 'admin',
        KC_BOOTSTRAP_ADMIN_PASSWORD: 'bench-admin-password',
        KC_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  try {
    await waitFor(`${base}/realms/master`, child, 'Keycloak', 240);
    const adminTok = String(
      (
        await call(
          post(
            `${base}/realms/master/protocol/openid-connect/token`,
            undefined,
            form({
              grant_type: 'password',
              client_id: 'admin-cli',
              username: 'admin',
              password: 'bench-admin-password',
            }),
          ),
        )
      ).access_token,
    );
    const adminCall = async (path: string, body: object) => {
      const res = await fetch(`${base}/admin${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminTok}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status !== 201)
        throw new Error(`Keycloak POST /admin${path}: ${res.status} ${await res.text()}`);
    };
    await adminCall('/realms', {
      realm: 'bench',
      enabled: true,
      accessTokenLifespan: 3600,
      ssoSessionIdleTimeout: 36_000,
    });
    const secret = randomBytes(24).toString('hex');
    await adminCall('/realms/bench/clients', {
      clientId: 'bench-service',
      secret,
      publicClient: false,
      serviceAccountsEnabled: true,
      standardFlowEnabled: false,
      directAccessGrantsEnabled: true,
      clientAuthenticatorType: 'client-secret',
      // Keycloak 26 introspects a token only for a client in its audience: the service asks about
      // its own token, so it names itself there (as a resource server would be named).
      protocolMappers: [
        {
          name: 'audience-self',
          protocol: 'openid-connect',
          protocolMapper: 'oidc-audience-mapper',
          config: {
            'included.client.audience': 'bench-service',
            'access.token.claim': 'true',
            'introspection.token.claim': 'true',
          },
        },
      ],
    });
    const webSecret = randomBytes(24).toString('hex');
    await adminCall('/realms/bench/clients', {
      clientId: 'bench-web',
      secret: webSecret,
      publicClient: false,
      standardFlowEnabled: true,
      directAccessGrantsEnabled: false,
      clientAuthenticatorType: 'client-secret',
      redirectUris: [WEB_REDIRECT],
      attributes: { 'pkce.code.challenge.method': 'S256' },
    });
    for (let i = 0; i < SIGN_IN_USERS; i += 1) {
      await adminCall('/realms/bench/users', {
        username: `bench-user-${i}`,
        email: `bench-user-${i}@bench.example`,
        firstName: 'Bench',
        lastName: `User ${i}`,
        enabled: true,
        emailVerified: true,
        credentials: [{ type: 'password', value: PASSWORD, temporary: false }],
      });
    }
    const webClient = { clientId: 'bench-web', secret: webSecret, redirectUri: WEB_REDIRECT };
    const userTokens = await keycloakSignIn(base, webClient, 'bench-user-0');
    let next = 0;
    const auth = basicAuth('bench-service', secret);
    const token = `${base}/realms/bench/protocol/openid-connect/token`;
    const cc = post(token, auth, form({ grant_type: 'client_credentials' }));
    const serviceToken = String((await call(cc)).access_token);
    const introspect = post(`${token}/introspect`, auth, form({ token: serviceToken }));
    if ((await call(introspect)).active !== true) throw new Error('Keycloak says its own token is inactive');
    // The web client's refresh token from that sign-in, refreshed as ours is.
    const refresh = post(
      token,
      basicAuth(webClient.clientId, webSecret),
      form({ grant_type: 'refresh_token', refresh_token: String(userTokens.refresh_token) }),
    );
    await call(refresh);
    await settle();
    const pid = leafPid(child.pid!);
    return {
      name: 'Keycloak',
      pid: () => pid,
      idleMiB: rssMiB(pid),
      scenarios: new Map<string, Scenario>([
        ['client credentials (JWT)', { request: cc, note: 'JWT (its only kind)' }],
        ['introspection', { request: introspect, note: 'client authenticated' }],
        ['refresh', { request: refresh, note: 'start-dev; refresh tokens not rotated by default' }],
        [
          'full sign-in',
          {
            signIn: async () => {
              next += 1;
              await keycloakSignIn(base, webClient, `bench-user-${next % SIGN_IN_USERS}`);
            },
            note: `code + PKCE, its own login form, argon2id ${hashNote()}`,
          },
        ],
      ]),
      stop: () => stopChild(child),
    };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

// --- The run -----------------------------------------------------------------------------------------

interface Sample extends Measurement {
  product: string;
  scenario: string;
  cpuPerRequest: number;
  peakMiB: number;
}

export async function runPeersBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '16' },
      rounds: { type: 'string', default: '2' },
      'warm-up': { type: 'string', default: '3' },
      'skip-hydra': { type: 'boolean', default: false },
      'skip-keycloak': { type: 'boolean', default: false },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  const warmUp = Number(values['warm-up']);
  const notes: string[] = [];
  const products: Product[] = [];
  try {
    products.push(
      await startOurs({
        ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
        ...(values.redis ? { REDIS_URL: values.redis } : {}),
      }),
    );
    if (values['skip-hydra']) notes.push('Hydra skipped (--skip-hydra).');
    else {
      const bin = hydraBinary();
      if (bin) products.push(await startHydra(bin));
      else notes.push('Hydra skipped: the Go toolchain is not installed.');
    }
    if (values['skip-keycloak']) notes.push('Keycloak skipped (--skip-keycloak).');
    else {
      const java = javaHome();
      const home = java ? keycloakHome() : undefined;
      if (java && home) products.push(await startKeycloak(home, java));
      else
        notes.push(
          `Keycloak skipped: ${java ? 'the Keycloak distribution could not be fetched' : 'no Java 21+ found'}.`,
        );
    }

    const samples: Sample[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const order = round % 2 === 0 ? products : [...products].reverse();
      for (const product of order) {
        for (const [scenario, spec] of product.scenarios) {
          const run = (name: string, seconds: number) => {
            if ('signIn' in spec) {
              return closedLoop(name, { concurrency: SIGN_IN_CONCURRENCY, durationS: seconds }, spec.signIn);
            }
            const { request } = spec;
            return measure(name, {
              url: request.url,
              method: request.method,
              headers: request.headers,
              ...(request.body ? { body: request.body } : {}),
              connections,
              duration: seconds,
            });
          };
          await run('warm-up', warmUp);
          const watched = await watchProcess(product.pid(), () => run(scenario, duration));
          const { result } = watched;
          if (result.errors > result.requests / 100) {
            throw new Error(
              `${product.name} ${scenario}: ${result.errors} errors in ${result.requests} requests`,
            );
          }
          samples.push({
            ...result,
            product: product.name,
            scenario,
            cpuPerRequest: watched.cpuMs / Math.max(1, result.requests),
            peakMiB: watched.peakMiB,
          });
        }
      }
    }
    return report(products, samples, notes, { duration, connections, rounds, warmUp });
  } finally {
    for (const product of products) await product.stop().catch(() => undefined);
  }
}

function report(
  products: Product[],
  samples: Sample[],
  notes: string[],
  run: { duration: number; connections: number; rounds: number; warmUp: number },
): string {
  const lines: string[] = [];
  lines.push('### Peers: ours, Ory Hydra, Keycloak (same machine, same load, alternating rounds)', '');
  lines.push(
    `${machine()}. Ory Hydra ${HYDRA_VERSION} (DSN=memory), Keycloak ${KEYCLOAK_VERSION} (start-dev). ` +
      `autocannon -c ${run.connections}, ${run.warmUp} s warm-up then ${run.duration} s per scenario, ` +
      `${run.rounds} rounds with the order reversed every round. Each row: every round's requests/s, then ` +
      'the median p50/p99 (ms), server CPU per request and peak RSS under the load. Full sign-ins run ' +
      `${SIGN_IN_CONCURRENCY} at a time in closed loops (a "request" there is a whole sign-in).`,
    '',
  );
  lines.push('| Product | Scenario | Tokens | Requests/s (rounds) | p50 | p99 | CPU ms/req | Peak RSS MiB |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  /** The middle value; with an even count (two rounds), the mean of the middle two. */
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  const best = new Map<string, number>();
  for (const product of products) {
    for (const [scenario, { note }] of product.scenarios) {
      const mine = samples.filter((s) => s.product === product.name && s.scenario === scenario);
      if (mine.length === 0) continue;
      const rates = mine.map((s) => s.requestsPerSecond);
      best.set(`${product.name}\n${scenario}`, median(rates));
      lines.push(
        `| ${product.name} | ${scenario} | ${note} | ${rates.map((r) => r.toLocaleString('en')).join(' / ')} | ` +
          `${Math.round(median(mine.map((s) => s.p50)))} | ${Math.round(median(mine.map((s) => s.p99)))} | ` +
          `${median(mine.map((s) => s.cpuPerRequest)).toFixed(2)} | ${Math.max(...mine.map((s) => s.peakMiB))} |`,
      );
    }
  }
  lines.push('', '| Product | Idle RSS MiB (after start and set-up) |', '| --- | --- |');
  for (const product of products) lines.push(`| ${product.name} | ${product.idleMiB} |`);
  lines.push('', '| Ratio ours/peer (median requests/s) | Hydra | Keycloak |', '| --- | --- | --- |');
  const ratio = (scenario: string, peer: string, oursScenario = scenario) => {
    const a = best.get(`ours\n${oursScenario}`);
    const b = best.get(`${peer}\n${scenario}`);
    return a && b ? `${(a / b).toFixed(2)}×` : '—';
  };
  lines.push(
    `| client credentials | ${ratio('client credentials', 'Hydra')} | ${ratio('client credentials (JWT)', 'Keycloak')} (JWT both) |`,
  );
  lines.push(
    `| introspection | ${ratio('introspection', 'Hydra')} | ${ratio('introspection', 'Keycloak')} |`,
  );
  lines.push(`| refresh | — (not measured) | ${ratio('refresh', 'Keycloak')} |`);
  lines.push(
    `| full sign-in (same argon2id cost) | — (not measured) | ${ratio('full sign-in', 'Keycloak')} |`,
  );
  if (notes.length) lines.push('', ...notes.map((n) => `- ${n}`));
  return lines.join('\n');
}
