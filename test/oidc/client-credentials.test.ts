/**
 * Client credentials for service clients, limited to each client's allowed scope, and resource
 * indicators (RFC 8707): a registered API gets RFC 9068 JWT access tokens with its identifier as
 * audience and only its own scopes; without a resource the token is opaque.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { registerClient } from '../helpers/fixtures.js';
import { discover, oauthFailure } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

describe.each(availableBackends())(
  'client credentials with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
    });
    afterAll(() => server.close());

    it('POST /oauth/token issues an opaque token with the allowed scope to a service client', async () => {
      const service = await registerClient(server.t, 'service');
      const config = await discover(server.url, service);
      const tokens = await oidc.clientCredentialsGrant(config, { scope: 'user:read' });
      expect(tokens).toEqual({
        access_token: expect.any(String),
        token_type: 'bearer',
        expires_in: server.t.config.clientCredentialsTtlS,
        scope: 'user:read',
      });
      // Not a JWT: only introspection can tell what it is.
      expect(tokens.access_token.split('.')).toHaveLength(1);
      expect(() => decodeJwt(tokens.access_token)).toThrow();

      const info = await oidc.tokenIntrospection(config, tokens.access_token);
      expect(info).toMatchObject({ active: true, client_id: service.clientId, scope: 'user:read' });
      // RFC 9068 §2.2, as the JWT form says: without a user, sub is the client.
      expect(info.sub).toBe(service.clientId);
    });

    it('POST /oauth/token refuses a scope outside the client’s allowed scope with invalid_scope', async () => {
      const service = await registerClient(server.t, 'service');
      const config = await discover(server.url, service);
      expect(await oauthFailure(oidc.clientCredentialsGrant(config, { scope: 'user:write' }))).toEqual({
        status: 400,
        error: 'invalid_scope',
        error_description: 'requested scope is not allowed: user:write',
      });
      // One disallowed scope spoils the request even beside allowed ones.
      expect(
        await oauthFailure(oidc.clientCredentialsGrant(config, { scope: 'user:read user:write' })),
      ).toMatchObject({ error: 'invalid_scope' });
    });

    it('POST /oauth/token refuses client credentials to a client not registered for the grant', async () => {
      const web = await registerClient(server.t, 'web');
      const config = await discover(server.url, web);
      // RFC 6749 §5.2 would allow unauthorized_client; oidc-provider answers invalid_request.
      expect(await oauthFailure(oidc.clientCredentialsGrant(config, { scope: 'openid' }))).toEqual({
        status: 400,
        error: 'invalid_request',
        error_description: 'requested grant type is not allowed for this client',
      });
    });

    describe('resource indicators (RFC 8707)', () => {
      const API = 'https://api.example.com';
      beforeAll(async () => {
        await server.t.stores.durable.resourceServers.create({
          identifier: API,
          name: 'Example API',
          scopes: ['user:read', 'user:write'],
          access_token_format: 'jwt',
          access_token_ttl: 600,
        });
      });

      it('issues an RFC 9068 JWT for a registered resource, verifiable with the JWKS', async () => {
        // Allowed user:read and role:manage; the API defines user:read and user:write.
        const service = await registerClient(server.t, 'service', {
          metadata: { scope: 'user:read role:manage' },
        });
        const config = await discover(server.url, service);
        const tokens = await oidc.clientCredentialsGrant(config, {
          scope: 'user:read role:manage',
          resource: API,
        });
        // role:manage is not the API's scope, user:write is not the client's: only user:read is left.
        expect(tokens.scope).toBe('user:read');

        const jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
        const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, {
          issuer: server.url,
          audience: API,
          typ: 'at+jwt',
          algorithms: ['RS256'],
        });
        expect(protectedHeader.typ).toBe('at+jwt');
        expect(protectedHeader.kid).toEqual(expect.any(String));
        expect(payload).toMatchObject({
          iss: server.url,
          aud: API,
          client_id: service.clientId,
          // RFC 9068 §2.2: without a user, sub is the client.
          sub: service.clientId,
          scope: 'user:read',
          jti: expect.any(String),
        });
        // The API's own token lifetime, not CLIENT_CREDENTIALS_TTL_S.
        expect(tokens.expires_in).toBe(600);
        expect(payload.exp! - payload.iat!).toBe(600);
      });

      it('refuses an unknown resource with invalid_target', async () => {
        const service = await registerClient(server.t, 'service');
        const config = await discover(server.url, service);
        expect(
          await oauthFailure(
            oidc.clientCredentialsGrant(config, {
              scope: 'user:read',
              resource: 'https://unknown.example.com',
            }),
          ),
        ).toEqual({
          status: 400,
          error: 'invalid_target',
          error_description: 'unknown or unregistered resource indicator',
        });
      });

      it('issues an opaque token, not a JWT, when no resource is named', async () => {
        const service = await registerClient(server.t, 'service');
        const config = await discover(server.url, service);
        const tokens = await oidc.clientCredentialsGrant(config, { scope: 'user:read' });
        expect(() => decodeProtectedHeader(tokens.access_token)).toThrow();
        const info = await oidc.tokenIntrospection(config, tokens.access_token);
        expect(info.active).toBe(true);
        expect(info.aud).toBeUndefined();
      });
    });
  },
);
