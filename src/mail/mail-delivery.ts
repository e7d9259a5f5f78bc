/**
 * Sends the mail the Mailer put in the outbox, on the shared claim loop (OutboxWorker: leases, so
 * each message is sent by one instance; MAIL_CONCURRENCY at once, the SMTP pool's size). A message
 * that cannot be sent is retried after the next wait of MAIL_RETRY_SCHEDULE (±10%): a refused login
 * (535), a refused connection, a timeout, a 4xx answer. A 5xx answer about the message or its
 * recipient, or the last retry, makes it dead, with the reason kept for GET /v2/mail/messages.
 * Nothing here ever reaches the request that composed the message.
 */
import type { MailOutcome } from '../observability/metrics.js';
import { OutboxWorker, retryWait } from '../events/outbox-worker.js';
import type { OutboxDelivery, OutboxRepository } from '../store/ports.js';
import { MAIL_ENDPOINT, type Mailer } from './mailer.js';
import { MailSendError, type MailTransport } from './transport.js';

export interface MailWorkerOptions {
  schedule: readonly number[];
  concurrency: number;
  timeoutMs: number;
  pollMs: number;
  random?: () => number;
  observe?: (outcome: MailOutcome) => void;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

export class MailDeliveryWorker extends OutboxWorker {
  private readonly random: () => number;

  constructor(
    outbox: OutboxRepository,
    private readonly mailer: Mailer,
    private readonly transport: MailTransport,
    private readonly options: MailWorkerOptions,
  ) {
    super(outbox, {
      endpointPrefix: MAIL_ENDPOINT,
      concurrency: options.concurrency,
      endpointConcurrency: options.concurrency,
      pollMs: options.pollMs,
      // A message waits for a free connection at most once per message ahead of it in its lane.
      leaseMs: 2 * options.timeoutMs * 4 + 5000,
      log: options.log,
      label: 'mail delivery',
    });
    this.random = options.random ?? Math.random;
  }

  override async stop(): Promise<void> {
    await super.stop();
    this.transport.close();
  }

  protected async attempt(delivery: OutboxDelivery): Promise<void> {
    const started = performance.now();
    try {
      const event = await this.outbox.getEvent(delivery.event_id);
      const message = event ? this.mailer.open(event) : null;
      if (!message)
        return await this.finish(delivery, 'dead', 'the message is no longer stored', null, started);
      try {
        await this.transport.send(message);
      } catch (err) {
        const failure =
          err instanceof MailSendError
            ? err
            : new MailSendError(`sending failed: ${String(err)}`, false, null);
        const wait = failure.permanent
          ? undefined
          : retryWait(this.options.schedule, delivery.attempts, this.random);
        this.options.log.warn(
          {
            delivery_id: delivery.id,
            mail_to: message.to,
            attempt: delivery.attempts,
            reason: failure.message,
            ...(wait === undefined ? {} : { retry_in_ms: wait }),
          },
          wait === undefined ? 'e-mail could not be sent; given up' : 'e-mail could not be sent; will retry',
        );
        if (wait === undefined) {
          return await this.finish(delivery, 'dead', failure.message, failure.responseCode, started);
        }
        await this.outbox.fail(delivery.id, this.owner, {
          error: failure.message,
          status: failure.responseCode,
          latency_ms: Math.round(performance.now() - started),
          next_attempt_at: new Date(Date.now() + wait),
        });
        this.options.observe?.('failed');
        return;
      }
      await this.outbox.complete(delivery.id, this.owner, {
        status: 250,
        latency_ms: Math.round(performance.now() - started),
      });
      this.options.observe?.('sent');
    } catch (err) {
      this.options.log.error(
        { err, delivery_id: delivery.id },
        'e-mail attempt could not be recorded; it is retried once its lease expires',
      );
    }
  }

  private async finish(
    delivery: OutboxDelivery,
    outcome: 'dead',
    error: string,
    status: number | null,
    started: number,
  ): Promise<void> {
    await this.outbox.fail(delivery.id, this.owner, {
      error,
      status,
      latency_ms: Math.round(performance.now() - started),
      dead: true,
    });
    this.options.observe?.(outcome);
  }
}
