/**
 * Builds the oidc-provider instance from our configuration: which endpoints and grants exist, the
 * RFC 9700 rules (code + PKCE S256 only, exact redirect URIs, refresh-token rotation and reuse
 * detection), where clients, accounts, resource servers and artifacts come from, and how its pages
 * and events are rendered and logged. Everything a deployment could get wrong is decided here.
 */
import { createHash } from 'node:crypto';

import type { Context } from 'koa';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { JWK } from 'jose';
import type { Logger } from 'pino';

import { accountClient } from '../account/router.js';
import {
  apiKeyClient,
  apiKeyTokenUsable,
  registerApiKeyGrant,
  type ApiKeyTokenDeps,
} from './api-key-grant.js';
import type { Config } from '../config/load-config.js';
import type { Stores, User } from '../store/ports.js';
import { createFindAccount, isActiveUser } from './accounts.js';
import type { ClientAdapter } from './client-adapter.js';
import { verifyClientSecret } from './client-secrets.js';
import type { KeySet } from './keys/signing-keys.js';
import type { CookieSigner } from '../http/cookie-signer.js';
import { loadExistingGrant } from './first-party-grant.js';
import { registrationOpen } from '../config/registration.js';
import { createInteractionPolicy } from './interaction-policy.js';
import { ACR_VALUES } from '../services/mfa.js';
import type { ResourceServers } from './resource-servers.js';
import {
  registerTokenExchangeGrant,
  validateTokenExchangePolicy,
  type TokenExchanged,
} from './token-exchange.js';
import { outageFacts } from '../errors/error-middleware.js';
import { protocolFacing, protocolStores } from './unavailable.js';
import { isStoreOutage } from '../store/errors.js';
import { ADMIN_SCOPES, OIDC_SCOPE_CLAIMS, OIDC_SCOPES } from './scopes.js';

/** Every provider endpoint lives under this prefix; discovery stays at /.well-known. */
export const OAUTH_PREFIX = '/oauth';

/** The polling interval devices are given (oidc-provider's), in seconds. */
const DEVICE_POLL_INTERVAL_S = 5;

export const PROVIDER_ROUTES = {
  authorization: `${OAUTH_PREFIX}/authorize`,
  token: `${OAUTH_PREFIX}/token`,
  userinfo: `${OAUTH_PREFIX}/userinfo`,
  introspection: `${OAUTH_PREFIX}/introspect`,
  revocation: `${OAUTH_PREFIX}/revoke`,
  jwks: `${OAUTH_PREFIX}/jwks`,
  end_session: `${OAUTH_PREFIX}/logout`,
  pushed_authorization_request: `${OAUTH_PREFIX}/par`,
  device_authorization: `${OAUTH_PREFIX}/device/auth`,
  // Short, for people to type in from a TV or a terminal (RFC 8628 §3.3).
  code_verification: '/device',
  backchannel_authentication: `${OAUTH_PREFIX}/backchannel`,
  registration: `${OAUTH_PREFIX}/register`,
  challenge: `${OAUTH_PREFIX}/challenge`,
} as const;

/** Pages the provider asks us to render; implemented by the interactions module. */
export interface ProviderPages {
  renderError(
    ctx: KoaContextWithOIDC,
    out: { error: string; error_description?: string },
    error: unknown,
  ): Promise<void>;
  logoutSource(ctx: KoaContextWithOIDC, form: string): Promise<void>;
  postLogoutSuccessSource(ctx: KoaContextWithOIDC): Promise<void>;
  /** Device flow (RFC 8628): the page asking for the code shown on the device. */
  deviceCodeInput(ctx: KoaContextWithOIDC, form: string, err?: unknown): Promise<void>;
  /** Device flow: "is this the code on your device?", before sign-in and consent. */
  deviceCodeConfirm(
    ctx: KoaContextWithOIDC,
    form: string,
    clientName: string,
    userCode: string,
  ): Promise<void>;
  /** Device flow: done, go back to the device. */
  deviceSuccess(ctx: KoaContextWithOIDC): Promise<void>;
}

