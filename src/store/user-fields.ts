/** Field rules shared by both durable adapters and by services. */
import type { Scalar } from './query.js';
import type { User } from './ports.js';

/** Emails are unique and looked up case-insensitively, after trimming and Unicode normalization. */
export function normalizeEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase();
}

/** A cached user record no caller can alter for the next one (its JSON fields included). */
export function freezeUser(user: User): User {
  Object.freeze(user.metadata);
  Object.freeze(user.preferences);
  return Object.freeze(user);
}

/** The value a user has for a sort key, as the backends compare it (emails normalized). */
export function userSortValue(user: User, field: string): Scalar {
  if (field === 'email') return normalizeEmail(user.email);
  const value = (user as unknown as Record<string, unknown>)[field];
  return value === undefined ? null : (value as Scalar);
}
