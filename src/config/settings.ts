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

const optionalUrl = (protocols: RegExp) =>
  z
    .string()
    .transform((s) => s.trim())
    .refine((s) => s === '' || (URL.canParse(s) && protocols.test(new URL(s).protocol)))
    .transform((s) => (s === '' ? undefined : s));

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
  DATA_DIR: spec(z.string().trim().min(1), 'a folder path'),
  MONGODB_URI: spec(optionalUrl(/^mongodb(\+srv)?:$/), 'a mongodb:// or mongodb+srv:// URI, or empty', true),
  REDIS_URL: spec(optionalUrl(/^rediss?:$/), 'a redis:// or rediss:// URL, or empty', true),
  REDIS_KEY_PREFIX: spec(z.string().max(64), 'a string of at most 64 characters'),
  EMBEDDED_SWEEP_INTERVAL_S: spec(int(1, 86_400), 'seconds from 1 to 86400'),
  NODE_ENV: spec(z.enum(['development', 'production', 'test']), 'development, production or test'),
  LOG_LEVEL: spec(
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    'one of fatal, error, warn, info, debug, trace, silent',
  ),
} as const;

export type SettingName = keyof typeof SETTINGS;
export type SettingValues = { [K in SettingName]: z.output<(typeof SETTINGS)[K]['schema']> };
