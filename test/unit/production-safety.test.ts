import { describe, expect, it } from '@jest/globals';

import { loadConfig } from '../../src/config/load-config.js';
import { productionProblems } from '../../src/config/production-safety.js';

const SAFE = {
  NODE_ENV: 'production',
  ISSUER: 'https://id.example.com',
  COOKIE_KEYS: 'c'.repeat(40),
  KEY_ENCRYPTION_SECRET: 'k'.repeat(40),
};

const problems = (env: Record<string, string>) => productionProblems(loadConfig({ env }));

describe('production safety', () => {
  it('accepts a complete production configuration', () => {
    expect(problems(SAFE)).toEqual([]);
  });

  it('checks nothing outside production', () => {
    expect(problems({ NODE_ENV: 'development' })).toEqual([]);
  });

  it('refuses an http issuer unless explicitly allowed behind a trusted proxy', () => {
    expect(problems({ ...SAFE, ISSUER: 'http://id.example.com' })).toEqual([
      'ISSUER must be an https:// URL in production (got http://id.example.com); behind a TLS-terminating proxy set ALLOW_HTTP_ISSUER=true and TRUST_PROXY=true',
    ]);
    expect(problems({ ...SAFE, ISSUER: 'http://id.example.com', ALLOW_HTTP_ISSUER: 'true' })).toEqual([
      'ALLOW_HTTP_ISSUER=true needs TRUST_PROXY=true, so the proxy-reported https scheme is used',
    ]);
    expect(
      problems({ ...SAFE, ISSUER: 'http://id.example.com', ALLOW_HTTP_ISSUER: 'true', TRUST_PROXY: 'true' }),
    ).toEqual([]);
  });

  it('refuses missing cookie keys and key-encryption secret, saying what to set', () => {
    expect(problems({ NODE_ENV: 'production', ISSUER: 'https://id.example.com' })).toEqual([
      'COOKIE_KEYS must be set in production (comma-separated secrets of at least 32 characters)',
      'KEY_ENCRYPTION_SECRET must be set in production (a secret of at least 32 characters)',
    ]);
  });

  it('refuses half-configured bootstrap pairs and a short bootstrap client secret', () => {
    expect(problems({ ...SAFE, BOOTSTRAP_ADMIN_CLIENT_ID: 'admin' })).toEqual([
      'set both BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET, or neither',
    ]);
    expect(
      problems({
        ...SAFE,
        BOOTSTRAP_ADMIN_CLIENT_ID: 'admin',
        BOOTSTRAP_ADMIN_CLIENT_SECRET: 's'.repeat(20),
      }),
    ).toEqual(['BOOTSTRAP_ADMIN_CLIENT_SECRET must be at least 32 characters in production']);
    expect(problems({ ...SAFE, BOOTSTRAP_ADMIN_PASSWORD: 'p'.repeat(20) })).toEqual([
      'set both BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD, or neither',
    ]);
  });
});
