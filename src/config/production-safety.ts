/**
 * What production refuses to start with. Each problem names the setting to change and how; the
 * process prints them all and exits rather than run with a development default.
 */
import type { Config } from './load-config.js';

export function productionProblems(config: Config): string[] {
  if (config.nodeEnv !== 'production') return [];
  const problems: string[] = [];
  const issuer = new URL(config.issuer);
  if (issuer.protocol !== 'https:') {
    if (!config.allowHttpIssuer) {
      problems.push(
        `ISSUER must be an https:// URL in production (got ${config.issuer}); behind a TLS-terminating proxy set ALLOW_HTTP_ISSUER=true and TRUST_PROXY=true`,
      );
    } else if (!config.trustProxy) {
      problems.push(
        'ALLOW_HTTP_ISSUER=true needs TRUST_PROXY=true, so the proxy-reported https scheme is used',
      );
    }
  }
  if (config.cookieKeys.length === 0) {
    problems.push(
      'COOKIE_KEYS must be set in production (comma-separated secrets of at least 32 characters)',
    );
  }
  if (!config.keyEncryptionSecret) {
    problems.push('KEY_ENCRYPTION_SECRET must be set in production (a secret of at least 32 characters)');
  }
  if (config.bootstrapAdminClientSecret && config.bootstrapAdminClientSecret.length < 32) {
    problems.push('BOOTSTRAP_ADMIN_CLIENT_SECRET must be at least 32 characters in production');
  }
  if (Boolean(config.bootstrapAdminClientId) !== Boolean(config.bootstrapAdminClientSecret)) {
    problems.push('set both BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET, or neither');
  }
  if (Boolean(config.bootstrapAdminEmail) !== Boolean(config.bootstrapAdminPassword)) {
    problems.push('set both BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD, or neither');
  }
  return problems;
}
