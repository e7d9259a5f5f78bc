/**
 * The catalog of settings: each environment name, how its text is checked, and what a valid value
 * looks like (quoted in the start-up error when the value is wrong). Defaults live in config/defaults.env.
 */
import { z } from 'zod';

export interface SettingSpec<T> {
  schema: z.ZodType<T>;
  expected: string;
  secret?: boolean;
}

const bool = z
  .string()
  .transform((s) => s.trim().toLowerCase())
  .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no']))
  .transform((s) => s === 'true' || s === '1' || s === 'yes');

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*-?\d+\s*$/)
    .transform((s) => Number.parseInt(s, 10))
    .pipe(z.number().int().min(min).max(max));

/** A fraction from 0 to 1 (`0.05`, `1`). */
const fraction = z
  .string()
  .regex(/^\s*(0(\.\d+)?|1(\.0+)?|\.\d+)\s*$/)
  .transform((s) => Number.parseFloat(s))
  .pipe(z.number().min(0).max(1));

const optionalUrl = (protocols: RegExp) =>
  z
    .string()
    .transform((s) => s.trim())
    .refine((s) => s === '' || (URL.canParse(s) && protocols.test(new URL(s).protocol)))
    .transform((s) => (s === '' ? undefined : s));

/**
 * Seed nodes of a Redis Cluster: comma-separated `host:port` or redis:// / rediss:// URLs, one scheme
 * for all, database 0 only (a cluster has no other), credentials on the first node or the same on
 * every one. Becomes the list of URLs (`redis://` added to bare `host:port`); empty means none.
 */
const redisClusterNodes = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)
      .map((x) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(x) ? x : `redis://${x}`)),
  )
  .refine((nodes) => {
    if (nodes.length === 0) return true;
    if (!nodes.every((n) => URL.canParse(n))) return false;
    const urls = nodes.map((n) => new URL(n));
    const first = urls[0]!;
    return urls.every(
      (u) =>
        /^rediss?:$/.test(u.protocol) &&
        u.protocol === first.protocol &&
        u.hostname !== '' &&
        /^\/?0?$/.test(u.pathname) &&
        !u.search &&
        !u.hash &&
        (u === first ||
          ((!u.username || u.username === first.username) && (!u.password || u.password === first.password))),
    );
  })
  .transform((nodes) => (nodes.length === 0 ? undefined : nodes));

/** Comma-separated secrets, each at least 32 characters; empty means none. */
const secretList = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .refine((list) => list.every((x) => x.length >= 32));

const optionalSecret = (min: number) =>
  z
    .string()
    .refine((s) => s === '' || s.length >= min)
    .transform((s) => (s === '' ? undefined : s));

const optionalText = z
  .string()
  .trim()
  .transform((s) => (s === '' ? undefined : s));

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `5s,5m,30m,2h`: milliseconds, each from 100 ms to 7 days. */
const durationList = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()))
  .refine((list) => list.length >= 1 && list.length <= 20 && list.every((x) => /^\d+(ms|s|m|h|d)$/.test(x)))
  .transform((list) =>
    list.map((x) => {
      const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(x)!;
      return Number(n) * DURATION_UNITS[unit!]!;
    }),
  )
  .refine((list) => list.every((ms) => ms >= 100 && ms <= 7 * 86_400_000));

function spec<T>(schema: z.ZodType<T>, expected: string, secret = false): SettingSpec<T> {
  return { schema, expected, secret };
}

