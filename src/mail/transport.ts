/**
 * How messages leave: nodemailer's pooled SMTP transport from SMTP_URL (STARTTLS when the server
 * offers it, required with SMTP_REQUIRE_TLS; smtps:// for TLS from the first byte), with
 * SMTP_TIMEOUT_MS on connecting, the greeting and every command, and an overall deadline on each
 * message besides. Without SMTP_URL, a transport that writes each message to the log (development:
 * a developer clicks the link from the log line).
 */
import nodemailer from 'nodemailer';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** Why a message could not be sent, and whether trying again may help. */
export class MailSendError extends Error {
  constructor(
    message: string,
    /** A 5xx answer about the message or its recipient (not the login): retrying cannot help. */
    readonly permanent: boolean,
    /** The SMTP reply code, when there was one. */
    readonly responseCode: number | null,
  ) {
    super(message);
    this.name = 'MailSendError';
  }
}

export interface MailTransport {
  readonly kind: 'smtp' | 'log';
  /** Sends one message; throws MailSendError. */
  send(message: MailMessage): Promise<void>;
  close(): void;
}

export interface SmtpOptions {
  url: string;
  from: string;
  requireTls: boolean;
  timeoutMs: number;
  maxConnections: number;
}

interface NodemailerError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

/** A clear reason for the log and for GET /v2/mail/messages, from what nodemailer reports. */
export function describeSmtpError(err: unknown, where: string): MailSendError {
  const e = err as NodemailerError;
  const code = typeof e.responseCode === 'number' ? e.responseCode : null;
  const reply = e.response ? `: ${e.response.slice(0, 200)}` : '';
  const text = String(e.message ?? err);
  if (e.code === 'EAUTH') {
    return new MailSendError(`the SMTP server refused the login (${code ?? 'no code'}${reply})`, false, code);
  }
  if (/ECONNREFUSED/.test(text)) return new MailSendError(`connection refused by ${where}`, false, null);
  if (e.code === 'ETIMEDOUT' || /timeout|timed out/i.test(text)) {
    return new MailSendError(`${where} did not answer in time (${text.slice(0, 200)})`, false, null);
  }
  if (e.code === 'EDNS' || /ENOTFOUND|EAI_AGAIN/.test(text)) {
    return new MailSendError(`the SMTP host could not be resolved (${text.slice(0, 200)})`, false, null);
  }
  if (e.code === 'ETLS' || /TLS|certificate/i.test(text)) {
    return new MailSendError(`TLS with ${where} failed (${text.slice(0, 200)})`, false, null);
  }
  if (code !== null) {
    // 4xx is temporary by definition; 5xx about the envelope or the message is final.
    return new MailSendError(`the SMTP server answered ${code}${reply}`, code >= 500, code);
  }
  return new MailSendError(`sending failed: ${text.slice(0, 300)}`, false, null);
}

export function createSmtpTransport(options: SmtpOptions): MailTransport {
  const url = new URL(options.url);
  const secure = url.protocol === 'smtps:';
  const port = url.port ? Number(url.port) : secure ? 465 : 587;
  const where = `${url.hostname}:${port}`;
  const transporter = nodemailer.createTransport({
    pool: true,
    maxConnections: options.maxConnections,
    host: url.hostname,
    port,
    secure,
    requireTLS: options.requireTls,
    ...(url.username
      ? { auth: { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) } }
      : {}),
    connectionTimeout: options.timeoutMs,
    greetingTimeout: options.timeoutMs,
    socketTimeout: options.timeoutMs,
    dnsTimeout: options.timeoutMs,
  });
  // Each step has its deadline; this bounds the whole message (connect, greet, login, send).
  const overall = options.timeoutMs * 4;
  return {
    kind: 'smtp',
    async send(message) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          transporter.sendMail({ from: options.from, ...message }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(Object.assign(new Error(`no answer within ${overall} ms`), { code: 'ETIMEDOUT' })),
              overall,
            );
          }),
        ]);
      } catch (err) {
        throw describeSmtpError(err, where);
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => transporter.close(),
  };
}

/** Development without SMTP_URL: each message goes to the log, links and all. */
export function createLogTransport(log: { info(obj: object, msg: string): void }): MailTransport {
  return {
    kind: 'log',
    async send(message) {
      log.info(
        { mail_to: message.to, subject: message.subject, text: message.text },
        'e-mail (not sent: SMTP_URL is not set)',
      );
    },
    close: () => undefined,
  };
}
