/**
 * Setting names people often guess wrong for the store URLs. When one of them is set while the
 * setting it stands for is not, the server still starts (on the embedded stores) but says so once,
 * naming the setting it reads, instead of leaving the value silently ignored.
 */
export const MISNAMED_SETTINGS: Readonly<Record<string, string>> = {
  MONGO_URL: 'MONGODB_URI',
  MONGODB_URL: 'MONGODB_URI',
  MONGO_URI: 'MONGODB_URI',
  REDIS_URI: 'REDIS_URL',
  REDIS_HOST: 'REDIS_URL',
};

export interface MisnamedSetting {
  /** The name found in the environment. */
  found: string;
  /** The setting the server reads. */
  expected: string;
}

function isSet(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '';
}

/** The misnamed settings present while the right one (or its _FILE variant) is empty. */
export function misnamedSettings(env: Record<string, string | undefined>): MisnamedSetting[] {
  return Object.entries(MISNAMED_SETTINGS)
    .filter(
      ([found, expected]) => isSet(env[found]) && !isSet(env[expected]) && !isSet(env[`${expected}_FILE`]),
    )
    .map(([found, expected]) => ({ found, expected }));
}

/** Logs one warning line per misnamed setting found (the value itself is never logged). */
export function warnMisnamedSettings(
  env: Record<string, string | undefined>,
  log: { warn(facts: object, message: string): void },
): void {
  for (const { found, expected } of misnamedSettings(env)) {
    log.warn(
      { setting: found, expected },
      `${found} is set but is not a Latchkey setting; did you mean ${expected}? (${expected} is empty, so it is not used)`,
    );
  }
}
