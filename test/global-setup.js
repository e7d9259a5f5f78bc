// Process-level tests run the compiled server and CLI, so compile dist/ first when it is stale.
import { execFileSync } from 'node:child_process';

export default function globalSetup() {
  execFileSync(process.execPath, ['scripts/ensure-built.mjs'], { stdio: 'inherit' });
}
