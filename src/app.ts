/**
 * The composition root: from the validated config, the logger and the opened stores it builds the
 * services, the OpenID provider and the one Koa application serving every surface. Nothing here
 * reads the environment.
 */
import { hkdfSync } from 'node:crypto';

import { EventRecorder, SYSTEM_ACTOR } from './events/recorder.js';
import { WebhookDeliveryWorker } from './events/webhook-delivery.js';
import { WebhookService } from './services/webhooks.js';
import { SsoConnections } from './sso/connections.js';
import { Federation } from './sso/federation.js';
import { SamlServiceProvider } from './sso/saml.js';
import { SamlKeys } from './sso/saml-keys.js';
import { IdpMetadataSource } from './sso/saml-metadata.js';
import { signInRedirects } from './sso/hooks.js';
import { ssoRouter } from './sso/router.js';
import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';

import { accountClient, accountRouter, accountSignInUrl } from './account/router.js';
import type { Config } from './config/load-config.js';
import { resolveSecrets } from './config/secrets.js';
import { errorMiddleware } from './errors/error-middleware.js';
import { allowedMethods } from './http/allowed-methods.js';
import { healthRouter } from './health/health-router.js';
import './http/koa-state.js';
import { securityHeaders } from './http/security-headers.js';
import { CookieSigner } from './http/cookie-signer.js';
import { Csrf } from './interactions/csrf.js';
import { interactionErrors, providerPages } from './interactions/pages.js';
import { interactionsRouter } from './interactions/router.js';
import { createViews } from './interactions/views.js';
import { requestContext } from './logging/request-context.js';
import { httpMetrics } from './observability/http-metrics.js';
import { instrumentStores } from './observability/instrument-stores.js';
import { Metrics } from './observability/metrics.js';
import { metricsRouter } from './observability/metrics-router.js';
import { spanRoute } from './observability/span-route.js';
import { ClientAdapter } from './oidc/client-adapter.js';
import { createKeyCipher } from './oidc/keys/key-cipher.js';
import { MfaService } from './services/mfa.js';
import { SigningKeyService } from './oidc/keys/signing-keys.js';
import { corsPreflight } from './oidc/cors-preflight.js';
import { jsonFormBody } from './oidc/json-form-body.js';
import { createProvider, PROVIDER_ROUTES } from './oidc/provider.js';
import { ProviderHost } from './oidc/provider-host.js';
import { MAX_RESOURCE_TOKEN_TTL_S, ResourceServers } from './oidc/resource-servers.js';
import { managementApi, managementAudience } from './admin/management-api.js';
import { AuditService } from './services/audit.js';
import { analyticsConsumer } from './events/rollups.js';
import { AuthenticationService } from './services/authentication.js';
import { bootstrap } from './services/bootstrap.js';
import { ClientService } from './services/clients.js';
import { DynamicRegistration } from './services/dynamic-registration.js';
import { registrationRouter } from './oidc/registration-endpoint.js';
import { LoginThrottle } from './services/login-throttle.js';
import { createPasswordPolicy } from './services/password-policy.js';
import { createPasswordHasher, type PasswordHasher } from './services/passwords.js';
import { builtInPlans, PlanService } from './services/plans.js';
import { ApiKeyService } from './services/api-keys.js';
import { QuotaService } from './services/quotas.js';
import { API_KEY_CLIENT_ID, apiKeyClient } from './oidc/api-key-grant.js';
import { gatewayRouter } from './gateway/router.js';
import { authorizeRouter } from './gateway/authorize-router.js';
import { forwardAuthRouter, TOKEN_REVOCATIONS_CHANNEL, type Revoked } from './gateway/forward-auth.js';
import { MailDeliveryWorker } from './mail/mail-delivery.js';
import { BackchannelLogoutWorker, logoutTokenSigner } from './oidc/backchannel-delivery.js';
import { BackchannelLogouts } from './services/backchannel-logout.js';
import { AccountTokens } from './mail/account-tokens.js';
import { Mailer } from './mail/mailer.js';
import { PasswordResets } from './services/password-resets.js';
import { Registration } from './services/registration.js';
import { registrationMode } from './config/registration.js';
import { createLogTransport, createSmtpTransport } from './mail/transport.js';
import { BearerAuthenticator } from './admin/bearer-auth.js';
import { DPoPPresentation } from './http/dpop.js';
import { PolicyService } from './services/policies.js';
import { RoleService } from './services/roles.js';
import { UserService } from './services/users.js';
import { ADMIN_SCOPES } from './oidc/scopes.js';
import { readFileSync } from 'node:fs';
import type { GuardedStores } from './store/guarded-stores.js';
import type { JsonObject, Stores } from './store/ports.js';
import { requestLimits } from './http/request-limits.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  stores: Stores;
}

