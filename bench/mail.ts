/**
 * Mail benchmark: creating users with a password (argon2id-bound) and `send_welcome_email: true`,
 * first with an SMTP server that accepts every message (smtp-server in this process), then with one
 * that accepts connections and never answers (black-holed), in the same run, alternating rounds
 * (--rounds, 2). The ratio of the means is what a failing SMTP server costs sign-up (floor: 95%):
 * the request only writes the message to the outbox, the worker's failures stay off its path.
 *
 * Usage: npm run bench -- mail [--duration S] [--rounds N] [--mongo URI] [--redis URL]
 */
import { createServer, type Server, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

import { SMTPServer } from 'smtp-server';

import { adminToken, freePort, machine, measure, startServer, table, type Measurement } from './lib.ts';

/** One port that is either a working SMTP server or a black hole. */
class SwitchableSmtp {
  received = 0;
  private smtp: SMTPServer | undefined;
  private hole: Server | undefined;
  private readonly sockets = new Set<Socket>();

  readonly port: number;

  constructor(port: number) {
    this.port = port;
  }

  async up(): Promise<void> {
    await this.down();
    this.smtp = new SMTPServer({
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData: (stream, _session, callback) => {
        stream.resume();
        stream.on('end', () => {
          this.received += 1;
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => this.smtp!.listen(this.port, '127.0.0.1', resolve));
  }

  async blackHole(): Promise<void> {
    await this.down();
    this.hole = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.hole!.listen(this.port, '127.0.0.1', resolve));
  }

  async down(): Promise<void> {
    if (this.smtp) await new Promise<void>((resolve) => this.smtp!.close(() => resolve()));
    this.smtp = undefined;
    if (this.hole) {
      for (const socket of this.sockets) socket.destroy();
      await new Promise((resolve) => this.hole!.close(resolve));
      this.hole = undefined;
    }
  }
}

export async function runMailBenchmark(argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '2' },
      mongo: { type: 'string' },
      redis: { type: 'string' },
    },
  });
  const duration = Number(values.duration);
  const rounds = Number(values.rounds);
  const backend = values.mongo ? `mongo${values.redis ? ' + redis' : ''}` : 'embedded';
  const smtp = new SwitchableSmtp(await freePort());
  await smtp.up();
  const server = await startServer({
    ...(values.mongo ? { MONGODB_URI: values.mongo } : {}),
    ...(values.redis ? { REDIS_URL: values.redis } : {}),
    SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
    SMTP_TIMEOUT_MS: '2000',
  });
  try {
    const token = await adminToken(server.url, 'user:read user:write');
    let sequence = 0;
    const create = {
      method: 'POST' as const,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      path: '/v2/users',
      setupRequest: (req: object) => {
        sequence += 1;
        return {
          ...req,
          body: JSON.stringify({
            email: `mail${sequence}-${Date.now()}@bench.example`,
            first_name: 'Bench',
            last_name: `User${sequence}`,
            password: `a long bench passphrase ${sequence} x`,
            send_welcome_email: true,
          }),
        };
      },
    };
    const base = { url: server.url, duration, connections: 8 };
    await measure('warm-up', { ...base, duration: 3, requests: [create] });
    const up: Measurement[] = [];
    const down: Measurement[] = [];
    for (let round = 0; round < rounds; round += 1) {
      await smtp.up();
      up.push(await measure('POST /v2/users + welcome mail, SMTP up', { ...base, requests: [create] }));
      await smtp.blackHole();
      down.push(
        await measure('POST /v2/users + welcome mail, SMTP black-holed', { ...base, requests: [create] }),
      );
    }
    await smtp.up();
    const mean = (rows: Measurement[]) => rows.reduce((sum, r) => sum + r.requestsPerSecond, 0) / rows.length;
    const ratio = mean(down) / mean(up);
    return [
      `### Sign-up with SMTP up and black-holed on ${backend}`,
      '',
      `Machine: ${machine()}. Load generator, SMTP server and Latchkey share the machine.`,
      '',
      table([...up, ...down]),
      '',
      `Throughput with SMTP black-holed / with SMTP up: **${(ratio * 100).toFixed(1)}%** (floor 95%). ` +
        `Messages the SMTP server accepted during the run: ${smtp.received}.`,
      '',
    ].join('\n');
  } finally {
    await server.stop();
    await smtp.down();
  }
}
