/**
 * Policy decision benchmark: POST /v1/authorize against 100 Cedar policies whose principals are
 * roles (20 roles, each user holding a primary and a linked one), 10 actions and a context
 * condition, with the same questions in rotation across 50 users. Floor: 3,000 decisions/s per core
 * (requests answered divided by the server's CPU seconds, the server being one process).
 *
 * Three scenarios: the decision cache on (POLICY_DECISION_CACHE_TTL_S=5) with the same questions, so
 * they are answered from it; the cache on with a nonce in every question's context, so Cedar decides
 * each one (the users' roles and registered entities are still kept); and, on a second server, the
 * cache off (POLICY_DECISION_CACHE_TTL_S=0): every decision reads the store and asks Cedar.
 *
 * Beside it, the in-process Cedar rate for the same set and entities, as the ceiling: the whole set
 * of 100 policies evaluated per request (what Cedar alone does), and the scope-filtered subsets the
 * server evaluates (src/services/policy-engine.ts).
 *
 * Usage: npm run bench -- policy [--duration S] [--mongo URI] [--redis URL]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

import type * as EngineModule from '../src/services/policy-engine.ts';

import {
  adminToken,
  cpuMs,
  machine,
  measure,
  ROOT,
  startServer,
  table,
  threadCpuMs,
  type Measurement,
} from './lib.ts';

const ROLES = 20;
const ACTIONS = 10;
const POLICIES = 100;
const USERS = 50;

const policyText = (i: number) =>
  i % 25 === 24
    ? `forbid(principal in Role::"bench-r${i % ROLES}", action == Action::"a${i % ACTIONS}", resource) when { context.level < 0 };`
    : `permit(principal in Role::"bench-r${i % ROLES}", action == Action::"a${i % ACTIONS}", resource) when { context.level >= ${i % 5} };`;

async function call(
  url: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? undefined : res.json();
}

/** Evaluations per second for `seconds`, in this process. */
function rate(seconds: number, work: (i: number) => void): number {
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) work(n++);
  return Math.round(n / ((performance.now() - started) / 1000));
}

async function inProcessCeiling(): Promise<{ whole: number; filtered: number }> {
  const dist = (p: string) => pathToFileURL(join(ROOT, 'dist', p)).href;
  const engine = (await import(dist('services/policy-engine.js'))) as typeof EngineModule;
  const now = new Date();
  const records = Array.from({ length: POLICIES }, (_, i) => ({
    id: `bench-${i}`,
    description: null,
    policy: policyText(i),
    enabled: true,
    version: 1,
    created_at: now,
    updated_at: now,
  }));
  const set = new engine.CompiledPolicySet(records, new engine.SubsetCache(), 0);
  const requests = Array.from({ length: USERS }, (_, u) => ({
    principal: { type: 'User', id: `u${u}` },
    action: { type: 'Action', id: `a${u % ACTIONS}` },
    resource: { type: 'Document', id: `d${u}` },
    context: { level: u % 5 },
    entities: [
      {
        uid: { type: 'User', id: `u${u}` },
        attrs: { email: `u${u}@bench.example`, status: 'active', plan: 'basic', metadata: {} },
        parents: [
          { type: 'Role', id: `bench-r${u % ROLES}` },
          { type: 'Role', id: `bench-r${(u + 7) % ROLES}` },
        ],
      },
      { uid: { type: 'Role', id: `bench-r${u % ROLES}` }, attrs: {} as Record<string, string>, parents: [] },
      {
        uid: { type: 'Role', id: `bench-r${(u + 7) % ROLES}` },
        attrs: {} as Record<string, string>,
        parents: [],
      },
    ],
  }));
  cedar.preparsePolicySet('bench-whole', { staticPolicies: set.texts() });
  const whole = rate(3, (i) => {
    const r = requests[i % USERS]!;
    cedar.statefulIsAuthorized({
      ...(r as never as Parameters<typeof cedar.statefulIsAuthorized>[0]),
      preparsedPolicySetId: 'bench-whole',
    });
  });
  const filtered = rate(3, (i) => set.decide(requests[i % USERS]! as Parameters<typeof set.decide>[0]));
  return { whole, filtered };
}

interface Scenario {
  name: string;
  /** The body of the n-th request. */
  body: (n: number) => string;
}

interface Result {
  measured: Measurement;
  perCore: number;
  cpuSeconds: number;
  mainSeconds: number;
  otherSeconds: number;
}

