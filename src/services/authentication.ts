/**
 * Sign-in with email and password: throttled (login-throttle.ts), the same answer and about the same
 * time for an unknown email as for a wrong password, only active users admitted, hashes upgraded to
 * the current parameters, and the login recorded.
 */
import type { Logger } from 'pino';

import { eventUser, newEvent } from '../events/catalog.js';
import type { EventRecorder } from '../events/recorder.js';
import type { SignOut } from '../oidc/provider.js';
import type { DurableStore, User } from '../store/ports.js';
import type { AuditService, RequestFacts } from './audit.js';
import { normalizeEmail } from '../store/user-fields.js';
import type { LoginThrottle } from './login-throttle.js';
import { MAX_PASSWORD_LENGTH, type PasswordHasher } from './passwords.js';

export interface SignInInput {
  email: string;
  password: string;
  ip: string;
  userAgent?: string;
  requestId?: string;
  clientId?: string;
  /**
   * Whether the user must show a second factor before the sign-in completes. When it says so, the
   * sign-in is not recorded yet and the attempt counters are not reset: the second factor's
   * attempts count toward the same lockout (see secondFactor).
   */
  needsSecondFactor?: (user: User) => Promise<boolean>;
}

export type AuthenticationResult =
  /**
   * `mustChangePassword`: an administrator asked for a new password before the sign-in completes.
   * `secondFactor`: the password was right and a second factor is due (nothing recorded yet).
   */
  | { kind: 'ok'; user: User; mustChangePassword: boolean; secondFactor?: boolean }
  | { kind: 'invalid' }
  | { kind: 'locked'; retryAfterS: number }
  | { kind: 'inactive' };

/** Told the kind of every sign-in attempt's result (metrics); must not throw. */
export type AuthenticationObserver = (kind: AuthenticationResult['kind']) => void;

export class AuthenticationService {
  constructor(
    private readonly store: DurableStore,
    private readonly passwords: PasswordHasher,
    private readonly throttle: LoginThrottle,
    private readonly log: Logger,
    private readonly audit?: AuditService,
    private readonly observe?: AuthenticationObserver,
    private readonly events?: EventRecorder,
  ) {}

  /** user.login_failed for a known user; the sign-in answers the same whether this works or not. */
  private async failed(user: User, reason: string, request: RequestFacts): Promise<void> {
    await this.events?.emit(
      newEvent(
        'user.login_failed',
        { type: 'user', id: user.id },
        {
          user: eventUser(user),
          reason,
          ip_address: request.ip_address,
          user_agent: request.user_agent,
        },
      ),
    );
  }

  private async record(action: string, user: User, request: RequestFacts, details?: Record<string, unknown>) {
    await this.audit?.record({
      actor_type: 'user',
      actor_id: user.id,
      actor_client_id: null,
      action,
      target_type: 'user',
      target_id: user.id,
      request,
      ...(details ? { details } : {}),
    });
  }

  /** The email shown on the consent page for the signed-in account. */
  async describeAccount(userId: string): Promise<string> {
    return (await this.store.users.findById(userId))?.email ?? '';
  }

  async authenticate(input: SignInInput): Promise<AuthenticationResult> {
    const result = await this.checkSignIn(input);
    this.observe?.(result.kind);
    return result;
  }

  private async checkSignIn(input: SignInInput): Promise<AuthenticationResult> {
    const request: RequestFacts = {
      request_id: input.requestId ?? null,
      ip_address: input.ip,
      user_agent: input.userAgent ?? null,
    };
    const email = normalizeEmail(input.email).slice(0, 320);
    const decision = await this.throttle.begin(email, input.ip);
    if (!decision.allowed) {
      // The attempt that locks an account (once per lock, on any instance) says so.
      if (decision.accountLockedNow) {
        const locked = await this.store.users.findByEmail(email);
        if (locked) {
          await this.events?.emit(
            newEvent(
              'user.locked',
              { type: 'system', id: 'login-throttle' },
              {
                user: eventUser(locked),
                locked_until: new Date(Date.now() + decision.retryAfterS * 1000).toISOString(),
              },
            ),
          );
        }
      }
      return { kind: 'locked', retryAfterS: decision.retryAfterS };
    }

    const user =
      email && input.password.length <= MAX_PASSWORD_LENGTH
        ? await this.store.users.findByEmail(email)
        : null;
    const ok = user?.password_hash
      ? await this.passwords.verify(user.password_hash, input.password)
      : await this.passwords.burn(input.password);
    if (!ok || !user) {
      if (user) {
        await this.record('user.login_failed', user, request, { client_id: input.clientId ?? null });
        await this.failed(user, 'invalid_credentials', request);
      }
      return { kind: 'invalid' };
    }
    // The password was right, so saying why sign-in is refused reveals nothing to a guesser.
    if (user.status !== 'active') {
      await this.record('user.login_refused', user, request, {
        reason: user.status,
        client_id: input.clientId ?? null,
      });
      await this.failed(user, `account_${user.status}`, request);
      return { kind: 'inactive' };
    }

    const second = !user.password_reset_required && (await input.needsSecondFactor?.(user)) === true;
    if (!second) await this.throttle.succeeded(email, input.ip);
    if (this.passwords.needsRehash(user.password_hash!)) {
      await this.store.users.update(user.id, { password_hash: await this.passwords.hash(input.password) });
      this.log.info({ user_id: user.id }, 'password rehashed with current parameters');
    }
    if (user.password_reset_required) return { kind: 'ok', user, mustChangePassword: true };
    if (second) return { kind: 'ok', user, mustChangePassword: false, secondFactor: true };
    return {
      kind: 'ok',
      user: await this.completeLogin(user, request, input.clientId),
      mustChangePassword: false,
    };
  }

