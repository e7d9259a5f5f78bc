/**
 * DPoP-bound access tokens (RFC 9449) at our own resource endpoints: forward auth (/gateway/auth),
 * the management API (/v2) and policy decisions (/v1/authorize). How a token was presented
 * (`Authorization: Bearer` or `DPoP`) must fit the token: a token bound to a key (`cnf.jkt`) only with
 * the DPoP scheme and a proof of that key for this very request; an unbound one only as a bearer
 * token. The proof itself is checked by the SDK's verifier (../sdk/dpop.ts, jose only), so our
 * endpoints and our customers' APIs agree; here each proof's jti is taken once across every instance,
 * with one atomic increment in the counter store (Redis or the embedded database), as the
 * authorization server's own replay check does.
 */
import type { Context } from 'koa';

import { AppError } from '../errors/app-error.js';
import { DPOP_ALGORITHMS, DPoPProofError, verifyDPoPProof } from '../sdk/dpop.js';
import type { CounterStore } from '../store/ports.js';

/** An access token and the scheme it came with. */
export interface PresentedToken {
  scheme: 'bearer' | 'dpop';
  token: string;
}

/** What a presentation is checked against: the request as the client sent it. */
export interface PresentedRequest {
  /** The `DPoP` header. */
  proof: string | undefined;
  method: string;
  /** The URL the client called (a gateway's original request), undefined when unknown. */
  url: string | undefined;
}

/**
 * A refused presentation: AUTH_TOKEN_INVALID in the error envelope, with a DPoP challenge naming
 * RFC 9449's error (`invalid_token` or `invalid_dpop_proof`).
 */
export class DPoPRefusal extends AppError {
  constructor(
    readonly dpopError: 'invalid_token' | 'invalid_dpop_proof',
    message: string,
    cause?: unknown,
  ) {
    super('AUTH_TOKEN_INVALID', { message, cause });
  }
}

const TOKEN68 = /^(Bearer|DPoP)\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i;

/** The access token of the Authorization header, Bearer or DPoP; undefined when there is none. */
export function presentedToken(ctx: Context): PresentedToken | undefined {
  const header = ctx.get('Authorization');
  if (!header) return undefined;
  const match = TOKEN68.exec(header);
  if (!match)
    throw new AppError('AUTH_TOKEN_INVALID', {
      message: 'The Authorization header must be "Bearer <token>" or "DPoP <token>"',
    });
  return { scheme: match[1]!.toLowerCase() === 'dpop' ? 'dpop' : 'bearer', token: match[2]! };
}

/** Whether the request presents its token with the DPoP scheme. */
export const usesDPoPScheme = (ctx: Context) => /^DPoP\s/i.test(ctx.get('Authorization'));

/** The RFC 9449 §7.1 challenge for a refused request: the error, its description and our algs. */
export function dpopChallenge(realm: string, err: AppError): string {
  const error = err instanceof DPoPRefusal ? err.dpopError : 'invalid_token';
  return `DPoP realm="${realm}", error="${error}", error_description="${err.message.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?')}", algs="${DPOP_ALGORITHMS.join(' ')}"`;
}

export class DPoPPresentation {
  constructor(
    private readonly counters: CounterStore,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Refuses a token presented in a way its binding does not allow, or with a proof that does not
   * hold for this request, or with a proof already used (here or on another instance).
   */
  async check(presented: PresentedToken, jkt: string | undefined, request: PresentedRequest): Promise<void> {
    if (jkt === undefined) {
      if (presented.scheme === 'dpop') {
        throw new DPoPRefusal(
          'invalid_token',
          'The access token is not DPoP-bound: present it as a Bearer token',
        );
      }
      return;
    }
    if (presented.scheme !== 'dpop') {
      throw new DPoPRefusal(
        'invalid_token',
        'The access token is DPoP-bound: present it as "Authorization: DPoP <token>" with a DPoP proof',
      );
    }
    if (request.url === undefined) {
      throw new DPoPRefusal(
        'invalid_dpop_proof',
        'The URL of the request is not known, so no proof can match',
      );
    }
    let verified;
    try {
      verified = await verifyDPoPProof({
        proof: request.proof,
        method: request.method,
        url: request.url,
        accessToken: presented.token,
        jkt,
        now: this.now,
      });
    } catch (err) {
      if (err instanceof DPoPProofError) throw new DPoPRefusal(err.error, err.message, err);
      throw err;
    }
    const windowS = Math.max(1, Math.ceil((verified.replayUntil - this.now()) / 1000));
    const taken = await this.counters.increment(`dpop-proof:${verified.replayKey}`, windowS);
    if (taken.value !== 1) throw new DPoPRefusal('invalid_dpop_proof', 'The DPoP proof was already used');
  }
}
