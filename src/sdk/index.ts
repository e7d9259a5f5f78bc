/**
 * Latchkey's SDK, published as `latchkey/sdk`: a typed client for the management and gateway APIs,
 * and Koa and Express middleware that authenticate requests with Latchkey tokens and API keys. It
 * imports nothing from the server and needs only `jose` and Node's global fetch (Node 22 or later).
 */
export { LatchkeyClient } from './client.js';
export type {
  CallOptions,
  ClientCredentialsOptions,
  LatchkeyClientOptions,
  MutationOptions,
} from './client.js';
export { LatchkeyError, parseRetryAfter } from './errors.js';
export type { LatchkeyErrorDetail } from './errors.js';
export { HttpTransport } from './http.js';
export type { FetchLike, HttpRequest, RetryOptions, TransportOptions } from './http.js';
export { paginate } from './pagination.js';
export type { PageFetcher } from './pagination.js';
export { LatchkeyAuthenticator } from './authenticate.js';
export type {
  AuthenticateOptions,
  AuthFailure,
  AuthInput,
  AuthResult,
  CredentialKind,
  LatchkeyIdentity,
} from './authenticate.js';
export { latchkeyKoa } from './middleware/koa.js';
export type { KoaLikeContext, LatchkeyKoaMiddleware, LatchkeyKoaState } from './middleware/koa.js';
export { latchkeyExpress } from './middleware/express.js';
export type {
  ExpressLikeRequest,
  ExpressLikeResponse,
  LatchkeyExpressMiddleware,
} from './middleware/express.js';
export type * from './types.js';
