/**
 * E-mail through a real SMTP server in this process (smtp-server, read back with mailparser): the
 * welcome message of POST /v2/users arrives; an SMTP server that refuses the login (535), refuses
 * connections or accepts them and never answers makes no request slower or failed, the message is
 * retried and sent once the server is back, or is dead with the reason, listed for administrators
 * and counted in /metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';

import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import request from 'supertest';

import { adminApi, uniqueEmail, type AdminApi } from '../helpers/admin-api.js';
import { freePort } from '../helpers/processes.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

const durables = [...new Set(availableBackends().map((b) => b.durable))];

type Mode = 'ok' | 'refuse-login';

/** An SMTP server on a fixed port that can be stopped, or swapped for one that never answers. */
class Smtp {
  readonly received: ParsedMail[] = [];
  mode: Mode = 'ok';
  private smtp: SMTPServer | undefined;
  private silent: TcpServer | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly port: number) {}

  async start(): Promise<void> {
    this.smtp = new SMTPServer({
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      logger: false,
      onAuth: (auth, _session, callback) => {
        if (this.mode === 'refuse-login' || auth.username !== 'mailer' || auth.password !== 's3cret') {
          return callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
        }
        callback(null, { user: auth.username });
      },
      onData: (stream, _session, callback) => {
        simpleParser(stream)
          .then((mail) => {
            this.received.push(mail);
            callback();
          })
          .catch(callback);
      },
    });
    await new Promise<void>((resolve) => this.smtp!.listen(this.port, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.smtp ? this.smtp.close(() => resolve()) : resolve()));
    this.smtp = undefined;
    if (this.silent) {
      for (const socket of this.sockets) socket.destroy();
      await new Promise((resolve) => this.silent!.close(resolve));
      this.silent = undefined;
    }
  }

  /** Accepts connections and never says a word. */
  async hang(): Promise<void> {
    this.silent = createTcpServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.silent!.listen(this.port, '127.0.0.1', resolve));
  }
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < 400; i++) {
    last = await read();
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not happen; last seen: ${JSON.stringify(last)}`);
}

describe.each(durables)('e-mail through SMTP, durable=%s', (durable) => {
  let t: TestApp;
  let api: AdminApi;
  let smtp: Smtp;

  beforeAll(async () => {
    smtp = new Smtp(await freePort());
    await smtp.start();
    t = await createTestApp({
      durable,
      env: {
        SMTP_URL: `smtp://mailer:s3cret@127.0.0.1:${smtp.port}`,
        MAIL_FROM: 'Latchkey Test <no-reply@latchkey.test>',
        MAIL_RETRY_SCHEDULE: '100ms,100ms,100ms,100ms',
        SMTP_TIMEOUT_MS: '300',
        WEBHOOK_POLL_MS: '50',
        METRICS_ENABLED: 'true',
      },
    });
    api = await adminApi(t);
  });
  afterAll(async () => {
    await t?.close();
    await smtp?.stop();
  });

  const messages = async (status?: string) => {
    const res = await api.get('/v2/mail/messages', status ? { status } : {});
    expect(res.status).toBe(200);
    return res.body.data as { to: string; status: string; attempts: number; last_error: string | null }[];
  };
  const messageTo = async (email: string) => (await messages()).find((m) => m.to === email);
  const createUser = async (email: string) => {
    const res = await api.post('/v2/users', {
      email,
      first_name: 'Ada',
      last_name: 'Lovelace',
      send_welcome_email: true,
    });
    expect(res.status).toBe(201);
    return res.body as { id: string };
  };

  it('sends the welcome message of a created user, with a plain-text part and no external images', async () => {
    const email = uniqueEmail('welcome');
    await createUser(email);
    const mail = await eventually(
      async () => smtp.received.find((m) => m.to && JSON.stringify(m.to).includes(email)),
      Boolean,
      'the welcome message',
    );
    expect(mail!.subject).toBe('Welcome to Latchkey');
    expect(mail!.from?.value).toEqual([{ name: 'Latchkey Test', address: 'no-reply@latchkey.test' }]);
    expect(mail!.text).toContain(`${t.config.issuer}/account`);
    expect(mail!.text).toContain('Ada');
    expect(String(mail!.html)).toContain(`href="${t.config.issuer}/account"`);
    expect(String(mail!.html)).not.toMatch(/<img|url\(/i);
    const listed = await eventually(
      () => messageTo(email),
      (m) => m?.status === 'succeeded',
      'succeeded',
    );
    expect(listed).toMatchObject({ attempts: 1, last_error: null });

    // Without send_welcome_email nothing is sent.
    const quiet = uniqueEmail('quiet');
    const res = await api.post('/v2/users', { email: quiet, first_name: 'Q', last_name: 'Q' });
    expect(res.status).toBe(201);
    expect(await messageTo(quiet)).toBeUndefined();
  });

  it('retries a message the SMTP server refused the login for (535), and sends it once the login works', async () => {
    smtp.mode = 'refuse-login';
    // Connections of the pool that logged in before stay open: start over so that the next one logs in.
    await smtp.stop();
    await smtp.start();
    const email = uniqueEmail('refused');
    await createUser(email);
    const failed = await eventually(
      () => messageTo(email),
      (m) => (m?.attempts ?? 0) >= 2,
      'two attempts',
    );
    expect(failed!.last_error).toMatch(/refused the login \(535/);
    expect(smtp.received.some((m) => JSON.stringify(m.to).includes(email))).toBe(false);
    smtp.mode = 'ok';
    const sent = await eventually(
      () => messageTo(email),
      (m) => m?.status === 'succeeded',
      'sent',
    );
    expect(sent!.attempts).toBeGreaterThanOrEqual(2);
    expect(smtp.received.filter((m) => JSON.stringify(m.to).includes(email))).toHaveLength(1);
  });

  it('answers at once while the SMTP server hangs; the message is retried and sent when it is back', async () => {
    await smtp.stop();
    await smtp.hang();
    const email = uniqueEmail('hung');
    // The request returns while the SMTP server has not said a word: it never waits for mail.
    await createUser(email);
    const failed = await eventually(
      () => messageTo(email),
      (m) => (m?.attempts ?? 0) >= 1 && m?.status !== 'pending',
      'a timed-out attempt',
    );
    expect(failed!.last_error).toMatch(/did not answer in time|timed out|timeout/i);
    await smtp.stop();
    await smtp.start();
    await eventually(
      () => messageTo(email),
      (m) => m?.status === 'succeeded',
      'sent after the hang',
    );
  });

  it('gives up after the last retry when connections are refused: dead, with the reason, and counted', async () => {
    await smtp.stop();
    const email = uniqueEmail('dead');
    const bulk = await api.post('/v2/users/bulk', {
      users: [{ email, first_name: 'D', last_name: 'D' }],
      options: { send_welcome_emails: true },
    });
    expect(bulk.status).toBe(201);
    const dead = await eventually(
      () => messageTo(email),
      (m) => m?.status === 'dead',
      'dead',
    );
    expect(dead!.attempts).toBe(5);
    expect(dead!.last_error).toMatch(/connection refused/);
    expect((await messages('dead')).map((m) => m.to)).toContain(email);
    const metrics = await request(t.callback).get('/metrics');
    expect(metrics.text).toMatch(/latchkey_mail_attempts_total\{outcome="dead"\} [1-9]/);
    expect(metrics.text).toMatch(/latchkey_mail_attempts_total\{outcome="failed"\} [1-9]/);
    await smtp.start();
  });
});
