/**
 * Token exchange (RFC 8693) with openid-client's generic grant request as the client, on every
 * backend pair: a back-end service exchanges a user's token from a single-page app for a token to
 * another API, by delegation (its own token as actor: the `act` claim) or impersonation; scopes only
 * narrow; the client's `token_exchange` policy decides whose tokens and which APIs; ID tokens as
 * subjects; nested actors; refusals in RFC 6749 §5.2 form; the audit trail; /v2/clients validation.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, exportJWK, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { codeFlow, discover, oauthFailure } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

describe.each(availableBackends())(
  'token exchange, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let api: AdminApi;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    let gateway: oidc.Configuration;
    /** The API the single-page app calls, and the one behind it the back end calls for the user. */
    let frontApi: string;
    let ordersApi: string;
    const tag = randomBytes(4).toString('hex');

    /** A confidential service allowed to exchange, through POST /v2/clients. */
    async function exchanger(policy: Record<string, unknown>, over: Record<string, unknown> = {}) {
      const res = await api.post('/v2/clients', {
        kind: 'service',
        client_name: 'Exchanging service',
        grant_types: ['client_credentials', GRANT],
        token_exchange: policy,
        ...over,
      });
      expect(res.status).toBe(201);
      const body = res.body as { client_id: string; client_secret: string };
      const config = await oidc.discovery(
        new URL(server.url),
        body.client_id,
        undefined,
        oidc.ClientSecretBasic(body.client_secret),
        { execute: [oidc.allowInsecureRequests] },
      );
      return { clientId: body.client_id, config };
    }

    /** A user's access token for the front API, and the ID token, from a real code flow in the SPA. */
    async function userTokens(scope = 'openid orders:read orders:write') {
      const user = await createUser(server.t);
      const { tokens } = await codeFlow(spaConfig, spa, user, {
        scope,
        params: { resource: frontApi },
      });
      return { user, accessToken: tokens.access_token, idToken: tokens.id_token! };
    }

    /** A subject access token with an actor access token (delegation). */
    const delegated = (subject: string, actor: string) => ({
      subject_token: subject,
      subject_token_type: ACCESS_TOKEN,
      actor_token: actor,
      actor_token_type: ACCESS_TOKEN,
    });

    const exchange = (config: oidc.Configuration, params: Record<string, string>) =>
      oidc.genericGrantRequest(config, GRANT, params);

    beforeAll(async () => {
      server = await startTestServer(backends);
      api = await adminApi(server.t);
      frontApi = `https://front-${tag}.example.com/`;
      ordersApi = `https://orders-${tag}.example.com/`;
      for (const identifier of [frontApi, ordersApi]) {
        const res = await api.post('/v2/resources', {
          identifier,
          name: `API ${identifier}`,
          scopes: ['orders:read', 'orders:write'],
          access_token_format: 'jwt',
          access_token_ttl: 600,
        });
        expect(res.status).toBe(201);
      }
      spa = await registerClient(server.t, 'spa', { firstParty: true });
      spaConfig = await discover(server.url, spa);
      gateway = await discover(server.url, await registerClient(server.t, 'service'));
    });
    afterAll(() => server?.close());

    it('discovery lists the grant type', () => {
      expect(spaConfig.serverMetadata().grant_types_supported).toContain(GRANT);
    });

    it('delegation: the service’s own token as actor; the new token is the user’s, for the other API, with act', async () => {
      const { user, accessToken } = await userTokens();
      const service = await exchanger({ subject_clients: [spa.clientId], audiences: [ordersApi] });
      const own = await oidc.clientCredentialsGrant(service.config, {});

      const issued = await exchange(service.config, {
        ...delegated(accessToken, own.access_token),
        audience: ordersApi,
        scope: 'orders:read',
      });
      expect(issued).toMatchObject({
        issued_token_type: ACCESS_TOKEN,
        token_type: 'bearer',
        scope: 'orders:read',
        expires_in: expect.any(Number),
      });
      expect(issued.refresh_token).toBeUndefined();
      // A JWT access token (RFC 9068) for the orders API, signed with the server's published keys.
      const jwks = createRemoteJWKSet(new URL(spaConfig.serverMetadata().jwks_uri!));
      const { payload } = await jwtVerify(issued.access_token, jwks, {
        issuer: spaConfig.serverMetadata().issuer,
        audience: ordersApi,
        typ: 'at+jwt',
      });
      expect(payload).toMatchObject({
        sub: user.user.id,
        client_id: service.clientId,
        scope: 'orders:read',
        act: { sub: service.clientId, client_id: service.clientId },
      });
      // Never longer-lived than what it came from.
      expect(payload.exp).toBeLessThanOrEqual(decodeJwt(accessToken).exp!);
    });

    it('binds the new token to the key of a DPoP proof sent with the request', async () => {
      const { accessToken } = await userTokens();
      const service = await exchanger({ subject_clients: [spa.clientId], impersonation: true });
      const key = await oidc.randomDPoPKeyPair('ES256');
      const issued = await oidc.genericGrantRequest(
        service.config,
        GRANT,
        { subject_token: accessToken, subject_token_type: ACCESS_TOKEN, scope: 'orders:read' },
        { DPoP: oidc.getDPoPHandle(service.config, key) },
      );
      expect(issued.token_type).toBe('dpop');
      const jkt = await calculateJwkThumbprint(await exportJWK(key.publicKey));
      expect(await oidc.tokenIntrospection(gateway, issued.access_token)).toMatchObject({
        active: true,
        token_type: 'DPoP',
        cnf: { jkt },
      });
      // A DPoP-bound token cannot itself be handed in as a subject.
      expect(
        await oauthFailure(
          exchange(service.config, { subject_token: issued.access_token, subject_token_type: ACCESS_TOKEN }),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_request',
        error_description: 'sender-constrained (DPoP or mTLS) subject tokens cannot be exchanged',
      });
    });

    it('audits each exchange as token.exchanged', async () => {
      const { user, accessToken } = await userTokens();
      const service = await exchanger({ subject_clients: [spa.clientId], audiences: [ordersApi] });
      const own = await oidc.clientCredentialsGrant(service.config, {});
      await exchange(service.config, {
        ...delegated(accessToken, own.access_token),
        resource: ordersApi,
      });
      const res = await api.get('/v2/audit', { action: 'token.exchanged', target_id: user.user.id });
      expect(res.status).toBe(200);
      const entries = (res.body as { data: Record<string, unknown>[] }).data;
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({
        action: 'token.exchanged',
        actor: { type: 'client', id: service.clientId, client_id: service.clientId },
        target: { type: 'user', id: user.user.id },
        details: {
          mode: 'delegation',
          subject_client_id: spa.clientId,
          subject_token_type: ACCESS_TOKEN,
          audience: ordersApi,
          scope: 'orders:read orders:write',
          actor: { sub: service.clientId, client_id: service.clientId },
        },
      });
    });

    it('scopes only narrow: a scope the subject token lacks is invalid_scope', async () => {
      const { accessToken } = await userTokens('openid orders:read');
      const service = await exchanger({
        subject_clients: [spa.clientId],
        audiences: [ordersApi],
        impersonation: true,
      });
      expect(
        await oauthFailure(
          exchange(service.config, {
            subject_token: accessToken,
            subject_token_type: ACCESS_TOKEN,
            audience: ordersApi,
            scope: 'orders:read orders:write',
          }),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_scope',
        error_description: 'requested scope exceeds what the subject token carries',
      });
      // Without scope: what the subject had, for the target.
      const issued = await exchange(service.config, {
        subject_token: accessToken,
        subject_token_type: ACCESS_TOKEN,
        audience: ordersApi,
      });
      expect(issued.scope).toBe('orders:read');
    });

    it('impersonation only when the policy allows it: then no act claim', async () => {
      const { user, accessToken } = await userTokens();
      const strict = await exchanger({ subject_clients: [spa.clientId], audiences: [ordersApi] });
      expect(
        await oauthFailure(
          exchange(strict.config, {
            subject_token: accessToken,
            subject_token_type: ACCESS_TOKEN,
            audience: ordersApi,
          }),
        ),
      ).toEqual({
        status: 400,
        error: 'unauthorized_client',
        error_description:
          'this client may not impersonate (token_exchange.impersonation); send an actor_token to delegate',
      });

      const lenient = await exchanger({
        subject_clients: ['*'],
        audiences: [ordersApi],
        impersonation: true,
      });
      const issued = await exchange(lenient.config, {
        subject_token: accessToken,
        subject_token_type: ACCESS_TOKEN,
        audience: ordersApi,
      });
      const claims = decodeJwt(issued.access_token);
      expect(claims).toMatchObject({ sub: user.user.id, client_id: lenient.clientId, aud: ordersApi });
      expect(claims.act).toBeUndefined();
    });

    it('the policy decides whose tokens, which actors and which APIs', async () => {
      const { accessToken } = await userTokens();
      const other = await exchanger({
        subject_clients: ['someone-else'],
        audiences: [ordersApi],
        impersonation: true,
      });
      expect(
        await oauthFailure(
          exchange(other.config, {
            subject_token: accessToken,
            subject_token_type: ACCESS_TOKEN,
            audience: ordersApi,
          }),
        ),
      ).toMatchObject({ status: 400, error: 'unauthorized_client' });

      const service = await exchanger({
        subject_clients: [spa.clientId],
        audiences: [ordersApi],
        impersonation: true,
      });
      // An API not in the policy.
      expect(
        await oauthFailure(
          exchange(service.config, {
            subject_token: accessToken,
            subject_token_type: ACCESS_TOKEN,
            audience: frontApi,
          }),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_target',
        error_description: 'this client may not exchange tokens for the requested audience',
      });
      // Another client's token as actor (the default allows only the service's own).
      const stranger = await exchanger({ subject_clients: [spa.clientId], audiences: [ordersApi] });
      const strangers = await oidc.clientCredentialsGrant(stranger.config, {});
      expect(
        await oauthFailure(
          exchange(service.config, {
            ...delegated(accessToken, strangers.access_token),
            audience: ordersApi,
          }),
        ),
      ).toMatchObject({ status: 400, error: 'unauthorized_client' });
    });

    it('refuses tokens that are not ours, revoked, or of a suspended user, and unsupported token types', async () => {
      const service = await exchanger({ subject_clients: ['*'], impersonation: true });
      const invalid = {
        status: 400,
        error: 'invalid_request',
        error_description: 'subject_token is invalid, expired or revoked',
      };
      expect(
        await oauthFailure(
          exchange(service.config, { subject_token: 'not-a-token', subject_token_type: ACCESS_TOKEN }),
        ),
      ).toEqual(invalid);

      const { user, accessToken, idToken } = await userTokens();
      expect(
        await oauthFailure(
          exchange(service.config, {
            subject_token: accessToken,
            subject_token_type: 'urn:ietf:params:oauth:token-type:saml2',
          }),
        ),
      ).toMatchObject({ status: 400, error: 'invalid_request' });
      expect(
        await oauthFailure(
          exchange(service.config, {
            subject_token: accessToken,
            subject_token_type: ACCESS_TOKEN,
            requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
          }),
        ),
      ).toMatchObject({ status: 400, error: 'invalid_request' });

      const suspended = await api.put(`/v2/users/${user.user.id}`, { status: 'suspended' });
      expect(suspended.status).toBe(200);
      expect(
        await oauthFailure(
          exchange(service.config, { subject_token: idToken, subject_token_type: ID_TOKEN }),
        ),
      ).toMatchObject({ status: 400, error: 'invalid_request' });

      // A client credentials token stands for no user.
      const own = await oidc.clientCredentialsGrant(service.config, {});
      expect(
        await oauthFailure(
          exchange(service.config, { subject_token: own.access_token, subject_token_type: ACCESS_TOKEN }),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_request',
        error_description: 'subject_token must be a token for a user',
      });
    });

    it('an ID token as subject: an opaque token for the user, introspectable with act; then nested delegation', async () => {
      const { user, idToken } = await userTokens();
      const first = await exchanger({ subject_clients: [spa.clientId] }, { scope: 'openid email' });
      const firstOwn = await oidc.clientCredentialsGrant(first.config, {});
      const issued = await exchange(first.config, {
        subject_token: idToken,
        subject_token_type: ID_TOKEN,
        actor_token: firstOwn.access_token,
        actor_token_type: ACCESS_TOKEN,
        scope: 'openid',
      });
      expect(issued.scope).toBe('openid');
      const introspected = await oidc.tokenIntrospection(gateway, issued.access_token);
      expect(introspected).toMatchObject({
        active: true,
        sub: user.user.id,
        client_id: first.clientId,
        scope: 'openid',
        act: { sub: first.clientId, client_id: first.clientId },
      });

      // The second hop: the prior actor nests inside the new one (RFC 8693 §4.1).
      const second = await exchanger({ subject_clients: [first.clientId], audiences: [ordersApi] });
      const secondOwn = await oidc.clientCredentialsGrant(second.config, {});
      // An ID token subject bounds the scope by the client's own; an access token by its own scope.
      expect(
        await oauthFailure(
          exchange(second.config, {
            ...delegated(issued.access_token, secondOwn.access_token),
            audience: ordersApi,
            scope: 'orders:read',
          }),
        ),
      ).toMatchObject({ status: 400, error: 'invalid_scope' });
      const hop = await exchange(second.config, {
        ...delegated(issued.access_token, secondOwn.access_token),
      });
      const nested = await oidc.tokenIntrospection(gateway, hop.access_token);
      expect(nested).toMatchObject({
        active: true,
        sub: user.user.id,
        act: { sub: second.clientId, act: { sub: first.clientId } },
      });

      // Revoking the token it came from does not revoke this one, but a revoked subject is refused.
      await oidc.tokenRevocation(first.config, issued.access_token);
      expect(
        await oauthFailure(
          exchange(second.config, {
            ...delegated(issued.access_token, secondOwn.access_token),
          }),
        ),
      ).toMatchObject({ status: 400, error: 'invalid_request' });
    });

    it('POST /v2/clients validates the policy: required with the grant, confidential clients only', async () => {
      const missing = await api.post('/v2/clients', {
        kind: 'service',
        client_name: 'No policy',
        grant_types: ['client_credentials', GRANT],
      });
      expect(missing.status).toBe(422);
      expect(JSON.stringify(missing.body)).toContain('token_exchange');

      const publicClient = await api.post('/v2/clients', {
        kind: 'spa',
        client_name: 'Public',
        redirect_uris: ['https://spa.example.com/cb'],
        grant_types: ['authorization_code', GRANT],
        token_exchange: { subject_clients: ['*'] },
      });
      expect(publicClient.status).toBe(422);
      expect(JSON.stringify(publicClient.body)).toContain('confidential clients only');

      const empty = await api.post('/v2/clients', {
        kind: 'service',
        client_name: 'Empty',
        grant_types: ['client_credentials', GRANT],
        token_exchange: { subject_clients: [] },
      });
      expect(empty.status).toBe(400);

      const { clientId } = await exchanger({ subject_clients: ['*'], impersonation: true });
      const read = await api.get(`/v2/clients/${clientId}`);
      expect(read.body).toMatchObject({
        kind: 'service',
        grant_types: ['client_credentials', GRANT],
        token_exchange: { subject_clients: ['*'], impersonation: true },
      });
    });

    it('a client without the grant type is refused', async () => {
      const { accessToken } = await userTokens();
      const plain = await discover(server.url, await registerClient(server.t, 'service'));
      expect(
        await oauthFailure(exchange(plain, { subject_token: accessToken, subject_token_type: ACCESS_TOKEN })),
      ).toMatchObject({ status: 400 });
    });
  },
);
