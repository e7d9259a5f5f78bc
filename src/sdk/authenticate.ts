/**
 * The framework-neutral core of the Koa and Express middleware: turns the credentials of an incoming
 * request into a Latchkey identity, or into the answer to refuse it with.
 *
 * - Bearer JWT access tokens (RFC 9068, `typ: at+jwt`) are verified locally against the issuer's JWKS
 *   (found through discovery; an unknown `kid` makes jose fetch the set again, so key rotation works).
 * - Other bearer tokens are introspected (RFC 7662) with the resource server's client credentials,
 *   and the answer is cached per token for at most the configured time and never past the token's expiry.
 * - DPoP-bound tokens (RFC 9449: `cnf.jkt` in the JWT or the introspection answer) are taken only as
 *   `Authorization: DPoP <token>` with a `DPoP` proof of the bound key for this request (./dpop.ts),
 *   each proof once (a replay cache, in process unless one is given); unbound tokens only as Bearer.
 * - API keys (`sk_live_…`/`sk_test_…` as bearer, or `X-API-Key`) are checked by the issuer's
 *   `POST /api/v1/auth/verify-key`, whose refusals (401, 403, 429 with Retry-After) are passed on.
 * Refusals use the error envelope of the Latchkey API and RFC 6750 challenges; a server that cannot be
 * reached gives 503.
 */
import { createHash, randomUUID } from 'node:crypto';

import {
  createRemoteJWKSet,
  customFetch,
  errors as joseErrors,
  jwtVerify,
  type FetchImplementation,
  type JWTPayload,
} from 'jose';

import {
  DPOP_ALGORITHMS,
  DPoPProofError,
  MemoryDPoPReplayCache,
  verifyDPoPProof,
  type DPoPReplayCache,
} from './dpop.js';
import type { FetchLike } from './http.js';
import type { VerifyKeyResult } from './types.js';

export type CredentialKind = 'jwt' | 'opaque' | 'api_key';

/** Who made the request, as middleware attaches it (`ctx.state.latchkey`, `req.latchkey`). */
export interface LatchkeyIdentity {
  kind: CredentialKind;
  /** The user id, or the client id of a service acting for itself, or the key's owner. */
  subject: string;
  clientId?: string;
  scopes: string[];
  /** The JWT payload or the introspection answer. */
  claims?: Record<string, unknown>;
  /** The verify-key answer, for API keys. */
  apiKey?: VerifyKeyResult;
  /** For a DPoP-bound token (its proof checked): the thumbprint of the client's key (`cnf.jkt`). */
  jkt?: string;
}

/** How DPoP-bound tokens are checked (they always are; these options tune it). */
export interface DPoPOptions {
  /**
   * Where used proofs are recorded, so each is accepted once. Default: in this process, which is
   * right for one instance; give several instances a shared one (see README, "SDK and middleware").
   */
  replayCache?: DPoPReplayCache;
  /** Proof algorithms accepted. Default: ES256, EdDSA, RS256, PS256 (what Latchkey accepts). */
  algorithms?: string[];
  /** How far a proof's `iat` may be from now, either way (seconds). Default 60. */
  maxAgeS?: number;
  /**
   * This API's public origin (`https://api.example.com`), when a proxy in front changes the scheme
   * or host the app sees: a proof's `htu` is compared with it plus the request's path.
   */
  publicOrigin?: string;
}

