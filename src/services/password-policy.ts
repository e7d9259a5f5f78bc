/**
 * The password policy for passwords set through the API or at a forced reset: a minimum length
 * (PASSWORD_MIN_LENGTH, default 12) and an estimated strength (zxcvbn-ts score, PASSWORD_MIN_SCORE,
 * default 3 of 4) computed against common-password and English dictionaries plus the user's own
 * name and email.
 */
import zxcvbnCore from '@zxcvbn-ts/core';
import zxcvbnCommon from '@zxcvbn-ts/language-common';
import zxcvbnEn from '@zxcvbn-ts/language-en';

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

export function createPasswordPolicy(options: { minLength: number; minScore: number }): PasswordPolicy {
  const estimator = new zxcvbnCore.ZxcvbnFactory({
    dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEn.dictionary },
    graphs: zxcvbnCommon.adjacencyGraphs,
    translations: zxcvbnEn.translations,
  });
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
        const result = estimator.check(password.slice(0, 256), words);
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
