/**
 * The password policy for passwords set through the API or at a forced reset: a minimum length
 * (PASSWORD_MIN_LENGTH, default 12) and an estimated strength (zxcvbn-ts score, PASSWORD_MIN_SCORE,
 * default 3 of 4) computed against common-password and English dictionaries plus the user's own
 * name and email.
 *
 * The dictionaries are large (about 58 MiB of heap once zxcvbn has ranked them), and most processes
 * never check a password: a server that only issues and introspects tokens, or a CLI command. They
 * are therefore loaded and ranked on the first check that gets as far as the strength estimate, not
 * at startup. `check()` stays synchronous (its callers do not await it), so the packages are loaded
 * with require; they are CommonJS packages, the same files an import would load. The first such check
 * pays the load (a few hundred milliseconds); later checks reuse the estimator.
 */
import { createRequire } from 'node:module';

import type * as ZxcvbnCore from '@zxcvbn-ts/core';
import type * as ZxcvbnCommon from '@zxcvbn-ts/language-common';
import type * as ZxcvbnEn from '@zxcvbn-ts/language-en';

import { MAX_PASSWORD_LENGTH } from './passwords.js';

export interface PasswordVerdict {
  ok: boolean;
  /** Why it was refused, for the person choosing it. */
  issues: string[];
}

export interface PasswordPolicy {
  readonly minLength: number;
  readonly minScore: number;
  check(password: string, personal?: string[]): PasswordVerdict;
}

type Estimator = InstanceType<typeof ZxcvbnCore.ZxcvbnFactory>;

const requireCjs = createRequire(import.meta.url);

/** One estimator per process, built on first use and shared by every policy. */
let sharedEstimator: Estimator | undefined;

function estimator(): Estimator {
  if (!sharedEstimator) {
    const core = requireCjs('@zxcvbn-ts/core') as typeof ZxcvbnCore;
    const common = requireCjs('@zxcvbn-ts/language-common') as typeof ZxcvbnCommon;
    const en = requireCjs('@zxcvbn-ts/language-en') as typeof ZxcvbnEn;
    sharedEstimator = new core.ZxcvbnFactory({
      dictionary: { ...common.dictionary, ...en.dictionary },
      graphs: common.adjacencyGraphs,
      translations: en.translations,
    });
  }
  return sharedEstimator;
}

/** Whether the dictionaries have been loaded in this process (they are, after the first full check). */
export function passwordDictionariesLoaded(): boolean {
  return sharedEstimator !== undefined;
}

export function createPasswordPolicy(options: { minLength: number; minScore: number }): PasswordPolicy {
  return {
    ...options,
    check(password, personal = []) {
      const issues: string[] = [];
      if (password.length < options.minLength) issues.push(`Use at least ${options.minLength} characters`);
      if (password.length > MAX_PASSWORD_LENGTH) issues.push(`Use at most ${MAX_PASSWORD_LENGTH} characters`);
      const lowered = password.toLowerCase();
      if (issues.length === 0 && personal.some((p) => p && lowered === p.toLowerCase().trim())) {
        issues.push('Do not use your name or email address as your password');
      }
      if (issues.length === 0) {
        // Whole values (an email as typed, its local part) and their words all count as guessable.
        const words = [
          ...new Set(
            personal.flatMap((p) => {
              const lower = p.toLowerCase().trim();
              return [lower, lower.split('@')[0] ?? '', ...lower.split(/[\s@.+_-]+/)];
            }),
          ),
        ].filter((w) => w.length >= 3);
        const result = estimator().check(password.slice(0, 256), words);
        if (result.score < options.minScore) {
          issues.push(
            [result.feedback.warning, ...result.feedback.suggestions].filter(Boolean).join(' ') ||
              'Choose a less predictable password',
          );
        }
      }
      return { ok: issues.length === 0, issues };
    },
  };
}