  /**
   * One attempt at a second factor of `user`, counted like a password attempt (the same atomic
   * lockout of the account and the client address): `check` runs only while not locked. A wrong
   * answer is audited and recorded as user.login_failed; a right one resets the counters.
   */
  async secondFactor(
    user: User,
    request: RequestFacts & { ip_address: string },
    check: () => Promise<boolean>,
    clientId?: string,
  ): Promise<{ kind: 'ok' } | { kind: 'invalid' } | { kind: 'locked'; retryAfterS: number }> {
    const email = normalizeEmail(user.email).slice(0, 320);
    const decision = await this.throttle.begin(email, request.ip_address);
    if (!decision.allowed) {
      if (decision.accountLockedNow) {
        await this.events?.emit(
          newEvent(
            'user.locked',
            { type: 'system', id: 'login-throttle' },
            {
              user: eventUser(user),
              locked_until: new Date(Date.now() + decision.retryAfterS * 1000).toISOString(),
            },
          ),
        );
      }
      return { kind: 'locked', retryAfterS: decision.retryAfterS };
    }
    if (!(await check())) {
      await this.record('user.login_failed', user, request, {
        client_id: clientId ?? null,
        reason: 'invalid_second_factor',
      });
      await this.failed(user, 'invalid_second_factor', request);
      this.observe?.('invalid');
      return { kind: 'invalid' };
    }
    await this.throttle.succeeded(email, request.ip_address);
    return { kind: 'ok' };
  }

  /**
   * Whether `password` is the user's current one. A forced change (an administrator's reset, often
   * because the password may be known to someone else) must not keep it.
   */
  async isCurrentPassword(userId: string, password: string): Promise<boolean> {
    const user = await this.store.users.findById(userId);
    if (!user?.password_hash || password.length > MAX_PASSWORD_LENGTH) return false;
    return this.passwords.verify(user.password_hash, password);
  }

  /** Records the end of a browser session by sign-out (user.logout; rollups use its start). */
  async recordSignOut(signOut: SignOut): Promise<void> {
    const user = await this.store.users.findById(signOut.accountId);
    if (!user || !this.events) return;
    await this.events.emit(
      newEvent(
        'user.logout',
        { type: 'user', id: user.id },
        {
          user: eventUser(user),
          session_id: signOut.sessionId,
          signed_in_at: signOut.signedInAt ? signOut.signedInAt.toISOString() : null,
          ip_address: signOut.ipAddress,
          user_agent: signOut.userAgent,
        },
      ),
    );
  }

  /** Records a finished sign-in (after a forced password change, too). */
  async completeLogin(
    user: User,
    request: RequestFacts,
    clientId?: string,
    method = 'password',
  ): Promise<User> {
    const at = new Date();
    const change = async () => (await this.store.users.recordLogin(user.id, at)) ?? user;
    const recorded = this.events
      ? await this.events.record(change, (signedIn) => [
          newEvent(
            'user.login',
            { type: 'user', id: user.id },
            {
              user: eventUser(signedIn),
              method,
              client_id: clientId ?? null,
              ip_address: request.ip_address,
              user_agent: request.user_agent,
            },
            at,
          ),
        ])
      : await change();
    await this.record('user.login', user, request, { client_id: clientId ?? null });
    return recorded;
  }
}
