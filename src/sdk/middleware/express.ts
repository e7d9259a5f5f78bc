/**
 * Express middleware guarding routes with Latchkey credentials (see ../authenticate.ts): on success the
 * identity is in `req.latchkey`; otherwise the request is answered here (401, 403, 429 or 503) and
 * `next` is not called. Typed structurally, so the SDK needs no Express at run time.
 */
import { LatchkeyAuthenticator, type AuthenticateOptions, type LatchkeyIdentity } from '../authenticate.js';

declare global {
  // Express reads its request type from this global namespace; adding the field types `req.latchkey`.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      latchkey?: LatchkeyIdentity;
    }
  }
}

/** The parts of Express's request and response the middleware uses. */
export interface ExpressLikeRequest {
  headers: Record<string, string | string[] | undefined>;
  latchkey?: LatchkeyIdentity;
  /** The request's method, scheme and URL path: what a DPoP proof must name. */
  method?: string;
  protocol?: string;
  originalUrl?: string;
}

export interface ExpressLikeResponse {
  status(code: number): unknown;
  setHeader(name: string, value: string): unknown;
  json(body: unknown): unknown;
}

export type LatchkeyExpressMiddleware = ((
  req: ExpressLikeRequest,
  res: ExpressLikeResponse,
  next: (err?: unknown) => void,
) => void) & { authenticator: LatchkeyAuthenticator };

function header(req: ExpressLikeRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value || undefined;
}

/** The URL the request was sent to (Express's `protocol` follows X-Forwarded-Proto with `trust proxy`). */
function requestUrl(req: ExpressLikeRequest): string | undefined {
  const host = header(req, 'host');
  if (!host || req.originalUrl === undefined) return undefined;
  return `${req.protocol ?? 'http'}://${host}${req.originalUrl}`;
}

/** Accepts options, or an authenticator shared with other middleware (one cache for all). */
export function latchkeyExpress(
  options: AuthenticateOptions | LatchkeyAuthenticator,
): LatchkeyExpressMiddleware {
  const authenticator =
    options instanceof LatchkeyAuthenticator ? options : new LatchkeyAuthenticator(options);
  const middleware = (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void) => {
    authenticator
      .authenticate({
        authorization: header(req, 'authorization'),
        apiKey: header(req, 'x-api-key'),
        requestId: header(req, 'x-request-id'),
        dpop: header(req, 'dpop'),
        method: req.method,
        url: requestUrl(req),
      })
      .then((result) => {
        if (!result.ok) {
          res.status(result.failure.status);
          for (const [name, value] of Object.entries(result.failure.headers)) res.setHeader(name, value);
          res.json(result.failure.body);
          return;
        }
        req.latchkey = result.identity;
        next();
      })
      .catch(next);
  };
  return Object.assign(middleware, { authenticator });
}