/** Shared by the server and readiness: once shutting down, readiness fails so traffic drains away. */
export interface Lifecycle {
  shuttingDown: boolean;
  /** Set by the server (false until it listens); undefined when something else serves the app (tests). */
  listening?: boolean;
}

export interface AppServices {
  passwords: PasswordHasher;
  signingKeys: SigningKeyService;
  provider: ProviderHost;
  clients: ClientAdapter;
  resourceServers: ResourceServers;
  auth: AuthenticationService;
  clientService: ClientService;
  users: UserService;
  roles: RoleService;
  audit: AuditService;
  /** Counters and histograms served at /metrics (e.g. `metrics.verifyKey(outcome)`). */
  metrics: Metrics;
  plans: PlanService;
  apiKeys: ApiKeyService;
  quotas: QuotaService;
  recorder: EventRecorder;
  webhooks: WebhookService;
  delivery: WebhookDeliveryWorker;
  policies: PolicyService;
  resets: PasswordResets;
  mailer: Mailer;
  mfa: MfaService;
  sso: SsoConnections;
}

export interface BuiltApp {
  app: Koa;
  lifecycle: Lifecycle;
  services: AppServices;
  /** Stops background work (key refresh); the stores are closed by their owner. */
  close(): void;
}

const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** Paths served by oidc-provider; RFC 8414 metadata is the OpenID discovery document. */
const PROVIDER_PATHS =
  /^\/oauth\/|^\/device(\/|$)|^\/\.well-known\/(openid-configuration|oauth-authorization-server)$/;

/** Device flow: code attempts per client address and window (see the device middleware). */
const DEVICE_CODE_ATTEMPTS = 30;
const DEVICE_CODE_WINDOW_S = 900;

/** The longest lifetime of anything signed with a key, so retired keys stay published that long. */
function signedTokenLifetimeS(config: Config): number {
  const longest = Math.max(
    config.idTokenTtlS,
    config.accessTokenTtlS,
    config.clientCredentialsTtlS,
    MAX_RESOURCE_TOKEN_TTL_S,
  );
  return longest + 300; // clock skew between instances and relying parties
}

/** Builds the services shared by the server and the CLI. */
export function createServices(config: Config, stores: Stores, logger: Logger) {
  const secrets = resolveSecrets(config);
  if (secrets.generated.length > 0) {
    logger.warn(
      { settings: secrets.generated, data_dir: config.dataDir },
      'using generated development secrets; set them explicitly for production or for several instances',
    );
  }
  const passwords = createPasswordHasher({
    memoryKib: config.passwordHashMemoryKib,
    timeCost: config.passwordHashTimeCost,
    parallelism: config.passwordHashParallelism,
  });
  const signingKeys = new SigningKeyService(
    stores.durable.signingKeys,
    createKeyCipher(secrets.keyEncryptionSecret),
    {
      activationDelayS: config.signingKeyActivationDelayS,
      retentionS: signedTokenLifetimeS(config),
      log: logger,
    },
  );
  return { secrets, passwords, signingKeys };
}