export interface AuthenticateOptions {
  /** The Latchkey issuer URL (discovery is read from `<issuer>/.well-known/openid-configuration`). */
  issuer: string;
  /** The identifier of this API: tokens must name it in `aud`. */
  audience?: string | string[];
  /** Credential kinds to take. Default: `jwt`, plus `opaque` when `introspection` is set. */
  accept?: CredentialKind[];
  /** This resource server's client credentials for the introspection endpoint. */
  introspection?: { clientId: string; clientSecret: string; cacheTtlMs?: number };
  /** Scopes every request must carry (all of them). */
  requiredScopes?: string[];
  /** Whether verifying an API key consumes a unit of its quota. Default true. */
  verifyKeyConsume?: boolean;
  /** Leeway for `exp` and `nbf`. Default 5 s. */
  clockToleranceS?: number;
  /** How long discovery is cached. Default 1 hour. */
  discoveryTtlMs?: number;
  /** Minimum time between two JWKS fetches caused by an unknown `kid`. Default 30 s. */
  jwksCooldownMs?: number;
  /** Per call to the issuer. Default 5 s. */
  timeoutMs?: number;
  /** The `realm` of challenges. Default: the audience, else the issuer. */
  realm?: string;
  fetch?: FetchLike;
  now?: () => number;
  /** Told about failures to reach or understand the issuer (the requests get 503). */
  onError?: (error: unknown) => void;
  /** DPoP-bound tokens (RFC 9449). */
  dpop?: DPoPOptions;
}

export interface AuthInput {
  /** The `Authorization` header. */
  authorization?: string;
  /** The `X-API-Key` header. */
  apiKey?: string;
  /** An incoming `X-Request-Id`, echoed in error bodies. */
  requestId?: string;
  /** The `DPoP` header (a proof, with `Authorization: DPoP <token>`). */
  dpop?: string;
  /** The request's method and URL, which a DPoP proof must name (`htm`, `htu`). */
  method?: string;
  url?: string;
}

export interface AuthFailure {
  status: number;
  headers: Record<string, string>;
  body: {
    error: { code: string; message: string; request_id: string; timestamp: string } & Record<string, unknown>;
  };
}

export type AuthResult = { ok: true; identity: LatchkeyIdentity } | { ok: false; failure: AuthFailure };

interface Discovery {
  issuer: string;
  jwks_uri?: string;
  introspection_endpoint?: string;
}

/** Why a request is refused, before it is shaped into an answer. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly options: {
      challenge?: 'invalid_token' | 'invalid_dpop_proof' | 'insufficient_scope' | 'none';
      /** Challenge with the DPoP scheme (RFC 9449 §7.1) rather than Bearer. */
      dpop?: boolean;
      retryAfter?: string;
      extra?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
  }
}

const API_KEY_PREFIX = /^sk_(live|test)_/;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const CACHE_LIMIT = 10_000;

const invalidToken = (message: string, cause?: unknown) =>
  new Refusal(401, 'AUTH_TOKEN_INVALID', message, { challenge: 'invalid_token', cause });
const unavailable = (message: string, cause?: unknown) =>
  new Refusal(503, 'SERVICE_UNAVAILABLE', message, { cause });

function scopesOf(value: unknown): string[] {
  if (typeof value === 'string') return value.split(' ').filter(Boolean);
  if (Array.isArray(value)) return value.filter((s): s is string => typeof s === 'string');
  return [];
}

function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

export class LatchkeyAuthenticator {
  private readonly issuer: string;
  private readonly audiences: string[] | undefined;
  private readonly accept: ReadonlySet<CredentialKind>;
  private readonly fetch: FetchLike;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private discovery: { at: number; value: Promise<Discovery> } | undefined;
  private jwks: { uri: string; set: ReturnType<typeof createRemoteJWKSet> } | undefined;
  private readonly introspected = new Map<string, { until: number; result: LatchkeyIdentity | Refusal }>();
  private readonly introspecting = new Map<string, Promise<LatchkeyIdentity>>();
  private readonly replays: DPoPReplayCache;

  constructor(private readonly options: AuthenticateOptions) {
    if (!options.issuer) throw new TypeError('Latchkey middleware needs the issuer URL');
    this.issuer = options.issuer.replace(/\/+$/, '');
    this.audiences =
      options.audience === undefined
        ? undefined
        : Array.isArray(options.audience)
          ? options.audience
          : [options.audience];
    this.accept = new Set(options.accept ?? (options.introspection ? ['jwt', 'opaque'] : ['jwt']));
    if (this.accept.has('opaque') && !options.introspection) {
      throw new TypeError('Accepting opaque tokens needs introspection credentials (options.introspection)');
    }
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.replays = options.dpop?.replayCache ?? new MemoryDPoPReplayCache(100_000, this.now);
  }

