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

/** Settings that stand in for another: with a cluster configured, REDIS_URL is rightly empty. */
const ALTERNATIVES: Readonly<Record<string, readonly string[]>> = { REDIS_URL: ['REDIS_CLUSTER_NODES'] };

/** The misnamed settings present while the right one (or its _FILE variant, or an alternative) is empty. */
export function misnamedSettings(env: Record<string, string | undefined>): MisnamedSetting[] {
  const configured = (name: string) => isSet(env[name]) || isSet(env[`${name}_FILE`]);
  return Object.entries(MISNAMED_SETTINGS)
    .filter(
      ([found, expected]) =>
        isSet(env[found]) && !configured(expected) && !(ALTERNATIVES[expected] ?? []).some(configured),
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