export const SETTINGS = {
  PORT: spec(int(1, 65535), 'an integer from 1 to 65535'),
  HOST: spec(z.string().trim().min(1), 'a host name or IP address to bind, such as 127.0.0.1 or 0.0.0.0'),
  ISSUER: spec(
    optionalUrl(/^https?:$/).refine((s) => s === undefined || (!new URL(s).search && !new URL(s).hash)),
    'an absolute http(s) URL without query or fragment, such as https://id.example.com, or empty',
  ),
  TRUST_PROXY: spec(bool, 'true or false'),
  PROXY_HOPS: spec(int(1, 10), 'an integer from 1 to 10'),
  SHUTDOWN_TIMEOUT_MS: spec(int(0, 600_000), 'milliseconds from 0 to 600000'),
  SHUTDOWN_DRAIN_MS: spec(int(0, 600_000), 'milliseconds from 0 to 600000'),
  REQUEST_TIMEOUT_MS: spec(int(100, 600_000), 'milliseconds from 100 to 600000'),
  MAX_IN_FLIGHT_REQUESTS: spec(int(1, 1_000_000), 'an integer from 1 to 1000000'),
  REDIS_TIMEOUT_MS: spec(int(10, 60_000), 'milliseconds from 10 to 60000'),
  MONGODB_TIMEOUT_MS: spec(int(10, 60_000), 'milliseconds from 10 to 60000'),
  STORE_BREAKER_FAILURES: spec(int(1, 10_000), 'an integer from 1 to 10000'),
  STORE_BREAKER_PROBE_MS: spec(int(10, 60_000), 'milliseconds from 10 to 60000'),
  DATA_DIR: spec(z.string().trim().min(1), 'a folder path'),
  MONGODB_URI: spec(optionalUrl(/^mongodb(\+srv)?:$/), 'a mongodb:// or mongodb+srv:// URI, or empty', true),
  REDIS_URL: spec(optionalUrl(/^rediss?:$/), 'a redis:// or rediss:// URL, or empty', true),
  REDIS_CLUSTER_NODES: spec(
    redisClusterNodes,
    'comma-separated seed nodes of a Redis Cluster (host:port, or redis:// or rediss:// URLs with one scheme), or empty',
    true,
  ),
  REDIS_KEY_PREFIX: spec(z.string().max(64), 'a string of at most 64 characters'),
  EMBEDDED_SWEEP_INTERVAL_S: spec(int(1, 86_400), 'seconds from 1 to 86400'),
  IDLE_MEMORY_RELEASE_MS: spec(int(0, 86_400_000), 'milliseconds from 0 (never) to 86400000'),
  NODE_ENV: spec(z.enum(['development', 'production', 'test']), 'development, production or test'),
  LOG_LEVEL: spec(
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    'one of fatal, error, warn, info, debug, trace, silent',
  ),
  METRICS_ENABLED: spec(bool, 'true or false'),
  METRICS_TOKEN: spec(optionalSecret(16), 'a token of at least 16 characters, or empty', true),
  OTEL_EXPORTER_OTLP_ENDPOINT: spec(
    optionalUrl(/^https?:$/),
    'an http(s) URL of an OTLP/HTTP collector, such as http://otel-collector:4318, or empty',
  ),
  OTEL_SERVICE_NAME: spec(z.string().trim().min(1).max(128), 'a service name of 1 to 128 characters'),
  ALLOW_HTTP_ISSUER: spec(bool, 'true or false'),

  COOKIE_KEYS: spec(secretList, 'a comma-separated list of secrets of at least 32 characters each', true),
  KEY_ENCRYPTION_SECRET: spec(optionalSecret(32), 'a secret of at least 32 characters', true),
  SIGNING_KEY_ACTIVATION_DELAY_S: spec(int(0, 30 * 86_400), 'seconds from 0 to 2592000'),
  SIGNING_KEY_REFRESH_INTERVAL_S: spec(int(1, 3600), 'seconds from 1 to 3600'),

  ACCESS_TOKEN_TTL_S: spec(int(60, 86_400), 'seconds from 60 to 86400'),
  CLIENT_CREDENTIALS_TTL_S: spec(int(60, 86_400), 'seconds from 60 to 86400'),
  ID_TOKEN_TTL_S: spec(int(60, 86_400), 'seconds from 60 to 86400'),
  AUTHORIZATION_CODE_TTL_S: spec(int(10, 600), 'seconds from 10 to 600'),
  REFRESH_TOKEN_TTL_S: spec(int(300, 365 * 86_400), 'seconds from 300 to 31536000'),
  SESSION_TTL_S: spec(int(300, 365 * 86_400), 'seconds from 300 to 31536000'),
  INTERACTION_TTL_S: spec(int(60, 86_400), 'seconds from 60 to 86400'),
  GRANT_TTL_S: spec(int(300, 365 * 86_400), 'seconds from 300 to 31536000'),
  CLIENT_CACHE_TTL_S: spec(int(0, 3600), 'seconds from 0 to 3600'),
  USER_CACHE_TTL_S: spec(int(0, 3600), 'seconds from 0 to 3600'),
  API_KEY_CACHE_TTL_S: spec(int(0, 3600), 'seconds from 0 to 3600'),
  API_KEY_TOKEN_TTL_S: spec(int(60, 30 * 86_400), 'seconds from 60 to 2592000'),
  USAGE_STORE_MESSAGES: spec(bool, 'true or false'),

  WEBHOOK_TIMEOUT_MS: spec(int(100, 60_000), 'milliseconds from 100 to 60000'),
  WEBHOOK_RETRY_SCHEDULE: spec(
    durationList,
    'comma-separated durations such as 5s,5m,30m,2h (1 to 20 of them)',
  ),
  WEBHOOK_ALLOW_HTTP: spec(
    z.enum(['auto', 'true', 'false']),
    'auto (http allowed unless NODE_ENV=production), true or false',
  ),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: spec(bool, 'true or false'),
  SSO_ALLOW_HTTP: spec(
    z.enum(['auto', 'true', 'false']),
    'auto (http allowed unless NODE_ENV=production), true or false',
  ),
  SSO_ALLOW_PRIVATE_NETWORKS: spec(bool, 'true or false'),
  SSO_TIMEOUT_MS: spec(int(100, 60_000), 'milliseconds from 100 to 60000'),
  SSO_SAML_METADATA_REFRESH_S: spec(int(60, 7 * 86_400), 'seconds from 60 to 604800'),
  SSO_SAML_CLOCK_SKEW_S: spec(int(0, 600), 'seconds from 0 to 600'),
  WEBHOOK_CONCURRENCY: spec(int(1, 1000), 'an integer from 1 to 1000'),
  WEBHOOK_ENDPOINT_CONCURRENCY: spec(int(1, 100), 'an integer from 1 to 100'),
  WEBHOOK_DISABLE_AFTER_FAILING_S: spec(int(60, 90 * 86_400), 'seconds from 60 to 7776000'),
  WEBHOOK_POLL_MS: spec(int(50, 60_000), 'milliseconds from 50 to 60000'),
  WEBHOOK_DELIVERY: spec(bool, 'true or false'),
  WEBHOOK_DELIVERY_THREAD: spec(bool, 'true or false'),
  EVENT_RETENTION_DAYS: spec(int(1, 3650), 'days from 1 to 3650'),
  POLICY_CACHE_TTL_MS: spec(int(100, 60_000), 'milliseconds from 100 to 60000'),
  POLICY_DECISION_LOG_SAMPLE_RATE: spec(fraction, 'a fraction from 0 to 1, such as 0.01'),
  POLICY_DECISION_CACHE_TTL_S: spec(int(0, 60), 'seconds from 0 to 60'),
  SMTP_URL: spec(optionalUrl(/^smtps?:$/), 'empty, or smtp://user:pass@host:port or smtps://…', true),
  MAIL_FROM: spec(z.string().trim().min(3).max(320), 'a sender such as "Latchkey <no-reply@example.com>"'),
  SMTP_REQUIRE_TLS: spec(bool, 'true or false'),
  SMTP_TIMEOUT_MS: spec(int(100, 120_000), 'milliseconds from 100 to 120000'),
  MAIL_RETRY_SCHEDULE: spec(durationList, 'comma-separated durations such as 30s,2m,10m (1 to 20 of them)'),
  MAIL_CONCURRENCY: spec(int(1, 100), 'an integer from 1 to 100'),
  MAIL_DELIVERY: spec(bool, 'true or false'),
  BACKCHANNEL_LOGOUT_TIMEOUT_MS: spec(int(100, 60_000), 'milliseconds from 100 to 60000'),
  BACKCHANNEL_LOGOUT_RETRY_SCHEDULE: spec(
    durationList,
    'comma-separated durations such as 5s,30s,2m,10m (1 to 20 of them)',
  ),
  BACKCHANNEL_LOGOUT_DELIVERY: spec(bool, 'true or false'),
  GATEWAY_AUTH_CACHE_TTL_S: spec(int(0, 60), 'seconds from 0 to 60'),
  GATEWAY_RESOURCE_PATTERN: spec(
    z.string().transform((s, issue) => {
      if (s.trim() === '') return undefined;
      try {
        const pattern = new RegExp(s);
        if (new RegExp(`${pattern.source}|`).exec('')!.length < 2) throw new Error('no group');
        return pattern;
      } catch {
        issue.addIssue({ code: 'custom', message: 'not a regular expression with a capture group' });
        return z.NEVER;
      }
    }),
    'empty, or a regular expression whose first capture group is the resource id, such as ^/documents/([^/]+)',
  ),

  PASSWORD_HASH_MEMORY_KIB: spec(
    int(19_456, 4_194_304),
    'KiB from 19456 (19 MiB, the OWASP minimum) to 4194304',
  ),
  PASSWORD_HASH_TIME_COST: spec(int(2, 100), 'an integer from 2 to 100'),
  PASSWORD_HASH_PARALLELISM: spec(int(1, 16), 'an integer from 1 to 16'),

  PROTECTED_METADATA_KEYS: spec(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      )
      .refine((keys) => keys.every((k) => /^[A-Za-z0-9_-]{1,64}$/.test(k))),
    'a comma-separated list of metadata keys (letters, digits, "-" or "_"), or empty',
  ),
  CONFUSABLE_EMAILS: spec(z.enum(['warn', 'refuse']), 'warn or refuse'),

  PASSWORD_MIN_LENGTH: spec(int(8, 256), 'an integer from 8 to 256'),
  REGISTRATION: spec(
    z.enum(['', 'open', 'invite', 'closed']),
    'open, invite, closed, or empty (closed when NODE_ENV=production, open otherwise)',
  ),
  REGISTRATION_DOMAINS: spec(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((x) => x.trim().toLowerCase())
          .filter(Boolean),
      )
      .refine((domains) => domains.every((d) => /^[a-z0-9.-]{1,253}$/.test(d))),
    'a comma-separated list of e-mail domains (example.com), or empty for any',
  ),
  REQUIRE_VERIFIED_EMAIL: spec(bool, 'true or false'),
  EMAIL_VERIFICATION_TTL_S: spec(int(600, 30 * 86_400), 'seconds from 600 to 2592000'),
  INVITATION_TTL_S: spec(int(3600, 30 * 86_400), 'seconds from 3600 to 2592000'),
  PASSWORD_RESET_TTL_S: spec(int(300, 86_400), 'seconds from 300 to 86400'),
  PASSWORD_RESET_PER_ADDRESS_PER_HOUR: spec(int(1, 1000), 'an integer from 1 to 1000'),
  PASSWORD_RESET_PER_IP_PER_HOUR: spec(int(1, 100_000), 'an integer from 1 to 100000'),
  PASSWORD_MIN_SCORE: spec(int(0, 4), 'a zxcvbn score from 0 (anything) to 4 (very strong)'),

  RATE_LIMIT_ENTERPRISE_PER_HOUR: spec(int(1, 1_000_000_000), 'requests per hour from 1 to 1000000000'),
  RATE_LIMIT_ENTERPRISE_BURST: spec(int(1, 10_000_000), 'requests per second from 1 to 10000000'),
  RATE_LIMIT_ANONYMOUS_PER_HOUR: spec(int(1, 1_000_000_000), 'requests per hour from 1 to 1000000000'),
  RATE_LIMIT_ANONYMOUS_BURST: spec(int(1, 10_000_000), 'requests per second from 1 to 10000000'),

  LOGIN_MAX_FAILURES: spec(int(1, 1000), 'an integer from 1 to 1000'),
  LOGIN_IP_MAX_FAILURES: spec(int(1, 100_000), 'an integer from 1 to 100000'),
  LOGIN_FAILURE_WINDOW_S: spec(int(10, 86_400), 'seconds from 10 to 86400'),
  LOGIN_LOCKOUT_BASE_S: spec(int(1, 86_400), 'seconds from 1 to 86400'),
  LOGIN_LOCKOUT_MAX_S: spec(int(1, 7 * 86_400), 'seconds from 1 to 604800'),

  DPOP_REQUIRE_NONCE: spec(bool, 'true or false'),
  DYNAMIC_REGISTRATION: spec(
    z.enum(['off', 'initial_access_token', 'open']),
    'off, initial_access_token (POST /oauth/register needs a token from /v2/clients/registration-tokens) or open',
  ),
  MFA: spec(z.enum(['off', 'optional', 'required']), 'off, optional or required'),
  MFA_REQUIRED_ROLES: spec(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      )
      .refine((roles) => roles.every((r) => /^[A-Za-z0-9_.:-]{1,64}$/.test(r))),
    'a comma-separated list of role names, or empty',
  ),
  WEBAUTHN_RP_ID: spec(
    optionalText.refine((s) => s === undefined || /^[a-z0-9.-]{1,253}$/i.test(s)),
    'a host name (example.com), or empty for the host of ISSUER',
  ),
  WEBAUTHN_ORIGINS: spec(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      )
      .refine((origins) =>
        origins.every(
          (o) => URL.canParse(o) && new URL(o).origin === o && /^https?:$/.test(new URL(o).protocol),
        ),
      ),
    'a comma-separated list of origins (https://login.example.com), or empty for the origin of ISSUER',
  ),

  BOOTSTRAP_ADMIN_CLIENT_ID: spec(
    optionalText.refine((s) => s === undefined || /^[A-Za-z0-9_-]{3,64}$/.test(s)),
    '3 to 64 letters, digits, "-" or "_", or empty',
  ),
  BOOTSTRAP_ADMIN_CLIENT_SECRET: spec(
    optionalSecret(16),
    'a secret of at least 16 characters (32 or more recommended)',
    true,
  ),
  BOOTSTRAP_ADMIN_EMAIL: spec(
    optionalText.refine((s) => s === undefined || /^[^\s@]+@[^\s@]+$/.test(s)),
    'an email address, or empty',
  ),
  BOOTSTRAP_ADMIN_PASSWORD: spec(optionalSecret(12), 'a password of at least 12 characters', true),
} as const;

export type SettingName = keyof typeof SETTINGS;
export type SettingValues = { [K in SettingName]: z.output<(typeof SETTINGS)[K]['schema']> };

/** `REDIS_KEY_PREFIX` → `redisKeyPrefix`: the Config property a setting becomes. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Lowercase<Head>}${Capitalize<CamelCase<Tail>>}`
  : Lowercase<S>;

export function camelCase<S extends string>(name: S): CamelCase<S> {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()) as CamelCase<S>;
}
