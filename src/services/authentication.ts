/**
 * Sign-in with email and password: throttled (login-throttle.ts), the same answer and about the same
 * time for an unknown email as for a wrong password, only active users admitted, hashes upgraded to
 * the current parameters, and the login recorded.
 */
import type { Logger } from 'pino';

import type { DurableStore, User } from '../store/ports.js';
import { normalizeEmail } from '../store/user-fields.js';
import type { LoginThrottle } from './login-throttle.js';
import { MAX_PASSWORD_LENGTH, type PasswordHasher } from './passwords.js';

export type AuthenticationResult =
  | { kind: 'ok'; user: User }
  | { kind: 'invalid' }
  | { kind: 'locked'; retryAfterS: number }
  | { kind: 'inactive' };

export class AuthenticationService {
  constructor(
    private readonly store: DurableStore,
    private readonly passwords: PasswordHasher,
    private readonly throttle: LoginThrottle,
    private readonly log: Logger,
  ) {}

  /** The email shown on the consent page for the signed-in account. */
  async describeAccount(userId: string): Promise<string> {
    return (await this.store.users.findById(userId))?.email ?? '';
  }

  async authenticate(input: { email: string; password: string; ip: string }): Promise<AuthenticationResult> {
    const email = normalizeEmail(input.email).slice(0, 320);
    const decision = await this.throttle.begin(email, input.ip);
    if (!decision.allowed) return { kind: 'locked', retryAfterS: decision.retryAfterS };

    const user =
      email && input.password.length <= MAX_PASSWORD_LENGTH
        ? await this.store.users.findByEmail(email)
        : null;
    const ok = user?.password_hash
      ? await this.passwords.verify(user.password_hash, input.password)
      : await this.passwords.burn(input.password);
    if (!ok || !user) return { kind: 'invalid' };
    // The password was right, so saying why sign-in is refused reveals nothing to a guesser.
    if (user.status !== 'active') return { kind: 'inactive' };

    await this.throttle.succeeded(email, input.ip);
    if (this.passwords.needsRehash(user.password_hash!)) {
      await this.store.users.update(user.id, { password_hash: await this.passwords.hash(input.password) });
      this.log.info({ user_id: user.id }, 'password rehashed with current parameters');
    }
    return { kind: 'ok', user: (await this.store.users.recordLogin(user.id, new Date())) ?? user };
  }
}
