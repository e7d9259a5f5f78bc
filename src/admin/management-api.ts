/**
 * Assembles /v2: JSON body parsing, bearer authentication, RFC 6750 challenges, rate limits, the
 * resource routers, and the OpenAPI document with its reference page. The pipeline is visible here
 * in the order every request runs it.
 */
import Router from '@koa/router';
import type { Context, Middleware, Next } from 'koa';
import compose from 'koa-compose';
import type { Logger } from 'pino';

import { AppError } from '../errors/app-error.js';
import { allowedMethods } from '../http/allowed-methods.js';
import { DPoPPresentation, DPoPRefusal, dpopChallenge, usesDPoPScheme } from '../http/dpop.js';
import { jsonBody } from '../http/json-body.js';
import type { ClientAdapter } from '../oidc/client-adapter.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { ResourceServers } from '../oidc/resource-servers.js';
import { ADMIN_SCOPES, ADMIN_SCOPE_DESCRIPTIONS } from '../oidc/scopes.js';
import type { AuditService } from '../services/audit.js';
import type { ApiKeyService } from '../services/api-keys.js';
import type { ClientService } from '../services/clients.js';
import type { PlanService } from '../services/plans.js';
import type { QuotaService } from '../services/quotas.js';
import { DEFAULT_PLAN, type RatePlan } from '../services/plans.js';
import type { RoleService } from '../services/roles.js';
import type { UserService } from '../services/users.js';
import type { CounterStore, DurableStore } from '../store/ports.js';
import { ApiRouter } from './api-router.js';
import { AnalyticsService } from '../services/analytics.js';
import { registerAnalyticsRoutes } from './analytics-routes.js';
import { registerAuditRoutes } from './audit-routes.js';
import { registerBillingRoutes } from './billing-routes.js';
import { BearerAuthenticator, managementAudience, resolvePrincipal } from './bearer-auth.js';
import { registerClientRoutes, registerResourceRoutes } from './clients-routes.js';
import { registerRegistrationTokenRoutes } from './registration-tokens-routes.js';
import type { DynamicRegistration } from '../services/dynamic-registration.js';
import { renderDocsPage } from './docs-page.js';
import { buildOpenApi } from './openapi.js';
import { rateLimit } from './rate-limit.js';
import { registerPolicyRoutes } from './policies-routes.js';
import { DECISION_ROUTES } from '../gateway/authorize-router.js';
import { registerRoleRoutes } from './roles-routes.js';
import type { PasswordResets } from '../services/password-resets.js';
import type { Registration } from '../services/registration.js';
import { registerInvitationRoutes } from './invitations-routes.js';
import { registerMailRoutes } from './mail-routes.js';
import { registerWebhookRoutes } from './webhooks-routes.js';
import type { WebhookService } from '../services/webhooks.js';
import type { PolicyService } from '../services/policies.js';
import { registerUserRoutes } from './users-routes.js';
import { registerMfaRoutes } from './mfa-routes.js';
import { registerSsoRoutes } from './sso-routes.js';
import type { SsoConnections } from '../sso/connections.js';
import type { MfaService } from '../services/mfa.js';

export interface ManagementApiDeps {
  issuer: string;
  /** Password reset by e-mail (POST /v2/users/{id}/password-reset {"send_email": true}). */
  resets?: PasswordResets;
  /** Invitations to sign up (POST /v2/invitations). */
  registration?: Registration;
  /** Users' second factors (GET and DELETE /v2/users/{id}/mfa). */
  mfa?: MfaService;
  sso?: SsoConnections;
  version: string;
  host: ProviderHost;
  store: DurableStore;
  counters: CounterStore;
  clientsCache: ClientAdapter;
  resourceServers: ResourceServers;
  users: UserService;
  roles: RoleService;
  clients: ClientService;
  /** Initial access tokens for dynamic client registration (/v2/clients/registration-tokens). */
  dynamicRegistration?: DynamicRegistration;
  audit: AuditService;
  plans: () => Promise<Record<string, RatePlan>>;
  planService: PlanService;
  apiKeys: ApiKeyService;
  quotas: QuotaService;
  webhooks: WebhookService;
  policies: PolicyService;
  /** Lifetime of access tokens exchanged for API keys (seconds). */
  apiKeyTokenTtlS: number;
  /** The budget of callers without a valid token, counted per address. */
  anonymousRate: { requests_per_hour: number; burst: number };
  log: Logger;
}