  /** Never throws: every outcome is an identity or an answer to send. */
  async authenticate(input: AuthInput): Promise<AuthResult> {
    try {
      const identity = await this.identify(input);
      const missing = (this.options.requiredScopes ?? []).filter((s) => !identity.scopes.includes(s));
      if (missing.length > 0) {
        throw new Refusal(
          403,
          'AUTH_INSUFFICIENT_SCOPE',
          `The credentials lack the scope this operation needs: ${missing.join(' ')}`,
          { challenge: 'insufficient_scope', extra: { required_scopes: this.options.requiredScopes } },
        );
      }
      return { ok: true, identity };
    } catch (err) {
      const refusal =
        err instanceof Refusal ? err : unavailable('The authorization server could not be used', err);
      if (refusal.status >= 500) this.options.onError?.(refusal.cause ?? refusal);
      const dpopScheme = /^DPoP\s/i.test(input.authorization?.trim() ?? '');
      return { ok: false, failure: this.shape(refusal, input.requestId, dpopScheme) };
    }
  }

  private async identify(input: AuthInput): Promise<LatchkeyIdentity> {
    const header = input.authorization?.trim();
    const match = header ? /^(Bearer|DPoP) +(\S+)$/i.exec(header) : null;
    if (match) {
      const dpop = match[1]!.toLowerCase() === 'dpop';
      const token = match[2]!;
      if (!dpop && API_KEY_PREFIX.test(token)) return this.apiKey(token);
      let identity: LatchkeyIdentity;
      if (JWT_SHAPE.test(token)) {
        // Latchkey does not introspect JWT access tokens, so one cannot pass as an opaque token.
        if (!this.accept.has('jwt')) throw invalidToken('JWT access tokens are not accepted here');
        identity = await this.jwt(token);
      } else if (this.accept.has('opaque')) identity = await this.opaque(token);
      else throw invalidToken('The access token is invalid');
      return this.presented(identity, token, dpop, input);
    }
    if (input.apiKey) return this.apiKey(input.apiKey.trim());
    if (header) throw invalidToken('The Authorization header must be "Bearer <token>" or "DPoP <token>"');
    throw new Refusal(401, 'AUTH_TOKEN_MISSING', 'An access token is required', { challenge: 'none' });
  }

  /* DPoP ------------------------------------------------------------------------------------------ */

  /** The identity, once its presentation fits the token: a bound token with the DPoP scheme and proof. */
  private async presented(
    identity: LatchkeyIdentity,
    token: string,
    dpop: boolean,
    input: AuthInput,
  ): Promise<LatchkeyIdentity> {
    const cnf = identity.claims?.cnf;
    const members = cnf !== null && typeof cnf === 'object' ? (cnf as Record<string, unknown>) : {};
    if (Object.keys(members).some((k) => k !== 'jkt')) {
      throw invalidToken('Certificate-bound (mTLS) tokens cannot be checked here');
    }
    const jkt = typeof members.jkt === 'string' ? members.jkt : undefined;
    if (jkt === undefined) {
      if (dpop) throw invalidToken('The access token is not DPoP-bound: present it as a Bearer token');
      return identity;
    }
    if (!dpop) {
      throw new Refusal(
        401,
        'AUTH_TOKEN_INVALID',
        'The access token is DPoP-bound: present it as "Authorization: DPoP <token>" with a DPoP proof',
        { challenge: 'invalid_token', dpop: true },
      );
    }
    const url = this.requestUrl(input.url);
    if (!url || !input.method) {
      throw new Refusal(
        401,
        'AUTH_TOKEN_INVALID',
        'The URL of the request is not known, so no proof can match',
        {
          challenge: 'invalid_dpop_proof',
        },
      );
    }
    const options = this.options.dpop ?? {};
    let replayKey: string;
    let replayUntil: number;
    try {
      ({ replayKey, replayUntil } = await verifyDPoPProof({
        proof: input.dpop,
        method: input.method,
        url,
        accessToken: token,
        jkt,
        ...(options.algorithms ? { algorithms: options.algorithms } : {}),
        ...(options.maxAgeS !== undefined ? { maxAgeS: options.maxAgeS } : {}),
        now: this.now,
      }));
    } catch (err) {
      if (!(err instanceof DPoPProofError)) throw err;
      throw new Refusal(401, 'AUTH_TOKEN_INVALID', err.message, { challenge: err.error, cause: err });
    }
    if (!(await this.replays.take(replayKey, replayUntil))) {
      throw new Refusal(401, 'AUTH_TOKEN_INVALID', 'The DPoP proof was already used', {
        challenge: 'invalid_dpop_proof',
      });
    }
    return { ...identity, jkt };
  }

