/**
 * The Prometheus metrics of one app instance, on a registry of its own (never prom-client's global
 * one, so several apps in one process, as in tests, do not collide). Code that has something to count
 * calls one of the small methods below; nothing else touches prom-client. Label values come only from
 * fixed sets (outcomes, grant types, route templates, store operation names), never from ids or input.
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the API-key verification endpoint decided about one key. */
export const VERIFY_KEY_OUTCOMES = [
  'ok',
  'invalid',
  'expired',
  'ip_denied',
  'quota_exceeded',
  'rate_limited',
  'unavailable',
] as const;
export type VerifyKeyOutcome = (typeof VERIFY_KEY_OUTCOMES)[number];

/** The kinds of AuthenticationResult, as the sign-in code reports them. */
export type LoginResultKind = 'ok' | 'invalid' | 'locked' | 'inactive';

/** Sign-in results under the names dashboards use. */
const LOGIN_OUTCOME: Record<LoginResultKind, string> = {
  ok: 'succeeded',
  invalid: 'failed',
  locked: 'locked',
  inactive: 'refused',
};

export const SHED_REASONS = ['overloaded', 'timeout'] as const;
export type ShedReason = (typeof SHED_REASONS)[number];
/** Why a 503 was answered; `other`: a 503 from somewhere that did not say (an upstream's). */
export const UNAVAILABLE_CAUSES = ['store', 'overloaded', 'timeout', 'other'] as const;
export type UnavailableCause = (typeof UNAVAILABLE_CAUSES)[number];

export const WEBHOOK_OUTCOMES = ['succeeded', 'failed', 'dead'] as const;
export type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];
export const MAIL_OUTCOMES = ['sent', 'failed', 'dead'] as const;
export type MailOutcome = (typeof MAIL_OUTCOMES)[number];
export const BACKCHANNEL_OUTCOMES = ['delivered', 'failed', 'dead'] as const;
export type BackchannelOutcome = (typeof BACKCHANNEL_OUTCOMES)[number];

/** Which store an operation went to. */
export type StoreRole = 'durable' | 'artifacts' | 'counters';

export interface MetricsOptions {
  /** Also collect the process and Node.js runtime metrics (CPU, memory, event loop, GC). */
  processMetrics?: boolean;
}

