#!/usr/bin/env node
// Builds dist/ from src/ when it is missing or older than the sources, so `npm start` works on a
// fresh clone. `--stamp` only records that a build just happened (npm run build calls it).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.build-stamp');

function newest(path) {
  if (!existsSync(path)) return 0;
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  let latest = 0;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

if (process.argv.includes('--stamp')) {
  writeFileSync(stamp, new Date().toISOString());
  process.exit(0);
}

const sources = join(root, 'src');
if (!existsSync(sources)) process.exit(0); // a packaged image ships dist/ only

const inputs = Math.max(
  newest(sources),
  newest(join(root, 'tsconfig.json')),
  newest(join(root, 'tsconfig.build.json')),
  newest(join(root, 'package-lock.json')),
);
if (existsSync(stamp) && statSync(stamp).mtimeMs >= inputs) process.exit(0);

process.stderr.write('latchkey: compiling TypeScript to dist/ ...\n');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
  cwd: root,
});
writeFileSync(stamp, new Date().toISOString());