export async function buildApp(deps: AppDeps): Promise<BuiltApp> {
  const { config, logger } = deps;
  const metrics = new Metrics({ processMetrics: config.metricsEnabled });
  // Services reach storage through timing proxies; the stores' owner still closes the real ones.
  const stores = config.metricsEnabled ? instrumentStores(deps.stores, metrics.storeDuration) : deps.stores;
  const lifecycle: Lifecycle = { shuttingDown: false };
  // Circuit breakers of the backends in use (createStores guards them): state in /health and metrics.
  const guards = 'guards' in deps.stores ? (deps.stores as GuardedStores).guards : [];
  for (const guard of guards) {
    metrics.backendInUse(guard.backend);
    guard.stateChanges.add((state, backend, cause) => {
      metrics.breaker(backend, state);
      if (state === 'open')
        logger.error({ backend, err: cause }, 'store unavailable: failing fast until it answers');
      else logger.info({ backend }, 'store answers again');
    });
  }
  const { secrets, passwords, signingKeys } = createServices(config, stores, logger);

  const throttle = new LoginThrottle(stores.counters, {
    maxFailures: config.loginMaxFailures,
    ipMaxFailures: config.loginIpMaxFailures,
    windowS: config.loginFailureWindowS,
    lockoutBaseS: config.loginLockoutBaseS,
    lockoutMaxS: config.loginLockoutMaxS,
  });
  const audit = new AuditService(stores.durable.audit);
  // Every change the services make is recorded as a domain event in the outbox (src/events);
  // the analytics rollups hear of every recorded event (events/rollups.ts).
  const recorder = new EventRecorder(stores.durable, logger);
  recorder.addConsumer(analyticsConsumer(stores.counters, { sessionTtlSeconds: config.sessionTtlS }));
  const auth = new AuthenticationService(
    stores.durable,
    passwords,
    throttle,
    logger,
    audit,
    (kind) => metrics.login(kind),
    recorder,
  );
  const policy = createPasswordPolicy({
    minLength: config.passwordMinLength,
    minScore: config.passwordMinScore,
  });
  // E-mail: composed into the outbox with the change that sends it, sent by the mail worker.
  const mailTransport = config.smtpUrl
    ? createSmtpTransport({
        url: config.smtpUrl,
        from: config.mailFrom,
        requireTls: config.smtpRequireTls,
        timeoutMs: config.smtpTimeoutMs,
        maxConnections: config.mailConcurrency,
      })
    : config.nodeEnv === 'production'
      ? undefined
      : createLogTransport(logger);
  if (!mailTransport) {
    logger.warn(
      'e-mail is off: SMTP_URL is not set, so no welcome or account e-mail is sent; password reset by e-mail, address confirmation links and invitations are not available (the pages and the API say so)',
    );
  }
  const mailer = new Mailer(createKeyCipher(secrets.keyEncryptionSecret), {
    enabled: mailTransport !== undefined,
    issuer: config.issuer,
    brand: 'Latchkey',
  });
  const users = new UserService(stores.durable, stores.artifacts, passwords, policy, audit, recorder, {
    mailer,
    protectedMetadataKeys: config.protectedMetadataKeys,
    confusableEmails: config.confusableEmails,
    log: logger,
  });
  const roles = new RoleService(stores.durable, audit, recorder);
  const accountTokens = new AccountTokens(stores.artifacts, stores.counters);
  const registration = new Registration(
    stores.durable,
    stores.counters,
    users,
    accountTokens,
    mailer,
    recorder,
    audit,
    {
      issuer: config.issuer,
      mode: registrationMode(config),
      domains: config.registrationDomains,
      requireVerified: config.requireVerifiedEmail,
      verificationTtlS: config.emailVerificationTtlS,
      invitationTtlS: config.invitationTtlS,
      resendPerHour: config.passwordResetPerAddressPerHour,
    },
  );
  users.addressChanges.add((user) => registration.sendLink(user, null, undefined));
  const resets = new PasswordResets(
    stores.durable,
    stores.counters,
    users,
    accountTokens,
    mailer,
    recorder,
    audit,
    {
      issuer: config.issuer,
      ttlS: config.passwordResetTtlS,
      perAddressPerHour: config.passwordResetPerAddressPerHour,
      perIpPerHour: config.passwordResetPerIpPerHour,
      log: logger,
    },
  );
  const issuerUrl = new URL(config.issuer);
  const mfa = new MfaService(
    stores.durable,
    stores.artifacts,
    stores.counters,
    createKeyCipher(secrets.keyEncryptionSecret),
    secrets.keyEncryptionSecret,
    {
      mode: config.mfa,
      requiredRoles: config.mfaRequiredRoles,
      brand: 'Latchkey',
      rpId: config.webauthnRpId ?? issuerUrl.hostname,
      origins: config.webauthnOrigins.length > 0 ? config.webauthnOrigins : [issuerUrl.origin],
    },
    recorder,
    audit,
  );
  const ssoConnections = new SsoConnections(
    stores.durable,
    createKeyCipher(secrets.keyEncryptionSecret),
    audit,
  );
  const policies = new PolicyService(stores.durable, stores.events, audit, {
    cacheTtlMs: config.policyCacheTtlMs,
    decisionLogSampleRate: config.policyDecisionLogSampleRate,
    decisionCacheTtlMs: config.policyDecisionCacheTtlS * 1000,
  });
  // What decisions are built from: a user's roles, and the roles there are.
  users.changes.add((userId) => void policies.userChanged(userId));
  roles.changes.add(() => void policies.rolesChanged());
  const planService = new PlanService(
    stores.durable.plans,
    stores.durable.users,
    builtInPlans({
      requestsPerHour: config.rateLimitEnterprisePerHour,
      burst: config.rateLimitEnterpriseBurst,
    }),
    stores.events,
    audit,
  );
  const apiKeys = new ApiKeyService(stores.durable, stores.events, audit, recorder, {
    cacheTtlMs: config.apiKeyCacheTtlS * 1000,
  });
  users.changes.add((userId) => apiKeys.ownerChanged({ type: 'user', id: userId }));
  // Forward-auth caches token checks: revoked tokens and grants, and changed users, are announced
  // to every instance (the provider reports revocations; the user service, changes).
  // This instance forgets before the answer that revoked; the others when the bus message arrives.
  const revocationListeners = new Set<(revoked: Revoked) => void>();
  const announceRevocation = (revoked: Revoked) => {
    for (const listener of revocationListeners) listener(revoked);
    stores.events.publish(TOKEN_REVOCATIONS_CHANNEL, JSON.stringify(revoked)).catch((err: unknown) => {
      logger.warn(
        { err },
        'could not announce a revocation; caches forget it within GATEWAY_AUTH_CACHE_TTL_S',
      );
    });
  };
  users.changes.add((userId) => announceRevocation({ user: userId }));
  const quotas = new QuotaService(stores.counters);
  const webhookHttp = {
    allowHttp:
      config.webhookAllowHttp === 'auto'
        ? config.nodeEnv !== 'production'
        : config.webhookAllowHttp === 'true',
    allowPrivateNetworks: config.webhookAllowPrivateNetworks,
  };
  const webhooks = new WebhookService(
    stores.durable,
    stores.events,
    createKeyCipher(secrets.keyEncryptionSecret),
    audit,
    recorder,
    webhookHttp,
  );
  recorder.subscribeFrom(webhooks);
  metrics.watchOutbox(() => stores.durable.outbox.pendingStats());
  const delivery = new WebhookDeliveryWorker(stores.durable.outbox, webhooks, {
    ...webhookHttp,
    timeoutMs: config.webhookTimeoutMs,
    schedule: config.webhookRetrySchedule,
    concurrency: config.webhookConcurrency,
    endpointConcurrency: config.webhookEndpointConcurrency,
    disableAfterFailingMs: config.webhookDisableAfterFailingS * 1000,
    pollMs: config.webhookPollMs,
    retentionDays: config.eventRetentionDays,
    userAgent: `Latchkey-Webhooks/${VERSION}`,
    thread: config.webhookDeliveryThread,
    recentEvent: (id) => recorder.recent(id),
    observe: (outcome, seconds) => metrics.webhookDelivery(outcome, seconds),
    log: logger,
  });
  recorder.wakeups.add((endpoints) => delivery.wake(endpoints));
  if (config.webhookDelivery) {
    delivery.start();
    // The deliveries of this instance's own events skip the claim (see EventRecorder.handOffTo).
    recorder.handOffTo(delivery);
  }
  const mailDelivery = mailTransport
    ? new MailDeliveryWorker(stores.durable.outbox, mailer, mailTransport, {
        schedule: config.mailRetrySchedule,
        concurrency: config.mailConcurrency,
        timeoutMs: config.smtpTimeoutMs,
        pollMs: config.webhookPollMs,
        observe: (outcome) => metrics.mailAttempt(outcome),
        log: logger,
      })
    : undefined;
  if (mailDelivery) {
    recorder.wakeups.add((endpoints) => mailDelivery.wake(endpoints));
    if (config.mailDelivery) mailDelivery.start();
  }
  // Back-channel logout: sessions ended by a change to the user tell their clients too (RP-initiated
  // logout comes through the provider, below); the worker starts once the provider is built.
  const backchannelLogouts = new BackchannelLogouts(
    recorder,
    stores.durable.clients,
    stores.artifacts,
    logger,
  );
  users.sessionsEnding.add(async (userId) => {
    await backchannelLogouts.endingSessionsOf(userId, SYSTEM_ACTOR);
  });
  const clients = new ClientAdapter(stores.durable.clients, config.clientCacheTtlS * 1000);
  const resourceServers = new ResourceServers(stores.durable.resourceServers, config.clientCacheTtlS * 1000, [
    // The management API itself: tokens with resource=<issuer>/v2 are JWTs verified in process.
    {
      identifier: managementAudience(config.issuer),
      scopes: ADMIN_SCOPES,
      accessTokenTtlS: config.clientCredentialsTtlS,
    },
  ]);
  // One signer for every signed cookie (ours and the provider's), keys prepared once.
  const cookieSigner = new CookieSigner(secrets.cookieKeys);
  const views = createViews({ brand: 'Latchkey' });
  const pages = providerPages(views);

  const host = new ProviderHost(
    signingKeys,
    (keys) =>
      metrics.observeProvider(
        createProvider({
          config,
          stores,
          keys,
          cookieSigner,
          dpopNonceSecret: Buffer.from(
            hkdfSync('sha256', secrets.keyEncryptionSecret, 'latchkey/dpop-nonces', 'nonce v1', 32),
          ),
          clients,
          resourceServers,
          pages,
          logger,
          onRevoked: (revoked) => announceRevocation(revoked),
          onTokenExchanged: async (exchanged) => {
            await audit.record({
              actor_type: 'client',
              actor_id: exchanged.clientId,
              actor_client_id: exchanged.clientId,
              action: 'token.exchanged',
              target_type: 'user',
              target_id: exchanged.accountId,
              details: {
                subject_client_id: exchanged.subjectClientId,
                subject_token_type: exchanged.subjectTokenType,
                mode: exchanged.actor ? 'delegation' : 'impersonation',
                ...(exchanged.actor ? { actor: exchanged.actor } : {}),
                ...(exchanged.audience ? { audience: exchanged.audience } : {}),
                scope: exchanged.scope,
                expires_in: exchanged.expiresIn,
              },
            });
          },
          onBackchannelLogout: (logout) =>
            backchannelLogouts.enqueue([logout], { type: 'user', id: logout.sub }),
          onSignOut: (signOut) => {
            auth.recordSignOut(signOut).catch((err: unknown) => {
              logger.warn({ err, user_id: signOut.accountId }, 'could not record the sign-out event');
            });
          },
          apiKeys: {
            verify: (key, ip) => apiKeys.verify(key, ip),
            usable: (keyId) => apiKeys.usable(keyId),
            tokenTtlS: config.apiKeyTokenTtlS,
            onIssued: async (verified, token) => {
              await audit.record({
                actor_type: verified.owner.type,
                actor_id: verified.owner.id,
                actor_client_id: API_KEY_CLIENT_ID,
                action: 'api_key.token_issued',
                target_type: 'api_key',
                target_id: verified.key.id,
                details: { token_id: token.jti, scope: token.scope, expires_in: token.expires_in },
              });
            },
          },
        }),
      ),
    logger,
  );
  await host.start(config.signingKeyRefreshIntervalS);
  const backchannelDelivery = new BackchannelLogoutWorker(
    stores.durable.outbox,
    logoutTokenSigner(() => host.current),
    {
      ...webhookHttp,
      timeoutMs: config.backchannelLogoutTimeoutMs,
      schedule: config.backchannelLogoutRetrySchedule,
      pollMs: config.webhookPollMs,
      userAgent: `Latchkey-Logout/${VERSION}`,
      observe: (outcome) => metrics.backchannelLogoutAttempt(outcome),
      givenUp: async ({ logout, deliveryId, attempts, status, error }) => {
        await audit.record({
          actor_type: 'system',
          actor_id: 'backchannel-logout',
          actor_client_id: null,
          action: 'client.backchannel_logout_failed',
          target_type: 'client',
          target_id: logout.clientId,
          details: {
            user_id: logout.sub,
            sid: logout.sid,
            delivery_id: deliveryId,
            attempts,
            last_status: status,
            reason: error,
          },
        });
      },
      log: logger,
    },
  );
  recorder.wakeups.add((endpoints) => backchannelDelivery.wake(endpoints));
  if (config.backchannelLogoutDelivery) backchannelDelivery.start();
  const clientChanges = new Set<(clientId: string) => void>();
  const clientService = new ClientService(
    stores.durable.clients,
    (metadata) => host.current.Client.validate(metadata as never),
    recorder,
    (clientId) => {
      clients.invalidate(clientId);
      for (const listener of clientChanges) listener(clientId);
    },
    { production: config.nodeEnv === 'production' },
  );

  const dynamicRegistration = new DynamicRegistration(
    stores.durable.registrationTokens,
    clientService,
    audit,
    config.dynamicRegistration,
  );

  await bootstrap(
    stores.durable,
    passwords,
    {
      clientId: config.bootstrapAdminClientId,
      clientSecret: config.bootstrapAdminClientSecret,
      adminEmail: config.bootstrapAdminEmail,
      adminPassword: config.bootstrapAdminPassword,
    },
    logger,
  );

  // The provider runs inside this app, on this app's contexts: cookies it sets are signed with these
  // keys and must verify with the same ones when it reads them back through its own context.
  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: config.proxyHops });
  app.keys = cookieSigner;
  app.silent = true; // errors are logged by our middleware, with the request id
  app.on('error', (err) => logger.error({ err }, 'unhandled application error'));

  if (config.metricsEnabled) app.use(httpMetrics(metrics));
  if (config.otelExporterOtlpEndpoint) app.use(spanRoute());
  app.use(requestContext(logger));
  app.use(securityHeaders({ hsts: config.nodeEnv === 'production' }));
  app.use(errorMiddleware(logger));

  // Bounded work: load shedding, a deadline per request, work of departed clients given up.
  app.use(
    requestLimits({
      maxInFlight: config.maxInFlightRequests,
      timeoutMs: config.requestTimeoutMs,
      isProtocolPath: (path) => PROVIDER_PATHS.test(path),
      onShed: (reason) => metrics.requestShed(reason),
    }),
  );

  const providerHandler = host.middleware();
  const preflight = corsPreflight({
    cacheMs: config.clientCacheTtlS * 1000,
    routes: PROVIDER_ROUTES,
    clients: async () => {
      const stored: JsonObject[] = [];
      for (let offset = 0; offset < 100_000; offset += 500) {
        const page = await stores.durable.clients.list({ limit: 500, offset });
        stored.push(...page.map((c) => c.metadata));
        if (page.length < 500) break;
      }
      return [...stored, accountClient(config.issuer) as JsonObject, apiKeyClient() as JsonObject];
    },
  });
  // JSON bodies at these three endpoints reach the provider as the form bodies it reads.
  const jsonBodies = jsonFormBody([
    PROVIDER_ROUTES.token,
    PROVIDER_ROUTES.introspection,
    PROVIDER_ROUTES.revocation,
  ]);
  // Device flow: user codes are 8 characters of 20 (about 2^34.6); the code page takes at most
  // DEVICE_CODE_ATTEMPTS per client address in 15 minutes (counted in the counter store, so on
  // every instance together), and answers 429 after that.
  app.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== PROVIDER_ROUTES.code_verification) return next();
    const tried = await stores.counters.increment(`device:code-entry:${ctx.ip}`, DEVICE_CODE_WINDOW_S);
    if (tried.value <= DEVICE_CODE_ATTEMPTS) return next();
    const t = views.translatorFor(ctx);
    const retryAfter = Math.max(1, Math.ceil((tried.resetAt.getTime() - Date.now()) / 1000));
    views.render(
      ctx,
      'error',
      {
        heading: t('device.heading'),
        message: t('device.error.limited'),
        requestId: String(ctx.state.requestId ?? ''),
      },
      { status: 429, headers: { 'Retry-After': String(retryAfter) } },
    );
  });
  // Dynamic client registration (RFC 7591/7592) is ours, in front of the provider; off, the
  // provider answers /oauth/register with its 404.
  if (config.dynamicRegistration !== 'off') {
    const register = registrationRouter({ registration: dynamicRegistration, issuer: config.issuer });
    app.use(register.routes());
    app.use(allowedMethods(register));
  }
  app.use(async (ctx, next) => {
    if (!PROVIDER_PATHS.test(ctx.path)) return next();
    return preflight(ctx, () => {
      if (ctx.path === '/.well-known/oauth-authorization-server')
        ctx.path = '/.well-known/openid-configuration';
      return jsonBodies(ctx, () => providerHandler(ctx, next));
    });
  });

  const health = healthRouter({
    log: logger,
    isShuttingDown: () => lifecycle.shuttingDown,
    notReadyBecause: () => [
      ...(lifecycle.listening === false ? ['not listening yet'] : []),
      ...(host.publicJwks().length === 0 ? ['signing keys not loaded'] : []),
    ],
    breakers: () => Object.fromEntries(guards.map((g) => [g.backend, g.breaker.state])),
    checks: {
      store: { backend: stores.durable.kind, check: () => stores.durable.ping() },
      artifacts: { backend: stores.artifacts.kind, check: () => stores.artifacts.ping() },
    },
  });
  app.use(health.routes());
  app.use(allowedMethods(health));
  if (config.metricsEnabled) app.use(metricsRouter(metrics, { token: config.metricsToken }).routes());

  const staticFiles = new Router();
  staticFiles.get('/static/styles.css', (ctx) => {
    ctx.type = 'text/css; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = views.stylesheet;
  });
  staticFiles.get('/static/passkeys.js', (ctx) => {
    ctx.type = 'text/javascript; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = views.passkeyScript;
  });
  app.use(staticFiles.routes());

  const csrf = new Csrf(secrets.cookieKeys[0]!);
  const account = accountRouter({ host, views, store: stores.durable, issuer: config.issuer, mfa, csrf });
  app.use(account.routes());
  app.use(allowedMethods(account));

  const v2 = managementApi({
    mfa,
    sso: ssoConnections,
    issuer: config.issuer,
    version: VERSION,
    host,
    store: stores.durable,
    counters: stores.counters,
    clientsCache: clients,
    resourceServers,
    users,
    roles,
    clients: clientService,
    dynamicRegistration,
    audit,
    plans: () => planService.all(),
    planService,
    apiKeys,
    quotas,
    webhooks,
    policies,
    resets,
    registration,
    apiKeyTokenTtlS: config.apiKeyTokenTtlS,
    anonymousRate: {
      requests_per_hour: config.rateLimitAnonymousPerHour,
      burst: config.rateLimitAnonymousBurst,
    },
    log: logger,
  });
  app.use(v2);

  const gateway = gatewayRouter({
    apiKeys,
    plans: planService,
    quotas,
    counters: stores.counters,
    usage: stores.durable.usage,
    storeMessages: config.usageStoreMessages,
    onVerify: (outcome) => metrics.verifyKey(outcome),
  });
  app.use(gateway.routes());
  app.use(allowedMethods(gateway));

  // DPoP-bound tokens at our own resource endpoints: each proof taken once across instances.
  const dpop = new DPoPPresentation(stores.counters);
  const decisions = authorizeRouter({
    policies,
    dpop,
    issuer: config.issuer,
    authenticator: new BearerAuthenticator(host, stores.durable, config.issuer, (keyId) =>
      apiKeys.usable(keyId),
    ),
    events: stores.events,
    cacheTtlMs: config.policyDecisionCacheTtlS * 1000,
  });
  // Kept callers: revocations and changed users (announced), changed clients and roles (here).
  revocationListeners.add((revoked) => decisions.forget(revoked));
  clientChanges.add((clientId) => decisions.forget({ client: clientId }));
  roles.changes.add(() => decisions.forget({ everyUser: true }));
  app.use(decisions.routes());
  app.use(allowedMethods(decisions));

  const forwardAuth = forwardAuthRouter({
    host,
    users: stores.durable.users,
    apiKeys,
    policies,
    events: stores.events,
    dpop,
    issuer: config.issuer,
    cacheTtlMs: config.gatewayAuthCacheTtlS * 1000,
    resourcePattern: config.gatewayResourcePattern,
  });
  revocationListeners.add((revoked) => forwardAuth.forget(revoked));
  app.use(forwardAuth.routes());

  const ssoHttp = {
    allowHttp:
      config.ssoAllowHttp === 'auto' ? config.nodeEnv !== 'production' : config.ssoAllowHttp === 'true',
    allowPrivateNetworks: config.ssoAllowPrivateNetworks,
    timeoutMs: config.ssoTimeoutMs,
  };
  const federation = new Federation(
    stores.durable,
    stores.artifacts,
    stores.counters,
    ssoConnections,
    users,
    audit,
    { issuer: config.issuer, sessionTtlS: config.sessionTtlS, http: ssoHttp },
  );
  const saml = new SamlServiceProvider(
    stores.artifacts,
    stores.counters,
    new SamlKeys(
      stores.durable.signingKeys,
      createKeyCipher(secrets.keyEncryptionSecret),
      `Latchkey SAML SP ${issuerUrl.host}`,
    ),
    new IdpMetadataSource({ http: ssoHttp, refreshS: config.ssoSamlMetadataRefreshS, log: logger }),
    federation,
    { issuer: config.issuer, clockSkewS: config.ssoSamlClockSkewS },
  );
  const sso = ssoRouter({ host, views, auth, federation, saml, issuer: config.issuer });
  const interactions = interactionsRouter({
    sso: signInRedirects(ssoConnections),
    host,
    views,
    csrf,
    auth,
    users,
    resets,
    registration,
    mfa,
    invitationSignIn: () => accountSignInUrl(config.issuer, { prompt: 'login' }),
  });
  app.use(interactionErrors(views, logger));
  app.use(interactions.routes());
  app.use(allowedMethods(interactions));
  app.use(sso.routes());
  app.use(allowedMethods(sso));

  return {
    app,
    lifecycle,
    services: {
      passwords,
      signingKeys,
      provider: host,
      clients,
      resourceServers,
      auth,
      clientService,
      users,
      roles,
      mfa,
      sso: ssoConnections,
      audit,
      metrics,
      plans: planService,
      apiKeys,
      quotas,
      recorder,
      webhooks,
      delivery,
      policies,
      resets,
      mailer,
    },
    close: async () => {
      forwardAuth.close();
      decisions.close();
      await Promise.all([delivery.stop(), mailDelivery?.stop(), backchannelDelivery.stop()]);
      await host.stop();
    },
  };
}
