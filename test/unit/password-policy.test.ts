import { describe, expect, it } from '@jest/globals';

import { createPasswordPolicy, passwordDictionariesLoaded } from '../../src/services/password-policy.js';
import { MAX_PASSWORD_LENGTH } from '../../src/services/passwords.js';

// One file, run in order: the first describe block observes the dictionaries before anything loaded
// them in this module registry.
describe('password policy', () => {
  const policy = createPasswordPolicy({ minLength: 12, minScore: 3 });

  it('does not load the strength dictionaries until a password needs an estimate', () => {
    expect(policy.minLength).toBe(12);
    expect(policy.minScore).toBe(3);
    expect(passwordDictionariesLoaded()).toBe(false);
    // Refused on length or as the user's own email: no estimate needed, nothing loaded.
    expect(policy.check('short')).toEqual({ ok: false, issues: ['Use at least 12 characters'] });
    expect(policy.check('Ada.Lovelace@example.com', ['ada.lovelace@example.com'])).toEqual({
      ok: false,
      issues: ['Do not use your name or email address as your password'],
    });
    expect(passwordDictionariesLoaded()).toBe(false);

    expect(policy.check('Lantern-orchard-47 drifting quietly')).toEqual({ ok: true, issues: [] });
    expect(passwordDictionariesLoaded()).toBe(true);
  });

  it('refuses common passwords with the estimator’s feedback', () => {
    const verdict = policy.check('password1234');
    expect(verdict.ok).toBe(false);
    expect(verdict.issues).toHaveLength(1);
    expect(verdict.issues[0]!.length).toBeGreaterThan(0);
    // Dictionary words are known: a long but common phrase scores low.
    expect(policy.check('qwertyuiopasdf').ok).toBe(false);
  });

  it('counts the user’s name and email as guessable', () => {
    // Strong for a stranger, weak for the person whose email it spells.
    const password = 'zygmuntquillfeather';
    expect(policy.check(password).ok).toBe(true);
    expect(policy.check(password, ['zygmunt.quillfeather@example.com']).ok).toBe(false);
    expect(policy.check(password, ['Zygmunt', 'Quillfeather']).ok).toBe(false);
  });

  it('refuses passwords longer than the hashing limit', () => {
    expect(policy.check('x'.repeat(MAX_PASSWORD_LENGTH + 1))).toEqual({
      ok: false,
      issues: [`Use at most ${MAX_PASSWORD_LENGTH} characters`],
    });
  });

  it('applies each policy’s own thresholds with the shared dictionaries', () => {
    const lenient = createPasswordPolicy({ minLength: 8, minScore: 0 });
    expect(lenient.check('password1234')).toEqual({ ok: true, issues: [] });
    expect(lenient.check('short')).toEqual({ ok: false, issues: ['Use at least 8 characters'] });
  });
});
