/**
 * A real SMTP server on loopback (smtp-server) that keeps every message it receives, parsed with
 * mailparser, for the tests that follow mail from the server to the person's inbox.
 */
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

import { freePort } from './processes.js';

export interface SmtpCapture {
  port: number;
  received: ParsedMail[];
  /** The first message to `email` whose subject matches, once it has arrived. */
  waitFor(email: string, subject?: RegExp): Promise<ParsedMail>;
  close(): Promise<void>;
}

const addressedTo = (mail: ParsedMail, email: string) => JSON.stringify(mail.to).includes(email);

export async function startSmtpCapture(): Promise<SmtpCapture> {
  const port = await freePort();
  const received: ParsedMail[] = [];
  const smtp = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData: (stream, _session, callback) => {
      simpleParser(stream)
        .then((mail) => {
          received.push(mail);
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve) => smtp.listen(port, '127.0.0.1', resolve));
  return {
    port,
    received,
    async waitFor(email, subject = /./) {
      for (let i = 0; i < 400; i++) {
        const mail = received.find((m) => addressedTo(m, email) && subject.test(m.subject ?? ''));
        if (mail) return mail;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no message to ${email} matching ${subject} arrived`);
    },
    close: () => new Promise<void>((resolve) => smtp.close(() => resolve())),
  };
}
