/**
 * The SDK as a customer's app installs it: `latchkey/sdk` resolves through the package's exports to
 * the compiled module and its type declarations, loads in a plain Node process, and its sources
 * import nothing of the server (only each other, jose, standardwebhooks and Node's built-ins).
 */
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

import { ROOT } from '../helpers/processes.js';

const SDK = join(ROOT, 'src', 'sdk');

function sourcesOf(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourcesOf(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

/** Runs an ES module snippet in a child Node process from the repository root. */
function runModule(code: string): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8' });
}

describe('the latchkey/sdk entry point', () => {
  it('imports only its own files, jose, standardwebhooks and Node built-ins', () => {
    const outside: string[] = [];
    for (const file of sourcesOf(SDK)) {
      const text = readFileSync(file, 'utf8');
      for (const [, specifier] of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
        const allowed =
          specifier === 'jose' ||
          specifier === 'standardwebhooks' ||
          specifier!.startsWith('node:') ||
          (specifier!.startsWith('.') && resolve(file, '..', specifier!).startsWith(SDK));
        if (!allowed) outside.push(`${relative(ROOT, file)}: ${specifier}`);
      }
    }
    expect(outside).toEqual([]);
  });

  it('resolves through package.json exports to the compiled module with declarations, and loads', () => {
    const resolved = runModule("console.log(import.meta.resolve('latchkey/sdk'))").trim();
    expect(resolved).toBe(`file://${join(ROOT, 'dist', 'sdk', 'index.js')}`);
    expect(existsSync(join(ROOT, 'dist', 'sdk', 'index.d.ts'))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: unknown };
    expect(manifest.exports).toMatchObject({
      './sdk': { types: './dist/sdk/index.d.ts', default: './dist/sdk/index.js' },
    });

    const exported = runModule(
      "const sdk = await import('latchkey/sdk'); console.log(JSON.stringify(Object.keys(sdk).sort()))",
    );
    expect(JSON.parse(exported)).toEqual(
      [
        'accessTokenHash',
        'DPoPProofError',
        'MemoryDPoPReplayCache',
        'verifyDPoPProof',
        'HttpTransport',
        'LatchkeyAuthenticator',
        'LatchkeyClient',
        'LatchkeyError',
        'latchkeyExpress',
        'latchkeyKoa',
        'paginate',
        'parseRetryAfter',
        'requirePermission',
        'requirePermissionKoa',
        'verifyWebhook',
        'webhookExpress',
        'webhookKoa',
        'WebhookVerificationError',
      ].sort(),
    );
  });

  it('keeps the package’s main entry point', () => {
    expect(runModule("console.log(import.meta.resolve('latchkey'))").trim()).toBe(
      `file://${join(ROOT, 'dist', 'main.js')}`,
    );
  });
});