/** One server with `env`, the bench's roles, users and policies, and each scenario measured on it. */
async function onServer(
  env: Record<string, string>,
  duration: number,
  scenarios: (bodies: string[], users: string[]) => Scenario[],
): Promise<{ results: Result[]; rss: number }> {
  const server = await startServer(env);
  try {
    const token = await adminToken(server.url, 'user:write role:manage policy:manage policy:evaluate');
    const roles: { id: string; name: string }[] = [];
    for (let r = 0; r < ROLES; r++) {
      roles.push(
        (await call(server.url, token, 'POST', '/v2/roles', { name: `bench-r${r}` })) as {
          id: string;
          name: string;
        },
      );
    }
    const users: string[] = [];
    for (let u = 0; u < USERS; u++) {
      const user = (await call(server.url, token, 'POST', '/v2/users', {
        email: `u${u}-${Date.now()}@bench.example`,
        first_name: 'Bench',
        last_name: `User${u}`,
        role: roles[u % ROLES]!.name,
      })) as { id: string };
      await call(server.url, token, 'POST', `/v2/users/${user.id}/roles/${roles[(u + 7) % ROLES]!.id}`);
      users.push(user.id);
    }
    for (let i = 0; i < POLICIES; i++) {
      await call(server.url, token, 'POST', '/v2/policies', { id: `bench-${i}`, policy: policyText(i) });
    }
    const bodies = users.map((id, u) => JSON.stringify(question(id, u)));
    const probe = (await call(server.url, token, 'POST', '/v1/authorize', JSON.parse(bodies[0]!))) as {
      decision: string;
    };
    if (probe.decision !== 'Allow') throw new Error(`unexpected decision: ${JSON.stringify(probe)}`);

    const results: Result[] = [];
    for (const scenario of scenarios(bodies, users)) {
      let sequence = 0;
      const decide = {
        method: 'POST' as const,
        path: '/v1/authorize',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        setupRequest: (req: object) => ({ ...req, body: scenario.body(sequence++) }),
      };
      const base = { url: server.url, duration, connections: 16 };
      await measure('warm-up', { ...base, duration: 3, requests: [decide] });
      const cpuBefore = cpuMs(server.child.pid!);
      const threadsBefore = threadCpuMs(server.child.pid!);
      const measured = await measure(scenario.name, { ...base, requests: [decide] });
      const cpuSeconds = (cpuMs(server.child.pid!) - cpuBefore) / 1000;
      const threadsAfter = threadCpuMs(server.child.pid!);
      results.push({
        measured,
        cpuSeconds,
        mainSeconds: (threadsAfter.main - threadsBefore.main) / 1000,
        otherSeconds:
          (threadsAfter.other + threadsAfter.pool - threadsBefore.other - threadsBefore.pool) / 1000,
        perCore: Math.round((measured.requests - measured.errors) / cpuSeconds),
      });
    }
    return { results, rss: await server.rssMiB() };
  } finally {
    await server.stop();
  }
}

const question = (id: string, u: number, nonce?: number) => ({
  principal: { type: 'User', id },
  action: { type: 'Action', id: `a${u % ACTIONS}` },
  resource: { type: 'Document', id: `d${u}` },
  context: nonce === undefined ? { level: u % 5 } : { level: u % 5, nonce },
});

export async function runPolicyBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const env = {
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
  };
  // The decision cache on (the default, 5 s): the same 50 questions in rotation are answered from
  // it; a nonce in the context makes every question new (Cedar evaluates, the entities are kept).
  const cached = await onServer({ ...env, POLICY_DECISION_CACHE_TTL_S: '5' }, duration, (bodies, users) => [
    {
      name: 'POST /v1/authorize, 100 policies, role parents, cache on',
      body: (n) => bodies[n % bodies.length]!,
    },
    {
      name: 'POST /v1/authorize, cache on, every question new',
      body: (n) => JSON.stringify(question(users[n % users.length]!, n % users.length, n)),
    },
  ]);
  // The cache off: every decision reads the store and asks Cedar.
  const uncached = await onServer({ ...env, POLICY_DECISION_CACHE_TTL_S: '0' }, duration, (bodies) => [
    { name: 'POST /v1/authorize, cache off', body: (n) => bodies[n % bodies.length]! },
  ]);
  const results = [...cached.results, ...uncached.results];
  const perCore = new Map(results.map((r) => [r.measured, r.perCore]));
  const ceiling = await inProcessCeiling();
  const [hit, fresh, off] = results as [Result, Result, Result];
  const threads = (r: Result) =>
    `${r.cpuSeconds.toFixed(1)} CPU s (${r.mainSeconds.toFixed(1)} event loop, ${r.otherSeconds.toFixed(1)} other threads)`;

  return [
    `### Policy decisions on ${backend}`,
    '',
    `Machine: ${machine()}. Load generator and server share the machine.`,
    '',
    table(
      results.map((r) => r.measured),
      { 'Per core': (m) => `${perCore.get(m)}/s` },
    ),
    '',
    `Decisions per second per core (answered requests / server CPU seconds; floor 3,000): ` +
      `**${hit.perCore.toLocaleString('en')}** with the decision cache answering the same questions, ` +
      `**${fresh.perCore.toLocaleString('en')}** with every question new (Cedar evaluates; users' roles and ` +
      `registered entities kept), **${off.perCore.toLocaleString('en')}** with the cache off. Server CPU: ` +
      `${threads(hit)}; ${threads(fresh)}; ${threads(off)}. Server RSS after the runs: ${cached.rss} MiB (cache on), ` +
      `${uncached.rss} MiB (off).`,
    '',
    `In-process Cedar ceiling for the same set and entities (one core, this process): the whole set of ${POLICIES} ` +
      `policies per request ${ceiling.whole.toLocaleString('en')}/s; the scope-filtered subsets the server ` +
      `evaluates ${ceiling.filtered.toLocaleString('en')}/s.`,
    '',
  ].join('\n');
}
