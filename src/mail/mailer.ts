/**
 * Composing e-mail into the durable outbox. A message is an outbox event of the internal type
 * `mail.message` with one delivery to the endpoint `mail_smtp`, written in the same unit as the
 * change that sends it (EventRecorder.record's `direct` records), so nothing accepted is lost and
 * nothing is sent for a change that did not happen. Mail events are never fanned out to webhooks or
 * given to event consumers. The recipient, subject and kind are stored in clear (the administrators'
 * view of messages shows them); the bodies, which carry links, are sealed with the key-encryption
 * key (AES-256-GCM, bound to the event id) until the worker sends them.
 *
 * Templates are views/mail/*.eta in the layout views/mail/layout.eta, with the strings of
 * views/locales (the same catalogs as the sign-in pages): HTML with inline styles and no external
 * images, and a plain-text part.
 */
import { join } from 'node:path';

import { Eta } from 'eta';

import type { DirectRecord } from '../events/recorder.js';
import { loadMessages, type Translate } from '../interactions/messages.js';
import { VIEWS_DIR } from '../interactions/views.js';
import type { KeyCipher } from '../oidc/keys/key-cipher.js';
import { newId } from '../store/ids.js';
import type { EventActor, OutboxEvent } from '../store/ports.js';
import type { MailMessage } from './transport.js';

export const MAIL_EVENT_TYPE = 'mail.message';
/** The one mail endpoint: its lanes are the SMTP connections (MAIL_CONCURRENCY). */
export const MAIL_ENDPOINT = 'mail_smtp';
export const MAIL_KINDS = ['welcome', 'password-reset', 'verify-email', 'invitation'] as const;
export type MailKind = (typeof MAIL_KINDS)[number];

export interface MailerOptions {
  /** Whether messages are composed at all (false: production without SMTP_URL). */
  enabled: boolean;
  issuer: string;
  brand: string;
  accent?: string;
  viewsDir?: string;
}

/** What GET /v2/mail/messages shows of a message. */
export interface MailSummary {
  to: string;
  subject: string;
  kind: string;
}

const aad = (eventId: string) => `mail:${eventId}`;

export class Mailer {
  private readonly eta: Eta;
  private readonly messages;

  constructor(
    private readonly cipher: KeyCipher,
    private readonly options: MailerOptions,
  ) {
    const dir = options.viewsDir ?? VIEWS_DIR;
    this.eta = new Eta({ views: join(dir, 'mail'), autoEscape: true, cache: true });
    this.messages = loadMessages(join(dir, 'locales'));
  }

  get enabled(): boolean {
    return this.options.enabled;
  }

  private render(kind: MailKind, t: Translate, lang: string, subject: string, data: Record<string, string>) {
    const common = { brand: this.options.brand, accent: this.options.accent ?? '#1f5fd1', lang, t, subject };
    const body = this.eta.render(`./${kind}`, { ...common, ...data });
    return this.eta.render('./layout', { ...common, body });
  }

  /**
   * One message of `kind` to `to`: the subject, plain text and HTML from the strings `mail.<key>.*`
   * and views/mail/<kind>.eta, with `vars` (and the brand) filled in.
   */
  private compose(
    kind: MailKind,
    key: string,
    to: string,
    vars: Record<string, string>,
    actor: EventActor,
    locale: string | undefined,
  ): DirectRecord[] {
    if (!this.options.enabled) return [];
    const { lang, t } = this.messages.forRequest(locale);
    const brand = this.options.brand;
    const subject = t(`mail.${key}.subject`, { brand });
    const all = { ...vars, email: to };
    return [
      this.seal(
        {
          to,
          subject,
          text: t(`mail.${key}.text`, { brand, ...all }),
          html: this.render(kind, t, lang, subject, all),
        },
        kind,
        actor,
      ),
    ];
  }

  /** The welcome message of a user an administrator created (or who signed up and verified). */
  welcome(
    user: { email: string; first_name: string | null },
    actor: EventActor,
    locale?: string,
  ): DirectRecord[] {
    const vars = { name: user.first_name || user.email, link: `${this.options.issuer}/account` };
    return this.compose('welcome', 'welcome', user.email, vars, actor, locale);
  }

  /** An address-confirmation link (and its code) for `user`, valid for `hours`. */
  verification(
    user: { email: string },
    link: string,
    code: string,
    hours: number,
    actor: EventActor,
    locale?: string,
  ): DirectRecord[] {
    const vars = { link, code, hours: String(hours) };
    return this.compose('verify-email', 'verify', user.email, vars, actor, locale);
  }

  /** A password-reset link for `user`, valid for `minutes`. */
  passwordReset(
    user: { email: string },
    link: string,
    minutes: number,
    actor: EventActor,
    locale?: string,
  ): DirectRecord[] {
    const vars = { link, minutes: String(minutes) };
    return this.compose('password-reset', 'reset', user.email, vars, actor, locale);
  }

  /** An invitation to sign up with `email`, valid for `days`. */
  invitation(
    invitee: { email: string; first_name: string },
    link: string,
    days: number,
    actor: EventActor,
    locale?: string,
  ): DirectRecord[] {
    const vars = { link, days: String(days), name: invitee.first_name || invitee.email };
    return this.compose('invitation', 'invite', invitee.email, vars, actor, locale);
  }

  private seal(message: MailMessage, kind: MailKind, actor: EventActor): DirectRecord {
    const now = new Date();
    const id = newId('evt', now.getTime());
    const sealed = this.cipher.encrypt(JSON.stringify({ text: message.text, html: message.html }), aad(id));
    const event: OutboxEvent = {
      id,
      type: MAIL_EVENT_TYPE,
      timestamp: now,
      actor,
      data: { to: message.to, subject: message.subject, kind, sealed },
    };
    return { event, endpointId: MAIL_ENDPOINT };
  }

  /** The message of a stored mail event, bodies unsealed; null when the event is not a message. */
  open(event: OutboxEvent): MailMessage | null {
    const { to, subject, sealed } = event.data as Record<string, unknown>;
    if (event.type !== MAIL_EVENT_TYPE || typeof to !== 'string' || typeof subject !== 'string') return null;
    if (typeof sealed !== 'string') return null;
    const { text, html } = JSON.parse(this.cipher.decrypt(sealed, aad(event.id))) as {
      text: string;
      html: string;
    };
    return { to, subject, text, html };
  }

  static summary(event: OutboxEvent | null): MailSummary | null {
    if (!event || event.type !== MAIL_EVENT_TYPE) return null;
    const { to, subject, kind } = event.data as Record<string, unknown>;
    return { to: String(to), subject: String(subject), kind: String(kind) };
  }
}
