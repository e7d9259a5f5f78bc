/**
 * Self-service accounts: sign-up (REGISTRATION=open, optionally only for REGISTRATION_DOMAINS, or
 * REGISTRATION=invite: only through an invitation an administrator mailed, POST /v2/invitations) and
 * address confirmation by an e-mailed single-use link (EMAIL_VERIFICATION_TTL_S). A new account
 * starts with `email_verified: false`; following the link sets it, records `user.email_verified`
 * and sends the welcome message. With REQUIRE_VERIFIED_EMAIL=true sign-in waits for that. Changing
 * the address (management API) clears `email_verified` and mails a link to the new address.
 *
 * An invitation is a single-use, expiring link (INVITATION_TTL_S) for one address, stored as a hash
 * like the other account tokens. Following it opens the sign-up page with that address fixed; the
 * account it creates has `email_verified: true` (the invitation proved the address) and is welcomed
 * at once. Invitations work while REGISTRATION is invite or open, and need e-mail.
 */
import { emailField, textField } from '../admin/schemas.js';
import { AppError } from '../errors/app-error.js';
import { newEvent } from '../events/catalog.js';
import { eventActor, type EventRecorder } from '../events/recorder.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { RegistrationMode } from '../config/registration.js';
import type { AccountTokens, InvitationFacts, TokenFacts } from '../mail/account-tokens.js';
import type { Mailer } from '../mail/mailer.js';
import { publicUser } from '../events/catalog.js';
import type { CounterStore, DurableStore, User } from '../store/ports.js';
import type { Actor, AuditService, RequestFacts } from './audit.js';
import type { UserService } from './users.js';

export interface RegistrationOptions {
  issuer: string;
  mode: RegistrationMode;
  domains: readonly string[];
  requireVerified: boolean;
  verificationTtlS: number;
  invitationTtlS: number;
  /** Links that may be re-sent per address and hour. */
  resendPerHour: number;
}

export type SignUpOutcome =
  | { kind: 'created'; user: User }
  | { kind: 'invalid'; field: 'email' | 'password' | 'name'; message: string }
  | { kind: 'exists' }
  | { kind: 'domain' }
  | { kind: 'unavailable' };

const SELF_SERVICE = { actor_type: 'system' as const, actor_id: 'self-service', actor_client_id: null };

export class Registration {
  constructor(
    private readonly store: DurableStore,
    private readonly counters: CounterStore,
    private readonly users: UserService,
    private readonly tokens: AccountTokens,
    private readonly mailer: Mailer,
    private readonly recorder: EventRecorder,
    private readonly audit: AuditService,
    private readonly options: RegistrationOptions,
  ) {}

  /** Whether anyone may sign up (REGISTRATION=open). */
  get open(): boolean {
    return this.options.mode === 'open';
  }

  /** Whether administrators may invite people to sign up (REGISTRATION=invite or open). */
  get invitations(): boolean {
    return this.options.mode !== 'closed';
  }

  /** Whether the messages of this flow (confirmation links, invitations) can be sent at all. */
  get mailAvailable(): boolean {
    return this.mailer.enabled;
  }

  /**
   * Whether a sign-up without an invitation could never be finished: REQUIRE_VERIFIED_EMAIL with
   * e-mail off (production without SMTP_URL), so the confirmation link could not be sent.
   */
  get signUpNeedsMissingMail(): boolean {
    return this.options.requireVerified && !this.mailer.enabled;
  }

  get requireVerified(): boolean {
    return this.options.requireVerified;
  }

  /**
   * Creates the account (syntax-checked address, the password policy) and mails the link. With an
   * `invitation` the address is the invitation's (whatever was posted), the domain allow-list does
   * not apply (an administrator chose the address), the account starts confirmed and is welcomed,
   * and the invitation is used up.
   */
  async signUp(
    input: { email: string; password: string; first_name: string; last_name: string },
    from: { uid: string; locale: string | undefined; request: RequestFacts },
    invitation?: InvitationFacts,
  ): Promise<SignUpOutcome> {
    if (invitation ? !this.invitations : !this.open) {
      return { kind: 'invalid', field: 'email', message: 'Sign-up is closed' };
    }
    if (!invitation && this.signUpNeedsMissingMail) return { kind: 'unavailable' };
    const email = emailField.safeParse(invitation ? invitation.email : input.email);
    if (!email.success) return { kind: 'invalid', field: 'email', message: '' };
    const domain = email.data.split('@').pop()!.toLowerCase();
    if (!invitation && this.options.domains.length > 0 && !this.options.domains.includes(domain)) {
      return { kind: 'domain' };
    }
    const names: Record<'first_name' | 'last_name', string> = { first_name: '', last_name: '' };
    for (const key of ['first_name', 'last_name'] as const) {
      const given = input[key].trim();
      if (!given) continue;
      const parsed = textField(100).safeParse(given);
      if (!parsed.success)
        return { kind: 'invalid', field: 'name', message: parsed.error.issues[0]!.message };
      names[key] = parsed.data;
    }
    let user: User;
    try {
      user = await this.users.create(
        {
          email: email.data,
          password: input.password,
          ...names,
          // The invitation's link proved the address: the account starts confirmed (setting that
          // needs user:security, which the invitation stands for here) and gets its welcome now.
          email_verified: invitation !== undefined,
          send_welcome_email: invitation !== undefined,
        },
        {
          actor: SELF_SERVICE,
          request: from.request,
          grants: new Set(invitation ? ['user:security'] : []),
        },
      );
    } catch (err) {
      if (err instanceof AppError && err.code === 'USER_ALREADY_EXISTS') return { kind: 'exists' };
      if (
        err instanceof AppError &&
        (err.code === 'VALIDATION_ERROR' || err.code === 'BUSINESS_RULE_VIOLATION')
      ) {
        return {
          kind: 'invalid',
          field: 'password',
          message: err.details?.map((d) => d.issue).join(' ') ?? err.message,
        };
      }
      throw err;
    }
    // The address is unique, so a second use of the same invitation cannot create a second account.
    if (invitation) await this.tokens.use(invitation, this.options.invitationTtlS);
    else await this.sendLink(user, from.uid, from.locale);
    return { kind: 'created', user };
  }

