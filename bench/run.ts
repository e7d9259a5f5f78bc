/**
 * `npm run bench -- <suite> [options]`: runs a benchmark against the compiled server and prints a
 * Markdown report (copy it into docs/benchmarks.md). Suites: admin.
 */
import { runAdminBenchmark } from './admin.ts';

const suites: Record<string, (argv: string[]) => Promise<string>> = {
  admin: runAdminBenchmark,
};

const [name = '', ...rest] = process.argv.slice(2);
const suite = suites[name];
if (!suite) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(suites).join('|')}> [options]\n`);
  process.exit(2);
}
process.stdout.write(`${await suite(rest)}\n`);