export interface ProviderDeps {
  config: Config;
  stores: Stores;
  keys: KeySet;
  /** Signs and verifies the provider's cookies (a keygrip-compatible signer, see cookie-signer.ts). */
  cookieSigner: CookieSigner;
  /** 32 bytes the DPoP nonces are made with (the same on every instance, so any one checks them). */
  dpopNonceSecret?: Buffer;
  clients: ClientAdapter;
  resourceServers: ResourceServers;
  pages: ProviderPages;
  logger: Logger;
  /** API-key tokens (api-key-grant.ts); without it the grant is not offered. */
  apiKeys?: ApiKeyTokenDeps;
  /** Told when a browser session ends by sign-out (the user.logout event); must not throw. */
  onSignOut?: (signOut: SignOut) => void;
  /**
   * RP-initiated logout ended a session these clients (with a backchannel_logout_uri) were part of:
   * store their logouts durably (services/backchannel-logout.ts); nothing is sent from the request.
   */
  onBackchannelLogout?: (logout: { clientId: string; sub: string; sid: string }) => Promise<void>;
  /** A token (by jti) was revoked, or a whole grant: caches of token checks must forget them. */
  onRevoked?: (revoked: { jti?: string; grant?: string }) => void;
  /** A token was issued by token exchange (RFC 8693), for the audit trail. */
  onTokenExchanged?: (exchanged: TokenExchanged) => void | Promise<void>;
}

export interface SignOut {
  accountId: string;
  /** When the session began (its sign-in), if known. */
  signedInAt: Date | null;
  sessionId: string | null;
  ipAddress: string | null;
  userAgent: string | null;
}

/** The endpoints where clients authenticate themselves. */
const CLIENT_AUTH_ROUTES = new Set(['token', 'introspection', 'revocation']);

/** Extra client metadata we store with each client. */
export const EXTRA_CLIENT_METADATA = [
  'first_party',
  'require_pkce',
  'plan',
  'api_scopes',
  'token_exchange',
] as const;

function isClientCredentials(ctx: KoaContextWithOIDC): boolean {
  return ctx.oidc.route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials';
}

/** invalid_scope naming the requested scopes not in `allowed`; nothing is dropped silently. */
function refuseUngrantedScopes(requested: unknown, allowed: ReadonlySet<string>): void {
  if (typeof requested !== 'string') return;
  const refused = [...new Set(requested.split(' ').filter(Boolean))].filter((s) => !allowed.has(s));
  if (refused.length > 0) {
    throw new errors.InvalidScope(`requested scope is not allowed: ${refused.join(' ')}`, refused.join(' '));
  }
}

function logFor(ctx: unknown, fallback: Logger): Logger {
  return ((ctx as Context | undefined)?.state?.log as Logger | undefined) ?? fallback;
}

