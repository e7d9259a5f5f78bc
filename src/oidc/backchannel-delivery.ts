/**
 * Sends the back-channel logouts (OpenID Connect Back-Channel Logout 1.0) that
 * services/backchannel-logout.ts put in the outbox, on the shared claim loop (OutboxWorker: leases,
 * so each attempt is made by one instance; a few attempts per client at once). Each attempt signs a
 * fresh logout token with the provider's current signing key (logoutTokenSigner: `typ`
 * `logout+jwt`, the client's id_token_signed_response_alg, two minutes of validity, the event id as
 * `jti` so a receiver recognizes a retry) and POSTs it as `logout_token` through the outbound client
 * (src/http/outbound.ts: SSRF guard, one deadline, no redirects). 200 or 204 completes; another
 * answer, a redirect, a timeout or a refused address is retried after the next wait of
 * BACKCHANNEL_LOGOUT_RETRY_SCHEDULE (±10%), then the delivery is dead, with the reason kept in the
 * outbox and an audit entry (`client.backchannel_logout_failed`). A client deleted meanwhile, or one
 * that dropped its backchannel_logout_uri, is not tried.
 */
import type Provider from 'oidc-provider';

import {
  createOutboundAgents,
  outboundRequest,
  OutboundError,
  type OutboundAgents,
  type OutboundResolver,
} from '../http/outbound.js';
import type { BackchannelOutcome } from '../observability/metrics.js';
import { OutboxWorker, retryWait } from '../events/outbox-worker.js';
import {
  BACKCHANNEL_ENDPOINT_PREFIX,
  openBackchannelLogout,
  type BackchannelLogout,
} from '../services/backchannel-logout.js';
import type { OutboxDelivery, OutboxRepository } from '../store/ports.js';

const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** Attempts at once per instance, and per client. */
const CONCURRENCY = 16;
const CLIENT_CONCURRENCY = 2;

/** A signed logout token and where it goes, or why there is nothing to send. */
export type SignedLogout = { uri: string; token: string } | { skip: string };

export type LogoutTokenSigner = (logout: BackchannelLogout, jti: string) => Promise<SignedLogout>;

/**
 * Signs logout tokens with whatever provider serves now (ProviderHost.current: its keys are the
 * current ones), the way oidc-provider's own Client#backchannelLogout builds them, with our jti.
 */
export function logoutTokenSigner(current: () => Provider): LogoutTokenSigner {
  return async (logout, jti) => {
    const provider = current();
    const client = await provider.Client.find(logout.clientId);
    if (!client) return { skip: 'the client no longer exists' };
    const uri = (client as unknown as { backchannelLogoutUri?: string }).backchannelLogoutUri;
    if (!uri) return { skip: 'the client no longer has a backchannel_logout_uri' };
    const required = (client as unknown as { backchannelLogoutSessionRequired?: boolean })
      .backchannelLogoutSessionRequired;
    if (required && !logout.sid) return { skip: 'the client requires sid and no session is known' };
    const IdToken = provider.IdToken as unknown as new (
      claims: object,
      options: { client: unknown; ctx: undefined },
    ) => {
      mask: object;
      set(key: string, value: unknown): void;
      issue(options: { use: 'logout' }): Promise<string>;
    };
    const token = new IdToken({ sub: logout.sub }, { client, ctx: undefined });
    token.mask = { sub: null };
    token.set('events', { [LOGOUT_EVENT]: {} });
    token.set('jti', jti);
    if (logout.sid) token.set('sid', logout.sid);
    return { uri, token: await token.issue({ use: 'logout' }) };
  };
}

export interface BackchannelWorkerOptions {
  timeoutMs: number;
  /** Waits before each retry, in milliseconds. */
  schedule: readonly number[];
  allowHttp: boolean;
  allowPrivateNetworks: boolean;
  pollMs: number;
  userAgent: string;
  lookup?: OutboundResolver;
  random?: () => number;
  observe?: (outcome: BackchannelOutcome) => void;
  /** The last retry failed: the client was never told (an audit entry records it). */
  givenUp?: (failure: {
    logout: BackchannelLogout;
    deliveryId: string;
    attempts: number;
    status: number | null;
    error: string;
  }) => Promise<void>;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

export class BackchannelLogoutWorker extends OutboxWorker {
  private readonly random: () => number;
  private agents: OutboundAgents | undefined;
  /** Aborted by stop(): attempts in flight end at once and are recorded as failed (retried later). */
  private stopping = new AbortController();