/** RFC 6750 challenges on 401 and 403 answers. */
export function bearerChallenges(issuer: string) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof AppError) {
        const realm = `realm="${issuer}"`;
        if (err instanceof DPoPRefusal || (err.status === 401 && usesDPoPScheme(ctx))) {
          ctx.set('WWW-Authenticate', dpopChallenge(issuer, err));
        } else if (err.code === 'AUTH_TOKEN_MISSING') ctx.set('WWW-Authenticate', `Bearer ${realm}`);
        else if (err.code === 'AUTH_TOKEN_INVALID' || err.code === 'AUTH_TOKEN_EXPIRED') {
          ctx.set(
            'WWW-Authenticate',
            `Bearer ${realm}, error="invalid_token", error_description="${err.message.replace(/"/g, "'")}"`,
          );
        } else if (err.code === 'AUTH_INSUFFICIENT_SCOPE') {
          ctx.set(
            'WWW-Authenticate',
            `Bearer ${realm}, error="insufficient_scope", scope="${err.requiredScope ?? ''}"`,
          );
        }
      }
      throw err;
    }
  };
}

export function managementApi(deps: ManagementApiDeps): Middleware {
  const api = new ApiRouter(deps.log);
  // Reads the rollups that the analytics consumer (events/rollups.ts) keeps in the counter store.
  const analytics = new AnalyticsService(deps.counters, deps.store.users);
  registerUserRoutes(api, deps.users, analytics, deps.resets, (ids) =>
    deps.store.ssoConnections.listIdentitiesOf(ids),
  );
  registerInvitationRoutes(api, deps.registration);
  if (deps.mfa) registerMfaRoutes(api, deps.users, deps.mfa);
  registerRoleRoutes(api, deps.roles);
  registerClientRoutes(api, { clients: deps.clients, plans: deps.plans, audit: deps.audit });
  if (deps.dynamicRegistration) registerRegistrationTokenRoutes(api, deps.dynamicRegistration);
  registerResourceRoutes(api, {
    repo: deps.store.resourceServers,
    invalidate: (identifier) => deps.resourceServers.invalidate(identifier),
    audit: deps.audit,
    reserved: [managementAudience(deps.issuer)],
  });
  registerAuditRoutes(api, deps.audit);
  registerWebhookRoutes(api, deps.webhooks);
  registerMailRoutes(api, deps.store);
  registerAnalyticsRoutes(api, analytics);
  registerPolicyRoutes(api, deps.policies);
  if (deps.sso) registerSsoRoutes(api, deps.sso);
  registerBillingRoutes(api, {
    apiKeys: deps.apiKeys,
    plans: deps.planService,
    quotas: deps.quotas,
    users: deps.users,
    store: deps.store,
    host: deps.host,
    audit: deps.audit,
    tokenTtlS: deps.apiKeyTokenTtlS,
  });

  const openapi = buildOpenApi([...api.routes, ...DECISION_ROUTES], {
    issuer: deps.issuer,
    version: deps.version,
    scopes: Object.fromEntries(ADMIN_SCOPES.map((s) => [s, ADMIN_SCOPE_DESCRIPTIONS[s]])),
  });
  const docs = renderDocsPage(openapi);

  const authenticator = new BearerAuthenticator(deps.host, deps.store, deps.issuer, (keyId) =>
    deps.apiKeys.usable(keyId),
  );
  const anonymous: RatePlan = { name: 'anonymous', ...deps.anonymousRate };
  const planFor = async (clientId: string | undefined): Promise<RatePlan> => {
    if (!clientId) return anonymous;
    const plans = await deps.plans();
    const metadata = await deps.clientsCache.find(clientId);
    const name = typeof metadata?.plan === 'string' ? metadata.plan : DEFAULT_PLAN;
    return plans[name] ?? plans[DEFAULT_PLAN]!;
  };

  const routes = new Router({ prefix: '/v2' });
  routes.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = openapi;
  });
  routes.get('/docs', (ctx) => {
    ctx.type = 'text/html; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.set(
      'Content-Security-Policy',
      "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    );
    ctx.body = docs;
  });
  routes.use(api.router.routes());

  // Every request under /v2, matched or not, runs the whole pipeline (so even a 404 is counted and
  // carries the rate-limit headers). The request is counted before its body is read: a refused body
  // (too large, not JSON, not UTF-8) still costs its sender a request and carries the headers.
  const pipeline = compose([
    resolvePrincipal(authenticator, new DPoPPresentation(deps.counters), deps.issuer),
    bearerChallenges(deps.issuer),
    rateLimit({ counters: deps.counters, planFor }),
    jsonBody({ limit: 1024 * 1024 }),
    allowedMethods(routes),
    routes.routes() as unknown as Middleware,
  ]) as Middleware;
  // /v2 ends here: nothing mounted after it (HTML pages, other routers) runs for a /v2 path.
  const terminal = async () => {};
  const middleware: Middleware = (ctx, next) =>
    ctx.path === '/v2' || ctx.path.startsWith('/v2/') ? pipeline(ctx, terminal) : next();
  // The router stays reachable for introspection (the OpenAPI test compares it with the document).
  return Object.assign(middleware, { router: routes });
}

export { managementAudience };
