/**
 * The cookie keys and the key-encryption secret. Production must configure both (see
 * production-safety.ts). Elsewhere, missing ones are generated once and kept in
 * DATA_DIR/development-secrets.json, so `npm start` works with no setup and survives restarts.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Config } from './load-config.js';

export interface Secrets {
  cookieKeys: string[];
  keyEncryptionSecret: string;
  /** Which secrets were generated for development rather than configured. */
  generated: string[];
}

export const DEVELOPMENT_SECRETS_FILE = 'development-secrets.json';

interface StoredSecrets {
  cookie_keys?: string[];
  key_encryption_secret?: string;
}

export function resolveSecrets(
  config: Pick<Config, 'cookieKeys' | 'keyEncryptionSecret' | 'dataDir' | 'nodeEnv'>,
): Secrets {
  if (config.cookieKeys.length > 0 && config.keyEncryptionSecret) {
    return { cookieKeys: config.cookieKeys, keyEncryptionSecret: config.keyEncryptionSecret, generated: [] };
  }
  if (config.nodeEnv === 'production') {
    throw new Error('COOKIE_KEYS and KEY_ENCRYPTION_SECRET must be set in production');
  }
  const file = join(config.dataDir, DEVELOPMENT_SECRETS_FILE);
  const stored: StoredSecrets = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  let changed = false;
  if (!stored.cookie_keys?.length) {
    stored.cookie_keys = [randomBytes(32).toString('base64url')];
    changed = true;
  }
  if (!stored.key_encryption_secret) {
    stored.key_encryption_secret = randomBytes(32).toString('base64url');
    changed = true;
  }
  if (changed) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
  }
  return {
    cookieKeys: config.cookieKeys.length > 0 ? config.cookieKeys : stored.cookie_keys,
    keyEncryptionSecret: config.keyEncryptionSecret ?? stored.key_encryption_secret,
    generated: [
      ...(config.cookieKeys.length > 0 ? [] : ['COOKIE_KEYS']),
      ...(config.keyEncryptionSecret ? [] : ['KEY_ENCRYPTION_SECRET']),
    ],
  };
}