  constructor(
    outbox: OutboxRepository,
    private readonly sign: LogoutTokenSigner,
    private readonly options: BackchannelWorkerOptions,
  ) {
    super(outbox, {
      endpointPrefix: BACKCHANNEL_ENDPOINT_PREFIX,
      concurrency: CONCURRENCY,
      endpointConcurrency: CLIENT_CONCURRENCY,
      pollMs: options.pollMs,
      // The longest wait in a client's lanes, plus one attempt.
      leaseMs: (Math.ceil(CONCURRENCY / CLIENT_CONCURRENCY) + 1) * options.timeoutMs + 5000,
      log: options.log,
      label: 'back-channel logout delivery',
    });
    this.random = options.random ?? Math.random;
  }

  override start(): void {
    if (this.running) return;
    this.stopping = new AbortController();
    this.agents = createOutboundAgents({ maxSocketsPerHost: CLIENT_CONCURRENCY });
    super.start();
  }

  override async stop(): Promise<void> {
    this.stopping.abort();
    await super.stop();
    this.agents?.destroy();
    this.agents = undefined;
  }

  protected async attempt(delivery: OutboxDelivery): Promise<void> {
    const started = performance.now();
    try {
      const event = await this.outbox.getEvent(delivery.event_id);
      const logout = event ? openBackchannelLogout(event) : null;
      if (!logout) return await this.dead(delivery, null, 'the logout is no longer stored', started);
      const signed = await this.sign(logout, delivery.event_id);
      if ('skip' in signed) return await this.dead(delivery, null, signed.skip, started);
      let status: number | null = null;
      let error: string;
      try {
        const response = await outboundRequest(signed.uri, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            'user-agent': this.options.userAgent,
          },
          body: new URLSearchParams({ logout_token: signed.token }).toString(),
          timeoutMs: this.options.timeoutMs,
          allowHttp: this.options.allowHttp,
          allowPrivateNetworks: this.options.allowPrivateNetworks,
          lookup: this.options.lookup,
          maxBodyBytes: 64 * 1024,
          signal: this.stopping.signal,
          ...(this.agents ? { agents: this.agents } : {}),
        });
        status = response.status;
        // Back-Channel Logout 1.0 §2.8: 200 OK (oidc-provider also takes 204 No Content).
        if (status === 200 || status === 204) {
          await this.outbox.complete(delivery.id, this.owner, {
            status,
            latency_ms: Math.round(response.latencyMs),
          });
          this.options.observe?.('delivered');
          return;
        }
        error =
          status >= 300 && status < 400
            ? `the client answered ${status} (redirects are not followed)`
            : `the client answered ${status}`;
      } catch (err) {
        if (!(err instanceof OutboundError)) throw err;
        error = `${err.reason}: ${err.message}`;
      }
      await this.failed(delivery, logout, status, error, started);
    } catch (err) {
      this.options.log.error(
        { err, delivery_id: delivery.id },
        'back-channel logout attempt could not be recorded; it is retried once its lease expires',
      );
    }
  }

  private async failed(
    delivery: OutboxDelivery,
    logout: BackchannelLogout,
    status: number | null,
    error: string,
    started: number,
  ): Promise<void> {
    const wait = retryWait(this.options.schedule, delivery.attempts, this.random);
    this.options.log.warn(
      {
        delivery_id: delivery.id,
        client_id: logout.clientId,
        attempt: delivery.attempts,
        reason: error,
        ...(wait === undefined ? {} : { retry_in_ms: wait }),
      },
      wait === undefined
        ? 'back-channel logout could not be delivered; given up'
        : 'back-channel logout could not be delivered; will retry',
    );
    if (wait === undefined) {
      await this.dead(delivery, status, error, started);
      await this.options
        .givenUp?.({ logout, deliveryId: delivery.id, attempts: delivery.attempts, status, error })
        .catch((err: unknown) =>
          this.options.log.warn(
            { err, delivery_id: delivery.id },
            'could not audit a dead back-channel logout',
          ),
        );
      return;
    }
    await this.outbox.fail(delivery.id, this.owner, {
      error,
      status,
      latency_ms: Math.round(performance.now() - started),
      next_attempt_at: new Date(Date.now() + wait),
    });
    this.options.observe?.('failed');
  }

  private async dead(delivery: OutboxDelivery, status: number | null, error: string, started: number) {
    await this.outbox.fail(delivery.id, this.owner, {
      error,
      status,
      latency_ms: Math.round(performance.now() - started),
      dead: true,
    });
    this.options.observe?.('dead');
  }
}
