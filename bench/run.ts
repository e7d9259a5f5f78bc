/**
 * `npm run bench -- <suite> [options]`: runs a benchmark against the compiled server and prints a
 * Markdown report (copy it into docs/benchmarks.md). Suites: admin, analytics, protocol, verify-key,
 * webhooks, policy, gateway, mail, peers (Ory Hydra and Keycloak beside us; only when named). Without a suite name
 * (or with `all`), runs every suite in turn with the same options (those common to all: --duration,
 * --mongo, --redis).
 */
import { runAdminBenchmark } from './admin.ts';
import { runAnalyticsBenchmark } from './analytics.ts';
import { runProtocolBenchmark } from './protocol.ts';
import { runVerifyKeyBenchmark } from './verify-key.ts';
import { runWebhookBenchmark } from './webhooks.ts';
import { runPolicyBenchmark } from './policy.ts';
import { runGatewayBenchmark } from './gateway.ts';
import { runMailBenchmark } from './mail.ts';
import { runPeersBenchmark } from './peers.ts';

const suites: Record<string, (argv: string[]) => Promise<string>> = {
  admin: runAdminBenchmark,
  analytics: runAnalyticsBenchmark,
  protocol: runProtocolBenchmark,
  'verify-key': runVerifyKeyBenchmark,
  webhooks: runWebhookBenchmark,
  policy: runPolicyBenchmark,
  gateway: runGatewayBenchmark,
  mail: runMailBenchmark,
};
/** Suites that need other products' toolchains: run only when named. */
const namedOnly: Record<string, (argv: string[]) => Promise<string>> = { peers: runPeersBenchmark };

const args = process.argv.slice(2);
const runAll = args.length === 0 || args[0] === 'all' || (args[0]!.startsWith('--') && args[0] !== '--help');
const [name = '', ...rest] = runAll && args[0] !== 'all' ? ['all', ...args] : args;
const suite = suites[name] ?? namedOnly[name];
if (!runAll && !suite) {
  process.stderr.write(
    `usage: npm run bench -- [all|${[...Object.keys(suites), ...Object.keys(namedOnly)].join('|')}] [options]\n` +
      '  no suite name (or all): every suite in turn, with options common to all (--duration, --mongo, --redis)\n',
  );
  process.exit(2);
}
for (const run of runAll ? Object.values(suites) : [suite!]) process.stdout.write(`${await run(rest)}\n`);