  /** The URL a proof must name: the request's, on the public origin when one is configured. */
  private requestUrl(url: string | undefined): string | undefined {
    const origin = this.options.dpop?.publicOrigin;
    if (url === undefined || origin === undefined) return url;
    const parsed = URL.parse(url, 'http://localhost');
    return parsed ? `${origin.replace(/\/+$/, '')}${parsed.pathname}` : undefined;
  }

  /* Discovery and JWKS ---------------------------------------------------------------------------- */

  private async getJson(
    url: string,
    init: RequestInit = {},
  ): Promise<{ status: number; headers: Headers; body: unknown }> {
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await response.text();
    } catch (err) {
      throw unavailable('The authorization server could not be reached', err);
    }
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch (err) {
      throw unavailable(`The authorization server answered ${url} with something other than JSON`, err);
    }
    return { status: response.status, headers: response.headers, body };
  }

  private discover(): Promise<Discovery> {
    const ttl = this.options.discoveryTtlMs ?? 3_600_000;
    if (this.discovery && this.now() - this.discovery.at < ttl) return this.discovery.value;
    const value = (async () => {
      const url = `${this.issuer}/.well-known/openid-configuration`;
      const { status, body } = await this.getJson(url);
      const doc = body as Partial<Discovery> | undefined;
      if (status !== 200 || !doc || typeof doc.issuer !== 'string') {
        throw unavailable(`Discovery at ${url} answered ${status}`);
      }
      if (doc.issuer.replace(/\/+$/, '') !== this.issuer) {
        throw unavailable(`Discovery names the issuer ${doc.issuer}, not ${this.issuer}`);
      }
      return doc as Discovery;
    })();
    this.discovery = { at: this.now(), value };
    // A failed discovery is tried again on the next request.
    value.catch(() => {
      if (this.discovery?.value === value) this.discovery = undefined;
    });
    return value;
  }

  private async keySet() {
    const { jwks_uri: uri } = await this.discover();
    if (!uri) throw unavailable('Discovery has no jwks_uri');
    if (this.jwks?.uri !== uri) {
      const fetchKeys: FetchImplementation = (url, init) => this.fetch(url, init);
      this.jwks = {
        uri,
        set: createRemoteJWKSet(new URL(uri), {
          cooldownDuration: this.options.jwksCooldownMs ?? 30_000,
          timeoutDuration: this.timeoutMs,
          [customFetch]: fetchKeys,
        }),
      };
    }
    return this.jwks.set;
  }

  /* JWT access tokens ----------------------------------------------------------------------------- */

  private async jwt(token: string): Promise<LatchkeyIdentity> {
    const keys = await this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.issuer,
        audience: this.audiences,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'sub'],
        clockTolerance: this.options.clockToleranceS ?? 5,
        currentDate: new Date(this.now()),
      }));
    } catch (err) {
      throw this.joseRefusal(err);
    }
    return {
      kind: 'jwt',
      subject: String(payload.sub),
      ...(typeof payload.client_id === 'string' ? { clientId: payload.client_id } : {}),
      scopes: scopesOf(payload.scope),
      claims: payload as Record<string, unknown>,
    };
  }

  private joseRefusal(err: unknown): Refusal {
    if (err instanceof joseErrors.JWTExpired) {
      return new Refusal(401, 'AUTH_TOKEN_EXPIRED', 'The access token has expired', {
        challenge: 'invalid_token',
      });
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      return invalidToken(`The access token is invalid: ${err.message}`, err);
    }
    if (
      err instanceof joseErrors.JWSSignatureVerificationFailed ||
      err instanceof joseErrors.JWSInvalid ||
      err instanceof joseErrors.JWTInvalid ||
      err instanceof joseErrors.JWKSNoMatchingKey ||
      err instanceof joseErrors.JWKSMultipleMatchingKeys ||
      err instanceof joseErrors.JOSEAlgNotAllowed ||
      err instanceof joseErrors.JOSENotSupported
    ) {
      return invalidToken('The access token is invalid', err);
    }
    // Timeouts and bad answers from the JWKS endpoint, network errors.
    return unavailable('The signing keys could not be fetched', err);
  }

  /* Opaque tokens --------------------------------------------------------------------------------- */

  private opaque(token: string): Promise<LatchkeyIdentity> {
    const key = createHash('sha256').update(token).digest('base64url');
    const hit = this.introspected.get(key);
    if (hit && this.now() < hit.until) {
      if (hit.result instanceof Refusal) return Promise.reject(hit.result);
      return Promise.resolve(hit.result);
    }
    if (hit) this.introspected.delete(key);
    let running = this.introspecting.get(key);
    if (!running) {
      running = this.introspect(token, key).finally(() => this.introspecting.delete(key));
      this.introspecting.set(key, running);
    }
    return running;
  }

  private remember(key: string, until: number, result: LatchkeyIdentity | Refusal): void {
    if (until <= this.now()) return;
    if (this.introspected.size >= CACHE_LIMIT) {
      const oldest = this.introspected.keys().next().value;
      if (oldest !== undefined) this.introspected.delete(oldest);
    }
    this.introspected.set(key, { until, result });
  }

  private async introspect(token: string, key: string): Promise<LatchkeyIdentity> {
    const { introspection_endpoint: endpoint } = await this.discover();
    if (!endpoint) throw unavailable('Discovery has no introspection_endpoint');
    const { clientId, clientSecret, cacheTtlMs = 60_000 } = this.options.introspection!;
    const basic = Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64');
    const now = this.now();
    // A refusal is final for this token (it cannot become active), so it is cached too.
    const refuse = (refusal: Refusal): never => {
      this.remember(key, now + cacheTtlMs, refusal);
      throw refusal;
    };
    const { status, body } = await this.getJson(endpoint, {
      method: 'POST',
      headers: {
        accept: 'application/json',
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    });
    const oauthError = (body as { error?: unknown } | undefined)?.error;
    if (status === 400 && oauthError === 'unsupported_token_type') {
      refuse(invalidToken('The access token cannot be introspected'));
    }
    if (status !== 200 || body === null || typeof body !== 'object') {
      throw unavailable(`Introspection answered ${status}: ${JSON.stringify(body ?? null).slice(0, 200)}`);
    }
    const claims = body as Record<string, unknown>;
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
    const cacheUntil = Math.min(now + cacheTtlMs, exp ?? Infinity);
    if (claims.active !== true) refuse(invalidToken('The access token is not active'));
    if (exp !== undefined && exp <= now) {
      refuse(
        new Refusal(401, 'AUTH_TOKEN_EXPIRED', 'The access token has expired', {
          challenge: 'invalid_token',
        }),
      );
    }
    // Refresh tokens introspect as active too, without a token type; only access tokens count
    // (Bearer, or DPoP for a token bound to a key, whose proof is checked after).
    const tokenType = typeof claims.token_type === 'string' ? claims.token_type.toLowerCase() : undefined;
    if (tokenType !== 'bearer' && tokenType !== 'dpop') {
      refuse(invalidToken('The token is not an access token'));
    }
    if (claims.iss !== undefined && String(claims.iss).replace(/\/+$/, '') !== this.issuer) {
      refuse(invalidToken('The access token was issued by another server'));
    }
    if (this.audiences) {
      const aud = scopesOf(claims.aud);
      if (!aud.some((a) => this.audiences!.includes(a))) {
        refuse(invalidToken('The access token is not meant for this API'));
      }
    }
    const clientIdClaim = typeof claims.client_id === 'string' ? claims.client_id : undefined;
    const subject = typeof claims.sub === 'string' ? claims.sub : clientIdClaim;
    if (!subject) refuse(invalidToken('The access token names no subject'));
    const identity: LatchkeyIdentity = {
      kind: 'opaque',
      subject: subject!,
      ...(clientIdClaim ? { clientId: clientIdClaim } : {}),
      scopes: scopesOf(claims.scope),
      claims,
    };
    this.remember(key, cacheUntil, identity);
    return identity;
  }

  /* API keys -------------------------------------------------------------------------------------- */

  private async apiKey(key: string): Promise<LatchkeyIdentity> {
    if (!this.accept.has('api_key')) throw invalidToken('API keys are not accepted here');
    const { status, headers, body } = await this.getJson(`${this.issuer}/api/v1/auth/verify-key`, {
      method: 'POST',
      headers: {
        accept: 'application/json',
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ consume: this.options.verifyKeyConsume ?? true }),
    });
    if (status === 200) {
      const result = body as VerifyKeyResult;
      if (result?.valid !== true) throw unavailable('verify-key answered 200 without valid: true');
      return {
        kind: 'api_key',
        subject: result.user_id ?? result.client_id ?? result.key_id,
        ...(result.client_id ? { clientId: result.client_id } : {}),
        scopes: result.scopes ?? [],
        apiKey: result,
      };
    }
    const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
    if (status === 401 || status === 403 || status === 429 || status === 503) {
      const code = typeof error?.code === 'string' ? error.code : undefined;
      const message = typeof error?.message === 'string' ? error.message : undefined;
      if (code && message) {
        const { code: _c, message: _m, request_id: _r, timestamp: _t, ...extra } = error!;
        throw new Refusal(status, code, message, {
          challenge: status === 401 ? 'invalid_token' : undefined,
          retryAfter: headers.get('retry-after') ?? undefined,
          extra,
        });
      }
    }
    throw unavailable(`verify-key answered ${status}`);
  }

  /* Answers --------------------------------------------------------------------------------------- */

  private shape(refusal: Refusal, incomingRequestId: string | undefined, dpopScheme: boolean): AuthFailure {
    const headers: Record<string, string> = { 'cache-control': 'no-store' };
    const realm = (this.options.realm ?? this.audiences?.[0] ?? this.issuer).replace(/"/g, "'");
    const { challenge, retryAfter, extra } = refusal.options;
    const description = refusal.message.replace(/["\\]/g, "'");
    if (challenge === 'none') headers['www-authenticate'] = `Bearer realm="${realm}"`;
    else if (
      challenge === 'invalid_dpop_proof' ||
      (challenge === 'invalid_token' && (dpopScheme || refusal.options.dpop === true))
    ) {
      const algs = (this.options.dpop?.algorithms ?? DPOP_ALGORITHMS).join(' ');
      headers['www-authenticate'] =
        `DPoP realm="${realm}", error="${challenge}", error_description="${description}", algs="${algs}"`;
    } else if (challenge === 'invalid_token') {
      headers['www-authenticate'] =
        `Bearer realm="${realm}", error="invalid_token", error_description="${refusal.message.replace(/["\\]/g, "'")}"`;
    } else if (challenge === 'insufficient_scope') {
      headers['www-authenticate'] =
        `Bearer realm="${realm}", error="insufficient_scope", scope="${(this.options.requiredScopes ?? []).join(' ')}"`;
    }
    if (retryAfter) headers['retry-after'] = retryAfter;
    const requestId =
      incomingRequestId && REQUEST_ID.test(incomingRequestId)
        ? incomingRequestId
        : `req_${randomUUID().replace(/-/g, '')}`;
    return {
      status: refusal.status,
      headers,
      body: {
        error: {
          ...extra,
          code: refusal.code,
          message: refusal.message,
          request_id: requestId,
          timestamp: new Date(this.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        },
      },
    };
  }
}
