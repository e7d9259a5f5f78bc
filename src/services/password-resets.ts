/**
 * Self-service password reset by e-mail. Asking (the "Forgot password?" page, or an administrator
 * with POST /v2/users/{id}/password-reset {"send_email": true}) mails a single-use link that expires
 * after PASSWORD_RESET_TTL_S; following it lets the user choose a new password (the password policy
 * applies), which ends all their sessions, grants and refresh tokens.
 *
 * The answer to asking is the same whether or not the address belongs to an account, and takes the
 * same time: the lookup and the mail are made after the answer. Asking is limited per address and
 * per client address (PASSWORD_RESET_PER_*_PER_HOUR, counted in the counter store whether or not the
 * address exists).
 */
import { createHash } from 'node:crypto';

import type { EventRecorder } from '../events/recorder.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { AccountTokens, TokenFacts } from '../mail/account-tokens.js';
import type { Mailer } from '../mail/mailer.js';
import type { CounterStore, DurableStore } from '../store/ports.js';
import type { AuditService, RequestFacts } from './audit.js';
import type { UserService } from './users.js';

export interface PasswordResetOptions {
  issuer: string;
  ttlS: number;
  perAddressPerHour: number;
  perIpPerHour: number;
  log: { warn(obj: object, msg: string): void };
}

export type ResetRequestOutcome = 'accepted' | 'limited';

const HOUR_S = 3600;
const hashed = (text: string) => createHash('sha256').update(text).digest('base64url').slice(0, 27);

export class PasswordResets {
  constructor(
    private readonly store: DurableStore,
    private readonly counters: CounterStore,
    private readonly users: UserService,
    private readonly tokens: AccountTokens,
    private readonly mailer: Mailer,
    private readonly recorder: EventRecorder,
    private readonly audit: AuditService,
    private readonly options: PasswordResetOptions,
  ) {}

  get available(): boolean {
    return this.mailer.enabled;
  }

  /**
   * Someone asks for a link for `email`. Counted, then answered at once; the link is mailed (when
   * the address is an active user's) after the answer.
   */
  async request(
    email: string,
    from: { ip: string; uid: string | null; locale: string | undefined; request: RequestFacts },
  ): Promise<ResetRequestOutcome> {
    const normalized = email.trim().toLowerCase();
    const [perAddress, perIp] = await Promise.all([
      this.counters.increment(`password-reset:address:${hashed(normalized)}`, HOUR_S),
      this.counters.increment(`password-reset:ip:${hashed(from.ip)}`, HOUR_S),
    ]);
    if (perAddress.value > this.options.perAddressPerHour || perIp.value > this.options.perIpPerHour) {
      return 'limited';
    }
    setImmediate(() => {
      void this.mailLink(normalized, from).catch((err: unknown) => {
        this.options.log.warn({ err }, 'a password-reset link could not be prepared');
      });
    });
    return 'accepted';
  }

  private async mailLink(
    email: string,
    from: { uid: string | null; locale: string | undefined; request: RequestFacts },
  ): Promise<void> {
    const user = await this.store.users.findByEmail(email);
    if (!isActiveUser(user)) return;
    await this.send(user.id, { type: 'user', id: user.id }, from.uid, from.locale);
    await this.audit.record({
      actor_type: 'user',
      actor_id: user.id,
      actor_client_id: null,
      request: from.request,
      action: 'user.password_reset_requested',
      target_type: 'user',
      target_id: user.id,
      before: null,
      after: null,
      details: { by_administrator: false },
    });
  }

  /** Mails `userId` a link (an administrator's send_email, or the user's own request). */
  async send(
    userId: string,
    actor: { type: 'user' | 'client' | 'system'; id: string },
    uid: string | null,
    locale?: string,
  ): Promise<boolean> {
    const user = await this.store.users.findById(userId);
    if (!isActiveUser(user) || !this.mailer.enabled) return false;
    const token = await this.tokens.issue('password_reset', user, this.options.ttlS, uid);
    const link = `${this.options.issuer}/interaction/password-reset?token=${token}`;
    const mail = this.mailer.passwordReset(user, link, Math.round(this.options.ttlS / 60), actor, locale);
    await this.recorder.record(
      async () => undefined,
      () => [],
      () => mail,
    );
    return true;
  }

  /** The facts of a link's token, if it may still be used. */
  check(token: string): Promise<TokenFacts | null> {
    return this.tokens.check('password_reset', token, (id) => this.store.users.findById(id));
  }

  /**
   * Sets the new password of the link's user (policy-checked first: a refused password leaves the
   * link usable) and ends everything they were signed in to. False when the link was used meanwhile.
   */
  async complete(facts: TokenFacts, password: string, request: RequestFacts): Promise<boolean> {
    const user = await this.users.get(facts.userId);
    this.users.checkPasswordFor(user, password);
    if (!(await this.tokens.use(facts, this.options.ttlS))) return false;
    const actor = { actor_type: 'user' as const, actor_id: user.id, actor_client_id: null };
    await this.users.setPassword(
      user.id,
      password,
      { actor, request, grants: new Set() },
      { endSessions: true },
    );
    return true;
  }
}
