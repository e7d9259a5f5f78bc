/**
 * Password hashing with argon2id at configured cost (at least the OWASP minimum: 19 MiB, t=2, p=1).
 * Hashes made with other parameters still verify and are reported for rehashing, so raising the
 * cost upgrades users as they sign in.
 */
import argon2 from 'argon2';

export interface PasswordParams {
  memoryKib: number;
  timeCost: number;
  parallelism: number;
}

export interface PasswordHasher {
  readonly params: PasswordParams;
  hash(password: string): Promise<string>;
  /** False for a wrong password and for a hash that is malformed. */
  verify(hash: string, password: string): Promise<boolean>;
  /** Whether the hash was made with other parameters than the current ones. */
  needsRehash(hash: string): boolean;
  /**
   * Spends the time of one verification and fails: used when no user matched, so a response's
   * timing does not tell whether an account exists.
   */
  burn(password: string): Promise<false>;
}

/** Passwords are capped so a huge input cannot be used to waste hashing time. */
export const MAX_PASSWORD_LENGTH = 1024;

export function createPasswordHasher(params: PasswordParams): PasswordHasher {
  const options = {
    type: argon2.argon2id,
    memoryCost: params.memoryKib,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
  } as const;
  let dummy: Promise<string> | undefined;

  const verify = async (hash: string, password: string): Promise<boolean> => {
    if (password.length > MAX_PASSWORD_LENGTH) return false;
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    }
  };

  return {
    params,
    hash: (password) => argon2.hash(password, options),
    verify,
    needsRehash: (hash) => {
      try {
        return argon2.needsRehash(hash, options);
      } catch {
        return true;
      }
    },
    burn: async (password) => {
      dummy ??= argon2.hash('not a real password, only spends time', options);
      await verify(await dummy, password.slice(0, MAX_PASSWORD_LENGTH));
      return false;
    },
  };
}
