/**
 * The dynamic client registration endpoints, served by us rather than by oidc-provider (whose
 * registration would write clients through its adapter, around the client service's checks, events
 * and secret digests): RFC 7591 POST /oauth/register and RFC 7592 GET, PUT and DELETE on
 * /oauth/register/{client_id}. Metadata passes the field checks of /v2/clients (clientFields) and
 * then the client service's own (the provider's client schema); errors are RFC 7591 §3.2.2 JSON.
 * Mounted only when DYNAMIC_REGISTRATION is not `off`.
 */
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { z } from 'zod';

import { clientFields } from '../admin/clients-routes.js';
import { TOKEN_EXCHANGE_GRANT } from './token-exchange.js';
import { requestFacts } from '../admin/users-routes.js';
import { AppError } from '../errors/app-error.js';
import { jsonBody } from '../http/json-body.js';
import { ClientMetadataError } from '../services/clients.js';
import {
  REGISTRABLE_METADATA,
  type DynamicRegistration,
  type RegisteredClient,
} from '../services/dynamic-registration.js';
import type { ClientRecord, JsonObject } from '../store/ports.js';
import { verifyClientSecret } from './client-secrets.js';
import { PROVIDER_ROUTES } from './provider.js';
import { OIDC_SCOPES } from './scopes.js';

/** Registered clients may ask only for the OpenID Connect scopes; management scopes never. */
const oidcScope = z
  .string()
  .max(2000)
  .transform((v) => v.trim().split(/\s+/).filter(Boolean))
  .refine((scopes) => scopes.every((s) => OIDC_SCOPES.includes(s)), {
    error: `Only these scopes can be registered: ${OIDC_SCOPES.join(', ')}`,
  })
  .transform((scopes) => [...new Set(scopes)].join(' '));

/**
 * The /v2/clients fields a registrant may send, with the same checks; first_party, plan,
 * api_scopes and token exchange (its grant and policy: whose users' tokens a client may trade) are
 * an administrator's. Unknown members are ignored, as RFC 7591 §2 asks.
 */
const RegistrationMetadata = z
  .object(clientFields)
  .omit({ plan: true, api_scopes: true, token_exchange: true })
  .extend({
    scope: oidcScope,
    grant_types: clientFields.grant_types.refine((grants) => !grants.includes(TOKEN_EXCHANGE_GRANT), {
      error: 'the token-exchange grant is given by an administrator, not through registration',
    }),
  })
  .partial();

type Failure = { status: number; error: string; error_description: string; challenge?: string };

class RegistrationFailure extends Error {
  constructor(readonly failure: Failure) {
    super(failure.error_description);
  }
}

const badMetadata = (field: string, description: string): RegistrationFailure =>
  new RegistrationFailure({
    status: 400,
    error: field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata',
    error_description: description,
  });