  /**
   * An administrator invites `email` to sign up: a single-use link, valid for INVITATION_TTL_S, is
   * mailed to the address. Refused when sign-up is closed, e-mail is off, or the address has an
   * account.
   */
  async invite(
    input: { email: string; first_name?: string; last_name?: string },
    context: { actor: Actor; request: RequestFacts; locale?: string },
  ): Promise<{ email: string; expires_at: Date }> {
    if (!this.invitations) throw new AppError('REGISTRATION_CLOSED');
    if (!this.mailer.enabled) throw new AppError('EMAIL_NOT_CONFIGURED');
    const email = input.email.trim().toLowerCase();
    if (await this.store.users.findByEmail(email)) throw new AppError('USER_ALREADY_EXISTS');
    const invitee = { email, first_name: input.first_name ?? '', last_name: input.last_name ?? '' };
    const ttlS = this.options.invitationTtlS;
    const token = await this.tokens.issueInvitation(invitee, ttlS);
    const link = `${this.options.issuer}/interaction/invitation?token=${token}`;
    const days = Math.max(1, Math.round(ttlS / 86_400));
    const actor = eventActor(context.actor);
    await this.recorder.record(
      async () => undefined,
      () => [],
      () => this.mailer.invitation(invitee, link, days, actor, context.locale),
    );
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'user.invited',
      target_type: 'invitation',
      target_id: email,
      before: null,
      after: { email },
    });
    return { email, expires_at: new Date(Date.now() + ttlS * 1000) };
  }

  /** The invitation a link's token stands for, while it is unused, unexpired and its address free. */
  async invitation(token: string): Promise<InvitationFacts | null> {
    if (!this.invitations) return null;
    const facts = await this.tokens.checkInvitation(token);
    if (!facts || (await this.store.users.findByEmail(facts.email))) return null;
    return facts;
  }

  /** Mails `user` a confirmation link (sign-up, a changed address, a resend). */
  async sendLink(user: User, uid: string | null, locale?: string): Promise<void> {
    if (!this.mailer.enabled || user.email_verified) return;
    const ttlS = this.options.verificationTtlS;
    const [token, code] = await Promise.all([
      this.tokens.issue('email_verification', user, ttlS, uid),
      this.tokens.issueCode('email_verification', user, ttlS, uid),
    ]);
    const link = `${this.options.issuer}/interaction/verify-email?token=${token}`;
    const hours = Math.max(1, Math.round(ttlS / 3600));
    await this.recorder.record(
      async () => undefined,
      () => [],
      () => this.mailer.verification(user, link, code, hours, { type: 'user', id: user.id }, locale),
    );
  }

  /** Re-sends the link for `email` when it is an unconfirmed active user's; limited per address. */
  async resend(email: string, uid: string, locale: string | undefined): Promise<'sent' | 'limited'> {
    const normalized = email.trim().toLowerCase();
    const count = await this.counters.increment(`verify-resend:${normalized}`, 3600);
    if (count.value > this.options.resendPerHour) return 'limited';
    const user = await this.store.users.findByEmail(normalized);
    if (isActiveUser(user) && !user.email_verified) await this.sendLink(user, uid, locale);
    return 'sent';
  }

  /** Confirms the address of a link's user; the welcome message follows. Null when the link is dead. */
  async confirm(token: string, request: RequestFacts): Promise<TokenFacts | null> {
    const facts = await this.tokens.check('email_verification', token, (id) => this.store.users.findById(id));
    return facts ? this.confirmed(facts, request) : null;
  }

  /**
   * Confirms the address by the 6-digit code of the message (typed on the page that asked for it).
   * Five wrong codes per user and hour, then none is accepted until the hour is over.
   */
  async confirmCode(email: string, code: string, request: RequestFacts): Promise<TokenFacts | null> {
    const user = await this.store.users.findByEmail(email.trim().toLowerCase());
    if (!isActiveUser(user) || user.email_verified) return null;
    const facts = await this.tokens.checkCode('email_verification', user, code, {
      maxGuesses: 5,
      windowS: 3600,
    });
    return facts ? this.confirmed(facts, request) : null;
  }

  private async confirmed(facts: TokenFacts, request: RequestFacts): Promise<TokenFacts | null> {
    if (!(await this.tokens.use(facts, this.options.verificationTtlS))) return null;
    // Confirmed already (by the code, then the link, or the other way round): nothing more to do.
    if ((await this.store.users.findById(facts.userId))?.email_verified) return facts;
    const actor = { type: 'user' as const, id: facts.userId };
    const confirmed = await this.recorder.record(
      () => this.store.users.update(facts.userId, { email_verified: true }),
      (user) => (user ? [newEvent('user.email_verified', actor, { user: publicUser(user) })] : []),
      (user) => (user ? this.mailer.welcome(user, actor) : []),
    );
    if (confirmed) {
      await this.audit.record({
        actor_type: 'user',
        actor_id: facts.userId,
        actor_client_id: null,
        request,
        action: 'user.email_verified',
        target_type: 'user',
        target_id: facts.userId,
        before: { email_verified: false },
        after: { email_verified: true },
      });
    }
    return facts;
  }
}
