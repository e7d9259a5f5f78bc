/** Field rules shared by both durable adapters and by services. */
import type { Scalar } from './query.js';
import type { User } from './ports.js';

/** Emails are unique and looked up case-insensitively, after trimming and Unicode normalization. */
export function normalizeEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase();
}

/** The value a user has for a sort key, as the backends compare it (emails normalized). */
export function userSortValue(user: User, field: string): Scalar {
  if (field === 'email') return normalizeEmail(user.email);
  const value = (user as unknown as Record<string, unknown>)[field];
  return value === undefined ? null : (value as Scalar);
}
