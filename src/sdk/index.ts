/**
 * Latchkey's SDK, published as `latchkey/sdk`: a typed client for the management and gateway APIs,
 * Koa and Express middleware that authenticate requests with Latchkey tokens (DPoP-bound ones with
 * their proofs, ./dpop.ts) and API keys, and the verification of the webhooks Latchkey sends (with
 * Koa and Express middleware for receivers). It
 * imports nothing from the server and needs only `jose`, `standardwebhooks` and Node's global fetch
 * (Node 22 or later).
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
  DPoPOptions,
  LatchkeyIdentity,
} from './authenticate.js';
export { accessTokenHash, DPoPProofError, MemoryDPoPReplayCache, verifyDPoPProof } from './dpop.js';
export type { DPoPProofCheck, DPoPReplayCache, VerifiedDPoPProof } from './dpop.js';
export { latchkeyKoa } from './middleware/koa.js';
export type { KoaLikeContext, LatchkeyKoaMiddleware, LatchkeyKoaState } from './middleware/koa.js';
export { latchkeyExpress } from './middleware/express.js';
export type {
  ExpressLikeRequest,
  ExpressLikeResponse,
  LatchkeyExpressMiddleware,
} from './middleware/express.js';
export { requirePermission, requirePermissionKoa } from './middleware/permission.js';
export type {
  PermissionExpressRequest,
  PermissionExpressResponse,
  PermissionKoaContext,
  PermissionOptions,
  ResourceFrom,
} from './middleware/permission.js';
export { verifyWebhook, WebhookVerificationError } from './webhooks.js';
export type {
  KnownWebhookEventType,
  VerifyWebhookOptions,
  WebhookEvent,
  WebhookHeaders,
  WebhookVerificationReason,
} from './webhooks.js';
export { webhookExpress } from './middleware/webhook-express.js';
export type {
  WebhookExpressMiddleware,
  WebhookExpressRequest,
  WebhookExpressResponse,
  WebhookMiddlewareOptions,
} from './middleware/webhook-express.js';
export { webhookKoa } from './middleware/webhook-koa.js';
export type { WebhookKoaContext, WebhookKoaMiddleware, WebhookKoaState } from './middleware/webhook-koa.js';
export type * from './types.js';