/** Seconds; from a quarter millisecond (a cached SQLite read) to a few seconds (a stuck backend). */
const STORE_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Seconds; argon2 sign-ins sit around 50–100 ms, API reads well under 10 ms. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();

  private readonly httpDuration = new Histogram({
    name: 'latchkey_http_request_duration_seconds',
    help: 'Time from receiving an HTTP request to its response being ready, by method, route template and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  private readonly tokensIssued = new Counter({
    name: 'latchkey_tokens_issued_total',
    help: 'Successful token endpoint responses, by grant type (one response may carry access, refresh and ID tokens).',
    labelNames: ['grant_type'] as const,
    registers: [this.registry],
  });

  private readonly logins = new Counter({
    name: 'latchkey_logins_total',
    help: 'Password sign-in attempts by outcome: succeeded, failed (unknown email or wrong password), locked (refused by brute-force protection before the password was checked), refused (right password, inactive account).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly introspections = new Counter({
    name: 'latchkey_introspections_total',
    help: 'Answered token introspection requests (RFC 7662) by the active flag of the answer; "unknown" for signed or encrypted answers.',
    labelNames: ['active'] as const,
    registers: [this.registry],
  });

  private readonly verifyKeys = new Counter({
    name: 'latchkey_verify_key_total',
    help: 'API-key verifications by outcome: ok, invalid, expired, ip_denied, quota_exceeded, rate_limited, unavailable.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  /** Exposed to the store instrumentation, which binds one child per operation. */
  readonly storeDuration = new Histogram({
    name: 'latchkey_store_operation_duration_seconds',
    help: 'Time of storage operations (failed ones included), by store (durable, artifacts, counters), backend (embedded, mongo, redis) and operation.',
    labelNames: ['store', 'backend', 'operation'] as const,
    buckets: STORE_BUCKETS,
    registers: [this.registry],
  });

  private readonly breakerState = new Gauge({
    name: 'latchkey_store_circuit_open',
    help: 'Whether the circuit breaker of a backend (embedded, mongo, redis) is open: 1 while requests that need it fail at once, 0 when closed.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });

  private readonly breakerOpenings = new Counter({
    name: 'latchkey_store_circuit_openings_total',
    help: 'Times the circuit breaker of a backend opened.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });

  private readonly shed = new Counter({
    name: 'latchkey_requests_shed_total',
    help: 'Requests answered 503 by this instance without being served: overloaded (MAX_IN_FLIGHT_REQUESTS reached) or timeout (REQUEST_TIMEOUT_MS passed).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  private readonly unavailable = new Counter({
    name: 'latchkey_unavailable_responses_total',
    help: 'Answers with status 503 by cause: store (a backend did not answer or its circuit is open), overloaded, timeout, other.',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });

  private readonly webhookDeliveries = new Counter({
    name: 'latchkey_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome: succeeded, failed (another attempt is due) or dead (given up, or the endpoint is gone).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly webhookAttempt = new Histogram({
    name: 'latchkey_webhook_attempt_duration_seconds',
    help: 'Duration of webhook delivery attempts, from the start of DNS resolution to the end of the answer (or the failure).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  private readonly mailMessages = new Counter({
    name: 'latchkey_mail_attempts_total',
    help: 'E-mail sending attempts by outcome: sent, failed (another attempt is due) or dead (given up: see GET /v2/mail/messages?status=dead).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly backchannelLogouts = new Counter({
    name: 'latchkey_backchannel_logout_attempts_total',
    help: 'Back-channel logout attempts (OpenID Connect Back-Channel Logout 1.0) by outcome: delivered, failed (another attempt is due) or dead (given up, or the client no longer takes them).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private outboxProbe: (() => Promise<{ pending: number; oldest: Date | null }>) | undefined;

  private readonly outboxDepth = new Gauge({
    name: 'latchkey_outbox_pending_deliveries',
    help: 'Deliveries of recorded events not yet made (pending, or failed with another attempt due), across all instances.',
    registers: [this.registry],
    collect: async () => {
      const stats = await this.outboxStats();
      if (stats) this.outboxDepth.set(stats.pending);
    },
  });

  private readonly outboxOldest = new Gauge({
    name: 'latchkey_outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest delivery not yet made, in seconds (0 when none is waiting).',
    registers: [this.registry],
    collect: async () => {
      const stats = await this.outboxStats();
      if (stats)
        this.outboxOldest.set(stats.oldest ? Math.max(0, (Date.now() - stats.oldest.getTime()) / 1000) : 0);
    },
  });

  private statsRead:
    { at: number; value: Promise<{ pending: number; oldest: Date | null } | undefined> } | undefined;

  /** One read of the outbox per scrape, shared by its two gauges; a store that does not answer leaves them. */
  private outboxStats(): Promise<{ pending: number; oldest: Date | null } | undefined> {
    const probe = this.outboxProbe;
    if (!probe) return Promise.resolve(undefined);
    if (!this.statsRead || Date.now() - this.statsRead.at > 1000) {
      this.statsRead = { at: Date.now(), value: probe().catch(() => undefined) };
    }
    return this.statsRead.value;
  }

  constructor(options: MetricsOptions = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
    // Start the fixed-label series at zero, so rates and alerts work before the first event.
    for (const outcome of VERIFY_KEY_OUTCOMES) this.verifyKeys.inc({ outcome }, 0);
    for (const outcome of Object.values(LOGIN_OUTCOME)) this.logins.inc({ outcome }, 0);
    for (const active of ['true', 'false']) this.introspections.inc({ active }, 0);
    for (const reason of SHED_REASONS) this.shed.inc({ reason }, 0);
    for (const cause of UNAVAILABLE_CAUSES) this.unavailable.inc({ cause }, 0);
    for (const outcome of WEBHOOK_OUTCOMES) this.webhookDeliveries.inc({ outcome }, 0);
    for (const outcome of MAIL_OUTCOMES) this.mailMessages.inc({ outcome }, 0);
    for (const outcome of BACKCHANNEL_OUTCOMES) this.backchannelLogouts.inc({ outcome }, 0);
  }

  backchannelLogoutAttempt(outcome: BackchannelOutcome): void {
    this.backchannelLogouts.inc({ outcome });
  }

  mailAttempt(outcome: MailOutcome): void {
    this.mailMessages.inc({ outcome });
  }

  /** Where the outbox gauges read from (the durable store's outbox). */
  watchOutbox(probe: () => Promise<{ pending: number; oldest: Date | null }>): void {
    this.outboxProbe = probe;
  }

  webhookDelivery(outcome: WebhookOutcome, seconds: number): void {
    this.webhookDeliveries.inc({ outcome });
    this.webhookAttempt.observe(seconds);
  }

  /** A backend's breaker opened or closed. */
  breaker(backend: string, state: 'open' | 'closed'): void {
    this.breakerState.set({ backend }, state === 'open' ? 1 : 0);
    if (state === 'open') this.breakerOpenings.inc({ backend });
  }

  /** Declares a backend in use, so its gauge reads 0 before anything happens. */
  backendInUse(backend: string): void {
    this.breakerState.set({ backend }, 0);
    this.breakerOpenings.inc({ backend }, 0);
  }

  requestShed(reason: ShedReason): void {
    this.shed.inc({ reason });
  }

  unavailableResponse(cause: UnavailableCause): void {
    this.unavailable.inc({ cause });
  }

  /** One HTTP request answered. `route` must be a template or a fixed name, never a raw path. */
  httpRequest(method: string, route: string, statusCode: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status_code: String(statusCode) }, seconds);
  }

  /** One verification by the API-key endpoint (src/gateway), whatever its answer. */
  verifyKey(outcome: VerifyKeyOutcome): void {
    this.verifyKeys.inc({ outcome });
  }

  /** One password sign-in attempt, as AuthenticationService reports it. */
  login(kind: LoginResultKind): void {
    this.logins.inc({ outcome: LOGIN_OUTCOME[kind] });
  }

  introspection(active: boolean | undefined): void {
    this.introspections.inc({ active: active === undefined ? 'unknown' : String(active) });
  }

  tokenIssued(grantType: string): void {
    this.tokensIssued.inc({ grant_type: grantType });
  }

  /**
   * Counts the provider's token responses. Called for every provider instance (one is built again
   * whenever the signing keys change); returns the provider for use inline.
   */
  observeProvider(provider: Provider): Provider {
    provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
      // The grant type has a registered handler by now (unknown ones are refused before), so the
      // label set is the server's fixed list of grants.
      const grantType = ctx.oidc.params?.grant_type;
      if (typeof grantType === 'string') this.tokenIssued(grantType);
    });
    return provider;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