export function createProvider(deps: ProviderDeps): Provider {
  const { config, logger } = deps;
  // What the provider's code reads or writes, a store outage is its temporarily_unavailable (503).
  const stores = protocolStores(deps.stores);
  const clientsSource = protocolFacing(deps.clients);
  const findAccount = createFindAccount(stores.durable, stores.artifacts);

  const configuration: Configuration = {
    adapter: (name: string) => (name === 'Client' ? clientsSource : stores.artifacts.adapterFor(name)),
    findAccount,
    claims: {
      ...Object.fromEntries(Object.entries(OIDC_SCOPE_CLAIMS).map(([scope, claims]) => [scope, [...claims]])),
      // The ID tokens of clients registered for back-channel logout carry `sid` (Client#includeSid
      // below), the session id their logout tokens name.
      sid: null,
      // Every ID token says how the sign-in was made (RFC 8176 amr: pwd, otp, hwk, swk, mfa) and,
      // unless MFA=off, at what level (acr, services/mfa.ts): both come from the session's login,
      // never from the account, so userinfo does not carry them.
      // A sign-in through an upstream identity provider (amr `fed`) names its connection (`idp`).
      openid: [...OIDC_SCOPE_CLAIMS.openid, 'amr', ...(config.mfa !== 'off' ? ['acr'] : []), 'idp'],
    },
    // Single sign-on: `idp_hint` (a connection id or domain) reaches the sign-in page.
    extraParams: ['idp_hint'],
    scopes: [...OIDC_SCOPES, ...ADMIN_SCOPES],
    // The ID token carries the claims of the granted scopes (email and email_verified with `email`,
    // the profile claims with `profile`), not only the protocol claims: relying parties read
    // email_verified from it without a userinfo call.
    conformIdTokenClaims: false,
    // What a sign-in showed (services/mfa.ts): one factor, or two. Off with MFA=off.
    ...(config.mfa !== 'off' ? { acrValues: [...ACR_VALUES] } : {}),
    jwks: { keys: deps.keys.providerJwks as never },
    cookies: {
      // oidc-provider hands this to Koa's cookies, which accept a keygrip-like object as well as a list.
      keys: deps.cookieSigner as never,
      names: { session: '_lk_session', interaction: '_lk_interaction', resume: '_lk_resume' },
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    routes: PROVIDER_ROUTES,
    // Authorization code only: no implicit or hybrid flows, and no `none` (the built-in account page
    // uses code too, see account/router.ts), so discovery advertises only what a client may use.
    responseTypes: ['code'],
    clients: [accountClient(config.issuer), ...(deps.apiKeys ? [apiKeyClient()] : [])],
    pkce: {
      // Required for public clients; on for confidential ones unless a client opts out explicitly.
      required: (_ctx, client) => client.clientAuthMethod === 'none' || client['require_pkce'] !== false,
    },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'ES256'],
      userinfoSigningAlgValues: ['RS256', 'ES256'],
      introspectionSigningAlgValues: ['RS256', 'ES256'],
      authorizationSigningAlgValues: ['RS256', 'ES256'],
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      requestObjectSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      dPoPSigningAlgValues: ['ES256', 'EdDSA', 'RS256', 'PS256'],
    },
    ttl: {
      // A registered API's own token lifetime applies to user tokens for it, as to client credentials.
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtlS,
      AuthorizationCode: config.authorizationCodeTtlS,
      ClientCredentials: (_ctx, token) =>
        token.resourceServer?.accessTokenTTL ?? config.clientCredentialsTtlS,
      IdToken: config.idTokenTtlS,
      RefreshToken: (ctx, token) => {
        // A rotated, unbound refresh token inherits what is left of its predecessor's lifetime, so a
        // chain of rotations (public clients rotate on every use) cannot outlive the first token.
        const rotated = ctx?.oidc?.entities?.RotatedRefreshToken;
        if (rotated && !token.isSenderConstrained()) return rotated.remainingTTL;
        return config.refreshTokenTtlS;
      },
      Session: config.sessionTtlS,
      Interaction: config.interactionTtlS,
      Grant: config.grantTtlS,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
    },
    // First-party clients get what they ask for without a consent interaction (first-party-grant.ts).
    loadExistingGrant,
    interactions: {
      policy: createInteractionPolicy({ signUp: registrationOpen(config), stepUp: config.mfa !== 'off' }),
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    extraClientMetadata: {
      properties: [...EXTRA_CLIENT_METADATA],
      validator(_ctx, key, value, metadata) {
        if (key === 'token_exchange') {
          validateTokenExchangePolicy(value, metadata as Record<string, unknown>);
          return;
        }
        if (value === undefined) return;
        if (key === 'api_scopes') {
          if (
            !Array.isArray(value) ||
            !value.every((v) => typeof v === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(v))
          ) {
            throw new errors.InvalidClientMetadata('api_scopes must be an array of scope tokens');
          }
          return;
        }
        if (key === 'plan' ? typeof value !== 'string' : typeof value !== 'boolean') {
          throw new errors.InvalidClientMetadata(`${key} must be a ${key === 'plan' ? 'string' : 'boolean'}`);
        }
      },
    },
    // A client registered without `scope` may ask only for the OpenID Connect scopes: management
    // scopes (and anything else this server knows) must be granted to a client explicitly.
    clientDefaults: {
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: 'RS256',
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: OIDC_SCOPES.join(' '),
    },
    clientBasedCORS(ctx, origin, client) {
      // Browsers may call the token, userinfo, revocation and introspection endpoints only from the
      // origins of a client's own redirect URIs, and only for public clients (and userinfo).
      if (origin === 'null') return false;
      if (ctx.oidc.route === 'userinfo' || client.clientAuthMethod === 'none') {
        return client.redirectUris?.some((uri) => URL.parse(uri)?.origin === origin) ?? false;
      }
      return false;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        async allowedPolicy(ctx, client, token) {
          // Introspection is for authenticated clients (resource servers and gateways) only.
          if (client.clientAuthMethod === 'none') return false;
          // A token of a client that has since been deleted is no longer active. (The client asking
          // was just loaded to authenticate it: when the token is its own, there is nothing to look up.)
          if (token.clientId !== client.clientId && !(await ctx.oidc.provider.Client.find(token.clientId!)))
            return false;
          // A suspended or deleted user's tokens are reported inactive at once.
          const accountId = 'accountId' in token ? token.accountId : undefined;
          if (accountId) {
            const user = await stores.durable.users.findById(accountId);
            if (!isActiveUser(user)) return false;
            (ctx as unknown as Context).state.introspectedUser = user;
          }
          // A token minted from an API key lives only as long as the key.
          if (deps.apiKeys && !(await apiKeyTokenUsable(token as never, deps.apiKeys.usable))) return false;
          return true;
        },
      },
      revocation: {
        enabled: true,
        async allowedPolicy(_ctx, client, token) {
          if (token.clientId !== client.clientId) {
            if (client.clientAuthMethod === 'none') return false;
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
      // Back-Channel Logout 1.0: client metadata (backchannel_logout_uri, _session_required),
      // discovery and `sid`; delivery is ours (Client#backchannelLogout below).
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => deps.pages.logoutSource(ctx, form),
        postLogoutSuccessSource: (ctx) => deps.pages.postLogoutSuccessSource(ctx),
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => {
          // Client credentials without a resource: every requested scope must be in the client's
          // `scope` (oidc-provider would drop the ones it does not know without a word).
          if (isClientCredentials(ctx) && ctx.oidc.params?.resource === undefined && !oneOf) {
            refuseUngrantedScopes(ctx.oidc.params?.scope, new Set(client.scope?.split(' ') ?? []));
          }
          return oneOf ?? undefined;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator, client) => {
          const forClientItself = isClientCredentials(ctx);
          const info = await deps.resourceServers.infoFor(indicator, client, forClientItself);
          // With a resource, a client acting for itself may also ask for the API scopes it is granted;
          // a scope it may not have at all is refused (a scope it has that the API does not define is
          // left out of the API's token).
          if (forClientItself) {
            refuseUngrantedScopes(
              ctx.oidc.params?.scope,
              new Set([...(client.scope?.split(' ') ?? []), ...info.scope.split(' ')]),
            );
          }
          return info;
        },
      },
      userinfo: { enabled: true },
      // Dynamic registration is served by our own routes (oidc/registration-endpoint.ts), through
      // the client service; discovery names it below when DYNAMIC_REGISTRATION is on.
      registration: { enabled: false },
      // Signed request objects (JAR, RFC 9101) from clients with keys (jwks / jwks_uri); a client may
      // be registered to require them (require_signed_request_object), or to require PAR
      // (require_pushed_authorization_requests). JWT introspection responses (RFC 9701) for clients
      // registered with introspection_signed_response_alg.
      requestObjects: { enabled: true, requireSignedRequestObject: false },
      jwtIntrospection: { enabled: true },
      // DPoP (RFC 9449): proofs bind tokens to the client's key; the server hands out nonces
      // (DPoP-Nonce) and, with DPOP_REQUIRE_NONCE, refuses proofs without a fresh one. A proof's jti
      // is taken once across instances (ReplayDetection.unique below). Clients registered with
      // dpop_bound_access_tokens must send proofs.
      dPoP: {
        enabled: true,
        ...(deps.dpopNonceSecret ? { nonceSecret: deps.dpopNonceSecret } : {}),
        requireNonce: () => config.dpopRequireNonce,
        allowReplay: false,
      },
      // Device authorization grant (RFC 8628) for clients registered with its grant type: user codes
      // of 8 consonants (no vowels, no look-alike digits) shown as XXXX-XXXX, our own pages.
      deviceFlow: {
        enabled: true,
        charset: 'base-20',
        mask: '****-****',
        userCodeInputSource: (ctx, form, _out, err) => deps.pages.deviceCodeInput(ctx, form, err),
        userCodeConfirmSource: (ctx, form, client, _info, userCode) =>
          deps.pages.deviceCodeConfirm(ctx, form, client.clientName ?? client.clientId, userCode),
        successSource: (ctx) => deps.pages.deviceSuccess(ctx),
      },
    },
    // Keep what a token was created with (api_key_id on tokens minted from API keys, see
    // api-key-grant.ts); introspection reports it. Other tokens carry no extra claims.
    extraTokenClaims: (_ctx, token) =>
      'extra' in token ? (token.extra as Record<string, unknown>) : undefined,
    renderError: (ctx, out, error) => deps.pages.renderError(ctx, out, error),
    discovery: {
      service_documentation: `${config.issuer}/v2/docs`,
      claim_types_supported: ['normal'],
      // OpenID Connect Prompt Create: `create` is offered only while sign-up is open.
      prompt_values_supported: ['none', 'login', 'consent', ...(registrationOpen(config) ? ['create'] : [])],
      ...(config.dynamicRegistration !== 'off'
        ? { registration_endpoint: `${config.issuer}${PROVIDER_ROUTES.registration}` }
        : {}),
    },
  };

  const provider = new Provider(config.issuer, configuration);
  provider.proxy = config.trustProxy;
  // One use of a proof (DPoP) or client assertion (private_key_jwt) jti, atomically on every instance:
  // oidc-provider's own check reads, then writes, so two instances could both accept one proof.
  const replays = deps.stores.counters;
  (
    provider.ReplayDetection as unknown as { unique(iss: string, jti: string, exp: number): Promise<boolean> }
  ).unique = async (iss, jti, exp) => {
    const key = `replay:${createHash('sha256').update(`${iss}\n${jti}`).digest('base64url')}`;
    const lifetime = Math.max(1, Math.ceil(exp - Date.now() / 1000)) + 60;
    return (await replays.increment(key, lifetime)).value === 1;
  };
  if (deps.apiKeys) registerApiKeyGrant(provider, deps.apiKeys);
  registerTokenExchangeGrant(provider, {
    resourceServers: deps.resourceServers,
    publicJwks: () => deps.keys.keys.map((k) => k.record.public_jwk as JWK),
    userActive: async (accountId) => isActiveUser(await stores.durable.users.findById(accountId)),
    ...(deps.apiKeys ? { apiKeyUsable: deps.apiKeys.usable } : {}),
    ...(deps.onTokenExchanged ? { onExchanged: deps.onTokenExchanged } : {}),
  });

  // Clients hold a hash of their secret (client-secrets.ts); compare presented secrets against it.
  provider.Client.prototype.compareClientSecret = function compareClientSecret(
    this: { clientSecret?: string },
    actual: string,
  ) {
    return Promise.resolve(verifyClientSecret(this.clientSecret ?? '', actual));
  } as never;

  // Back-channel logout: oidc-provider would POST each logout token from the logout request itself,
  // once, without retries. Instead the logout goes into the durable outbox and the delivery worker
  // (backchannel-delivery.ts) signs and sends it through the outbound client, retrying.
  provider.Client.prototype.backchannelLogout = async function backchannelLogout(
    this: { clientId: string },
    sub: string,
    sid: string,
  ) {
    if (!deps.onBackchannelLogout) throw new Error('back-channel logout delivery is not configured');
    await deps.onBackchannelLogout({ clientId: this.clientId, sub, sid });
  } as never;
  // `sid` in the ID tokens (and the codes and tokens it is copied from) of every client registered
  // for back-channel logout, not only of those requiring it in logout tokens (oidc-provider's rule):
  // the logout tokens name the session whenever it is known, and the client matches them by it.
  // Other clients' tokens stay as they were.
  provider.Client.prototype.includeSid = function includeSid(this: { backchannelLogoutUri?: string }) {
    return Boolean(this.backchannelLogoutUri);
  } as never;
  provider.on('backchannel.error', (ctx, err, client) => {
    logFor(ctx, logger).error(
      { err, client_id: client.clientId },
      'could not queue a back-channel logout; the client is not told',
    );
  });

  // RP-initiated logout is a page a browser is sent to, never an API: its errors (an unregistered
  // post_logout_redirect_uri, a bad id_token_hint) are our HTML error page whatever the request
  // accepts. oidc-provider renders HTML only when Accept prefers it over JSON (not for `*/*`).
  provider.use(async (ctx, next) => {
    if (ctx.path === PROVIDER_ROUTES.end_session || ctx.path.startsWith(`${PROVIDER_ROUTES.end_session}/`)) {
      ctx.request.headers.accept = 'text/html';
    }
    await next();
  });
  // A store outage answers 503 temporarily_unavailable with Retry-After, whichever code met it:
  // errors thrown through protocolStores already are; one from elsewhere (a service the provider's
  // hooks call) is rewritten here, after the provider rendered it as server_error.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.status === 503) {
      ctx.set('Retry-After', '1');
      ctx.state.unavailableCause ??= 'store';
    }
  });
  // RFC 6749 §5.2: a request that brings no client authentication at all is invalid_client with
  // 401 and a challenge, where oidc-provider answers 400 invalid_request. Only that one error (by its
  // description, pinned by test/oidc/client-compat.test.ts) is rewritten; every other stays as it is.
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { error?: unknown; error_description?: unknown } | undefined;
    if (
      ctx.status === 400 &&
      CLIENT_AUTH_ROUTES.has(String(ctx.oidc?.route)) &&
      body?.error === 'invalid_request' &&
      body.error_description === 'no client authentication mechanism provided'
    ) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', `Basic realm="${provider.issuer}"`);
      ctx.body = { error: 'invalid_client', error_description: 'client authentication is required' };
    }
    // A device authorization request of a client not registered for the grant: RFC 8628 §3.2 answers
    // with the token endpoint's errors (RFC 6749 §5.2), that is unauthorized_client.
    if (
      ctx.status === 400 &&
      ctx.oidc?.route === 'device_authorization' &&
      body?.error === 'invalid_request' &&
      typeof body.error_description === 'string' &&
      body.error_description.endsWith('is not allowed for this client')
    ) {
      ctx.body = { ...body, error: 'unauthorized_client' };
    }
  });
  // RFC 8628 §3.5 slow_down, which oidc-provider never sends: a device asking again about a pending
  // code sooner than `interval` after its last poll is told to slow down (one counter per device
  // code in the counter store, so polls to different instances count together).
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { error?: unknown } | undefined;
    if (ctx.oidc?.route !== 'token' || ctx.status !== 400 || body?.error !== 'authorization_pending') return;
    const deviceCode = String((ctx.oidc.params as { device_code?: unknown } | undefined)?.device_code ?? '');
    const key = `device:poll:${createHash('sha256').update(deviceCode).digest('base64url')}`;
    const polls = await deps.stores.counters.increment(key, DEVICE_POLL_INTERVAL_S);
    if (polls.value > 1) {
      ctx.body = {
        error: 'slow_down',
        error_description: `poll at most every ${DEVICE_POLL_INTERVAL_S} seconds, 5 more than before`,
      };
    }
  });
  // RFC 7662 §2.2 members oidc-provider leaves out: a client's own token (client credentials) names
  // the client as its `sub`, as its JWT form does (RFC 9068 §2.2); a user's token whose scope includes
  // `email` carries the user's `email` and, as `username`, the same address (users have no other name).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 200) return;
    const body = ctx.body as Record<string, unknown> | undefined;
    if (body?.active !== true) return;
    const user = (ctx.state as { introspectedUser?: User }).introspectedUser;
    if (user) {
      if (
        String(body.scope ?? '')
          .split(' ')
          .includes('email')
      ) {
        body.username = user.email;
        body.email = user.email;
      }
    } else if (ctx.oidc.entities.ClientCredentials && body.sub === undefined) {
      body.sub = body.client_id;
    }
  });
  provider.on('server_error', (ctx, err) => {
    if (isStoreOutage(err)) {
      logFor(ctx, logger).warn(outageFacts(err), 'a store did not answer');
      ctx.status = 503;
      if (ctx.body !== null && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) {
        ctx.body = {
          error: 'temporarily_unavailable',
          error_description: 'a data store is unavailable; retry shortly',
        };
      }
      return;
    }
    logFor(ctx, logger).error({ err }, 'oidc server error');
  });
  for (const event of [
    'grant.error',
    'authorization.error',
    'introspection.error',
    'revocation.error',
    'userinfo.error',
    'end_session.error',
    'pushed_authorization_request.error',
    'jwks.error',
    'discovery.error',
  ] as const) {
    // The typings list these events per overload; one listener shape serves them all.
    (provider.on as (e: string, l: (ctx: KoaContextWithOIDC, err: errors.OIDCProviderError) => void) => void)(
      event,
      (ctx, err) => {
        logFor(ctx, logger).info(
          {
            event,
            error: err.error,
            error_description: err.error_description,
            client_id: ctx?.oidc?.client?.clientId,
          },
          'oauth request rejected',
        );
      },
    );
  }
  provider.on('grant.success', (ctx) => {
    logFor(ctx, logger).info(
      {
        event: 'grant.success',
        grant_type: ctx.oidc.params?.grant_type,
        client_id: ctx.oidc.client?.clientId,
      },
      'token issued',
    );
  });
  provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
    // Only a full sign-out ends the session (the confirmation page's "logout" choice).
    const session = ctx.oidc.session as { accountId?: string; loginTs?: number; uid?: string } | undefined;
    if (!deps.onSignOut || !session?.accountId || !ctx.oidc.params?.logout) return;
    deps.onSignOut({
      accountId: session.accountId,
      signedInAt: typeof session.loginTs === 'number' ? new Date(session.loginTs * 1000) : null,
      sessionId: session.uid ?? null,
      ipAddress: ctx.ip ?? null,
      userAgent: ctx.get('user-agent') || null,
    });
  });
  provider.on('grant.revoked', (ctx, grantId) => {
    logFor(ctx, logger).info({ event: 'grant.revoked', grant_id: grantId }, 'grant revoked');
    deps.onRevoked?.({ grant: grantId });
  });
  provider.on('access_token.destroyed', (token) => deps.onRevoked?.({ jti: token.jti }));
  provider.on('client_credentials.destroyed', (token) => deps.onRevoked?.({ jti: token.jti }));

  return provider;
}