function parseMetadata(body: unknown, clientId?: string): JsonObject {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badMetadata('(body)', 'the request body must be a JSON object of client metadata');
  }
  const sent = body as Record<string, unknown>;
  // RFC 7592 §2.2: an update names the client it updates; a secret, if sent, is not a new one.
  if (clientId !== undefined && sent.client_id !== undefined && sent.client_id !== clientId) {
    throw badMetadata('client_id', 'client_id does not match the client being updated');
  }
  const parsed = RegistrationMetadata.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? '(body)');
    throw badMetadata(field, `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data as JsonObject;
}

/** The service's refusals as RFC 7591 errors: the provider's schema, or a rule of ours. */
function serviceFailure(err: unknown): never {
  if (err instanceof ClientMetadataError) {
    throw badMetadata(/^([a-z_]+)/.exec(err.description)?.[1] ?? '(body)', err.description);
  }
  if (err instanceof AppError && err.status < 500) {
    throw badMetadata('(body)', err.message);
  }
  throw err;
}

function bearerOf(ctx: Context): string | undefined {
  const match = /^Bearer +([\x21-\x7E]+) *$/i.exec(ctx.get('Authorization'));
  return match?.[1];
}

function unauthorized(issuer: string, presented: boolean, description: string): RegistrationFailure {
  return new RegistrationFailure({
    status: 401,
    error: 'invalid_token',
    error_description: description,
    challenge: `Bearer realm="${issuer}"${presented ? ', error="invalid_token"' : ''}`,
  });
}

/** RFC 7591 §3.2.1 / RFC 7592 §3: the registered metadata and how to manage the client. */
function clientInformation(
  issuer: string,
  client: ClientRecord,
  extra: { client_secret?: string; registration_access_token: string },
) {
  const m = client.metadata;
  const registered = Object.fromEntries(REGISTRABLE_METADATA.filter((k) => k in m).map((k) => [k, m[k]]));
  return {
    client_id: client.client_id,
    ...(extra.client_secret ? { client_secret: extra.client_secret } : {}),
    client_id_issued_at: Math.floor(client.created_at.getTime() / 1000),
    ...(client.client_secret_hash ? { client_secret_expires_at: 0 } : {}),
    ...registered,
    registration_access_token: extra.registration_access_token,
    registration_client_uri: `${issuer}${PROVIDER_ROUTES.registration}/${encodeURIComponent(client.client_id)}`,
  };
}

export function registrationRouter(deps: { registration: DynamicRegistration; issuer: string }): Router {
  const { registration, issuer } = deps;
  const router = new Router();
  const readBody = jsonBody({ limit: 256 * 1024 });

  // Every answer is JSON, never cached (it may carry secrets), errors in the RFC's shape.
  router.use(async (ctx: Context, next: Next) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Pragma', 'no-cache');
    try {
      await next();
    } catch (err) {
      let failure: Failure | undefined;
      if (err instanceof RegistrationFailure) failure = err.failure;
      else if (err instanceof AppError && err.status < 500) {
        // The body reader's refusals (not JSON, too large, not UTF-8).
        failure = {
          status: err.status === 413 || err.status === 415 ? err.status : 400,
          error: 'invalid_client_metadata',
          error_description: err.message,
        };
      }
      if (!failure) throw err;
      const { status, challenge, ...body } = failure;
      if (challenge) ctx.set('WWW-Authenticate', challenge);
      ctx.status = status;
      ctx.body = body;
    }
  });

  const path = PROVIDER_ROUTES.registration;

  router.post(path, async (ctx) => {
    const bearer = bearerOf(ctx);
    const initial = await registration.admit(bearer);
    if (initial === undefined) {
      throw unauthorized(
        issuer,
        bearer !== undefined,
        bearer === undefined
          ? 'an initial access token is required'
          : 'the initial access token is invalid, expired or revoked',
      );
    }
    if (!ctx.is('application/json')) throw badMetadata('(body)', 'the request body must be application/json');
    await readBody(ctx, async () => undefined);
    const metadata = parseMetadata(ctx.request.body);
    const created: RegisteredClient = await registration
      .register(metadata, initial, requestFacts(ctx))
      .catch(serviceFailure);
    ctx.status = 201;
    ctx.set('Location', `${issuer}${path}/${encodeURIComponent(created.client.client_id)}`);
    ctx.body = clientInformation(issuer, created.client, created);
  });

  /** The client the path names, when the request carries its registration access token. */
  async function ownClient(ctx: Context): Promise<{ client: ClientRecord; token: string }> {
    const bearer = bearerOf(ctx);
    const client = await registration.authorizeClient(String(ctx.params.client_id), bearer);
    // RFC 7592 §2.1: an unknown client, or one the token is not for, is a 401 like a bad token.
    if (!client || bearer === undefined) {
      throw unauthorized(
        issuer,
        bearer !== undefined,
        bearer === undefined
          ? 'a registration access token is required'
          : 'the registration access token is not valid for this client',
      );
    }
    return { client, token: bearer };
  }

  router.get(`${path}/:client_id`, async (ctx) => {
    const { client, token } = await ownClient(ctx);
    ctx.body = clientInformation(issuer, client, { registration_access_token: token });
  });

  router.put(`${path}/:client_id`, async (ctx) => {
    const { client, token } = await ownClient(ctx);
    if (!ctx.is('application/json')) throw badMetadata('(body)', 'the request body must be application/json');
    await readBody(ctx, async () => undefined);
    const metadata = parseMetadata(ctx.request.body, client.client_id);
    const secret = (ctx.request.body as { client_secret?: unknown }).client_secret;
    if (secret !== undefined && !verifyClientSecret(client.client_secret_hash ?? '', secret)) {
      throw badMetadata('client_secret', 'client_secret does not match the client secret issued');
    }
    const updated = await registration.replace(client, metadata, requestFacts(ctx)).catch(serviceFailure);
    if (!updated)
      throw unauthorized(issuer, true, 'the registration access token is not valid for this client');
    ctx.body = clientInformation(issuer, updated.client, {
      ...(updated.client_secret ? { client_secret: updated.client_secret } : {}),
      registration_access_token: token,
    });
  });

  router.delete(`${path}/:client_id`, async (ctx) => {
    const { client } = await ownClient(ctx);
    await registration.remove(client, requestFacts(ctx)).catch(serviceFailure);
    ctx.status = 204;
  });

  return router;
}
