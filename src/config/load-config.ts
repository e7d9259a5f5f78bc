/**
 * Loads the one configuration object: defaults from config/defaults.env, then the environment,
 * then NAME_FILE secrets. The result is validated, typed and frozen; nothing else reads process.env.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { camelCase, SETTINGS, type CamelCase, type SettingName, type SettingValues } from './settings.js';

type SettingProperties = { readonly [K in SettingName as CamelCase<K>]: SettingValues[K] };

/** Every setting under its camelCase name; `issuer` is always set (derived from PORT when empty). */
export interface Config extends Omit<SettingProperties, 'issuer'> {
  readonly issuer: string;
}

/** A setting that is missing or malformed; `message` is one line naming it and saying what is expected. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const DEFAULTS_FILE = fileURLToPath(new URL('../../config/defaults.env', import.meta.url));

/** Parses KEY=value lines; `#` starts a comment line; values may be wrapped in single or double quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) {
      value = value.slice(1, -1);
    }
    out[key] = value;
  }
  return out;
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
  defaultsFile?: string;
}

function describe(raw: string, secret: boolean | undefined): string {
  if (secret) return '(value hidden)';
  return `(got ${JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}…` : raw)})`;
}

/** Reads the raw text of every known setting, honouring NAME_FILE. */
function collectRaw(env: LoadConfigOptions['env'] & object, defaults: Record<string, string>) {
  const raw = {} as Record<SettingName, string>;
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const fileVar = env[`${name}_FILE`];
    const direct = env[name];
    if (fileVar !== undefined && fileVar !== '') {
      if (direct !== undefined && direct !== '') {
        throw new ConfigError(name, `Invalid setting ${name}: set either ${name} or ${name}_FILE, not both.`);
      }
      try {
        raw[name] = readFileSync(fileVar, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        const reason = (err as NodeJS.ErrnoException).code ?? 'unreadable';
        throw new ConfigError(name, `Invalid setting ${name}_FILE: cannot read ${fileVar} (${reason}).`);
      }
    } else if (direct !== undefined) {
      raw[name] = direct;
    } else {
      raw[name] = defaults[name] ?? '';
    }
  }
  return raw;
}

/** Settings that must be longer than others, so one deadline always ends before the next. */
const ORDERINGS = (v: SettingValues): [SettingName, number, number, string][] => [
  [
    'REQUEST_TIMEOUT_MS',
    v.REQUEST_TIMEOUT_MS,
    v.REDIS_TIMEOUT_MS,
    `REDIS_TIMEOUT_MS (${v.REDIS_TIMEOUT_MS})`,
  ],
  [
    'REQUEST_TIMEOUT_MS',
    v.REQUEST_TIMEOUT_MS,
    v.MONGODB_TIMEOUT_MS,
    `MONGODB_TIMEOUT_MS (${v.MONGODB_TIMEOUT_MS})`,
  ],
  [
    'SHUTDOWN_TIMEOUT_MS',
    v.SHUTDOWN_TIMEOUT_MS,
    v.REQUEST_TIMEOUT_MS,
    `REQUEST_TIMEOUT_MS (${v.REQUEST_TIMEOUT_MS}), so in-flight requests end on their own deadline`,
  ],
];

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const defaults = parseEnvFile(readFileSync(options.defaultsFile ?? DEFAULTS_FILE, 'utf8'));
  const raw = collectRaw(env, defaults);

  const values = {} as Record<SettingName, unknown>;
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const spec = SETTINGS[name];
    const parsed = spec.schema.safeParse(raw[name]);
    if (!parsed.success) {
      throw new ConfigError(
        name,
        `Invalid setting ${name} ${describe(raw[name], spec.secret)}: expected ${spec.expected}.`,
      );
    }
    values[name] = parsed.data;
  }
  const v = values as SettingValues;

  for (const [name, longer, than, why] of ORDERINGS(v)) {
    if (!(longer > than)) {
      throw new ConfigError(name, `Invalid setting ${name} (got ${longer}): expected more than ${why}.`);
    }
  }

  if (v.REDIS_CLUSTER_NODES && v.REDIS_URL) {
    throw new ConfigError(
      'REDIS_CLUSTER_NODES',
      'Invalid setting REDIS_CLUSTER_NODES: set either REDIS_URL (one server) or REDIS_CLUSTER_NODES (a cluster), not both.',
    );
  }
  if (v.REDIS_CLUSTER_NODES && /[{}]/.test(v.REDIS_KEY_PREFIX)) {
    throw new ConfigError(
      'REDIS_KEY_PREFIX',
      `Invalid setting REDIS_KEY_PREFIX (got ${JSON.stringify(v.REDIS_KEY_PREFIX)}): expected no "{" or "}" with REDIS_CLUSTER_NODES (the key layout adds hash tags).`,
    );
  }

  const properties: Record<string, unknown> = {};
  for (const name of Object.keys(values) as SettingName[]) properties[camelCase(name)] = values[name];
  properties.issuer = (v.ISSUER ?? `http://localhost:${v.PORT}`).replace(/\/+$/, '');
  return Object.freeze(properties) as unknown as Config;
}
