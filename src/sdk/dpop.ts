/**
 * DPoP proofs (RFC 9449) as a resource server checks them (§4.3 and §7.1): what a DPoP-bound access
 * token's request must carry in its `DPoP` header. Self-contained (jose and Node's crypto only), so
 * the SDK's middleware and the server's own resource endpoints (forward auth, /v2, /v1/authorize)
 * check proofs the same way; each adds its own record of used `jti` values (see `DPoPReplayCache`).
 *
 * Nonces: a resource server may hand out its own (§9); this one does not, so a proof's `nonce`, when
 * there is one (a client may reuse the authorization server's), is not what makes it fresh: `iat` is.
 */
import { createHash } from 'node:crypto';

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';

/** The algorithms Latchkey's authorization server accepts for proofs (its discovery lists them). */
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const;

/** How far `iat` may be from now, either way, by default (seconds). */
export const DPOP_DEFAULT_MAX_AGE_S = 60;

/**
 * Why a request with a DPoP-bound (or DPoP-presented) token is refused, as RFC 9449 §7.1 names it:
 * `invalid_dpop_proof` (the proof is missing parts, badly signed, stale, or for another request) or
 * `invalid_token` (the token and the way it was presented or the proof's key do not go together).
 */
export class DPoPProofError extends Error {
  constructor(
    readonly error: 'invalid_dpop_proof' | 'invalid_token',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DPoPProofError';
  }
}

/** Remembers which proofs were used; `take` answers true only the first time for a key. */
export interface DPoPReplayCache {
  /** `key` names one proof; `expiresAt` (ms) is when it could no longer be accepted anyway. */
  take(key: string, expiresAt: number): boolean | Promise<boolean>;
}

export interface DPoPProofCheck {
  /** The request's `DPoP` header (exactly one). */
  proof: string | undefined;
  /** The request's method (`htm`), as the client sent it. */
  method: string;
  /** The URL the client sent the request to (`htu`); query and fragment are ignored. */
  url: string | readonly string[];
  /** The access token presented with the DPoP scheme (`ath` is its SHA-256). */
  accessToken: string;
  /** The thumbprint the token is bound to (`cnf.jkt`). */
  jkt: string;
  algorithms?: readonly string[];
  /** How far `iat` may be from now, either way (seconds). Default 60. */
  maxAgeS?: number;
  now?: () => number;
}

export interface VerifiedDPoPProof {
  jti: string;
  /** Seconds. */
  iat: number;
  jkt: string;
  /** The key under which the proof is recorded as used, and until when (ms). */
  replayKey: string;
  replayUntil: number;
}

const proofError = (message: string, cause?: unknown) =>
  new DPoPProofError('invalid_dpop_proof', message, { cause });

/** base64url(SHA-256(access token)): the `ath` a proof for this token carries. */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/** A URL as `htu` compares it: normalized (RFC 3986 §6.2.2, §6.2.3), without query and fragment. */
function comparable(url: string): string | undefined {
  const parsed = URL.parse(url);
  if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')) return undefined;
  parsed.search = '';
  parsed.hash = '';
  return parsed.href;
}

/**
 * Checks a proof for a DPoP-bound access token's request and returns it; throws `DPoPProofError`.
 * Taking the proof's `jti` once (replay) is the caller's step, with `replayKey` and `replayUntil`.
 */
export async function verifyDPoPProof(check: DPoPProofCheck): Promise<VerifiedDPoPProof> {
  const { proof } = check;
  if (!proof) throw proofError('A DPoP proof (the DPoP header) is required with this access token');
  // Several DPoP headers arrive joined by commas; a JWS never holds one.
  if (proof.includes(',')) throw proofError('Exactly one DPoP proof is required');
  const algorithms = [...(check.algorithms ?? DPOP_ALGORITHMS)];
  let payload: JWTPayload;
  let jwk: JWK;
  try {
    const verified = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms });
    payload = verified.payload;
    jwk = verified.protectedHeader.jwk as JWK;
  } catch (err) {
    throw proofError('The DPoP proof is not a valid dpop+jwt signed with its embedded public key', err);
  }
  const { jti, iat, htm, htu, ath } = payload as Record<string, unknown>;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 512) {
    throw proofError('The DPoP proof has no jti');
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw proofError('The DPoP proof has no iat');
  const now = (check.now ?? Date.now)();
  const maxAgeS = check.maxAgeS ?? DPOP_DEFAULT_MAX_AGE_S;
  if (Math.abs(now / 1000 - iat) > maxAgeS) throw proofError('The DPoP proof is not recent (iat)');
  if (typeof htm !== 'string' || htm !== check.method.toUpperCase()) {
    throw proofError('The DPoP proof is for another HTTP method (htm)');
  }
  const expected = (typeof check.url === 'string' ? [check.url] : check.url).map(comparable);
  const actual = typeof htu === 'string' ? comparable(htu) : undefined;
  if (actual === undefined || !expected.includes(actual)) {
    throw proofError('The DPoP proof is for another URL (htu)');
  }
  if (typeof ath !== 'string' || ath !== accessTokenHash(check.accessToken)) {
    throw proofError('The DPoP proof is for another access token (ath)');
  }
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  if (jkt !== check.jkt) {
    throw new DPoPProofError(
      'invalid_token',
      'The proof is signed with another key than the one the access token is bound to',
    );
  }
  return {
    jti,
    iat,
    jkt,
    replayKey: createHash('sha256').update(`${jkt}\n${jti}`).digest('base64url'),
    // A proof is acceptable until iat + maxAge; keep its jti a little past that.
    replayUntil: (iat + maxAgeS + 5) * 1000,
  };
}

/**
 * An in-process record of used proofs: right for one process; several instances of an API need a
 * shared one (a Redis `SET key 1 NX PXAT expiresAt` answers the same question atomically).
 */
export class MemoryDPoPReplayCache implements DPoPReplayCache {
  private readonly used = new Map<string, number>();

  constructor(
    private readonly limit = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string, expiresAt: number): boolean {
    const at = this.now();
    const until = this.used.get(key);
    if (until !== undefined && until > at) return false;
    if (this.used.size >= this.limit) this.sweep(at);
    this.used.set(key, expiresAt);
    return true;
  }

  private sweep(at: number): void {
    for (const [key, until] of this.used) if (until <= at) this.used.delete(key);
    // Still full of live entries: forget the oldest (a proof that old is near the end of its window).
    while (this.used.size >= this.limit) this.used.delete(this.used.keys().next().value!);
  }
}
