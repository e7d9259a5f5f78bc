/**
 * Debian's Chromium for the browser suites, driven by playwright-core (never a downloaded browser):
 * where it is, the flags it runs with on this machine's closed network, and a describe() that skips
 * with a loud line when there is no Chromium. A Chromium that exists but cannot start fails the suite.
 */
import { describe } from '@jest/globals';
import { existsSync } from 'node:fs';

import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** describe() when Chromium is installed; otherwise a skipped describe and one line on stderr. */
export const describeWithChromium = existsSync(CHROMIUM)
  ? describe
  : (name: string, body: () => void) => {
      process.stderr.write(
        `SKIPPED ${name}: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)\n`,
      );
      describe.skip(`${name} [skipped: no Chromium at ${CHROMIUM}]`, body);
    };

/** Chromium with the flags above, and any the suite adds (host mappings, say). */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 30_000,
  });
}
