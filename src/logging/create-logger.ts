/**
 * The pino logger: JSON lines, with every field that can carry a credential redacted wherever it
 * appears (up to three levels deep), request objects reduced to a whitelist of fields and errors to
 * plain facts with their chain of causes.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

import { serializeError } from './serialize-error.js';

/** Keys whose values are credentials or personal secrets, in any casing people use. */
export const SENSITIVE_KEYS = [
  'password',
  'new_password',
  'current_password',
  'password_hash',
  'passwordHash',
  'token',
  'access_token',
  'accessToken',
  'refresh_token',
  'refreshToken',
  'id_token',
  'idToken',
  'api_key',
  'apiKey',
  'client_secret',
  'clientSecret',
  'secret',
  'code_verifier',
  'authorization',
  'Authorization',
  'cookie',
  'Cookie',
  'set-cookie',
  'x-api-key',
  'private_jwk',
  'private_jwk_encrypted',
];

function redactPaths(): string[] {
  const paths: string[] = [];
  for (const key of SENSITIVE_KEYS) {
    const seg = /^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`;
    const join = (prefix: string) => (seg.startsWith('[') ? `${prefix}${seg}` : `${prefix}.${seg}`);
    paths.push(seg, join('*'), join('*.*'), join('*.*.*'));
  }
  return paths;
}

const SENSITIVE_QUERY =
  /^(code|code_verifier|access_token|refresh_token|id_token|token|client_secret|api_key|password|state|id_token_hint|login_hint)$/i;

/** Replaces the values of credential-bearing query parameters so URLs can be logged. */
export function scrubUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const key of [...params.keys()]) {
    if (SENSITIVE_QUERY.test(key)) params.set(key, '[REDACTED]');
  }
  return `${url.slice(0, q)}?${params.toString()}`;
}

export interface LoggerOptions {
  level: string;
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: options.base ?? { service: 'latchkey' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: redactPaths(), censor: '[REDACTED]' },
      // Never fails and never loses the cause (see serialize-error.ts).
      serializers: { err: serializeError },
    },
    options.destination,
  );
}
