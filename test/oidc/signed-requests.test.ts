/**
 * Key-based clients with openid-client, on every backend pair: a client registered through /v2 with
 * a public key (private_key_jwt), required to send signed request objects (JAR, RFC 9101) and to
 * push them (PAR, RFC 9126); the authorization response names the issuer (RFC 9207); and the client
 * gets its introspection answers as signed JWTs (RFC 9701), verified here with jose against our JWKS.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

import { adminApi, type AdminApi } from '../helpers/admin-api.js';
import { createUser } from '../helpers/fixtures.js';
import { FormBrowser } from '../helpers/form-browser.js';
import { authorizationRequest, signIn } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const REDIRECT = 'https://keyed.example.com/callback';

describe.each(availableBackends())(
  'signed and pushed requests, durable=$durable, short-lived=$shortLived',
  (backends) => {
    let server: TestServer;
    let api: AdminApi;
    let config: oidc.Configuration;
    let signingKey: oidc.PrivateKey;

    beforeAll(async () => {
      server = await startTestServer(backends);
      api = await adminApi(server.t);
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      const jwk = { ...(await exportJWK(publicKey)), kid: 'client-key-1', alg: 'ES256', use: 'sig' };
      const created = await api.post('/v2/clients', {
        kind: 'web',
        client_name: 'Keyed app',
        redirect_uris: [REDIRECT],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [jwk] },
        require_signed_request_object: true,
        require_pushed_authorization_requests: true,
        introspection_signed_response_alg: 'ES256',
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        require_signed_request_object: true,
        require_pushed_authorization_requests: true,
        introspection_signed_response_alg: 'ES256',
      });
      expect(created.body.client_secret).toBeUndefined();
      signingKey = { key: privateKey, kid: 'client-key-1' };
      config = await oidc.discovery(
        new URL(server.url),
        created.body.client_id,
        { introspection_signed_response_alg: 'ES256' },
        oidc.PrivateKeyJwt(signingKey),
        { execute: [oidc.allowInsecureRequests] },
      );
    });
    afterAll(() => server?.close());

    it('refuses a plain authorization request from a client that must sign and push', async () => {
      const request = await authorizationRequest(config, REDIRECT, 'openid');
      const page = await new FormBrowser(server.url).go(request.url.toString());
      // The redirect URI is the client's own, so the refusal goes back to it (RFC 6749 §4.1.2.1).
      expect(page.status).toBe(0);
      const back = new URL(page.url);
      expect(back.origin + back.pathname).toBe(REDIRECT);
      expect(back.searchParams.get('error')).toBe('invalid_request');
      expect(back.searchParams.get('error_description')).toMatch(
        /pushed authorization request|request object/i,
      );
    });

    it('signs in with a signed, pushed request; the response names the issuer; introspection answers as a JWT', async () => {
      const meta = config.serverMetadata();
      expect(meta.request_parameter_supported).toBe(true);
      expect(meta.authorization_response_iss_parameter_supported).toBe(true);
      expect(meta.token_endpoint_auth_methods_supported).toContain('private_key_jwt');
      expect(meta.introspection_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256']));

      const { email, password, user } = await createUser(server.t);
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const jar = await oidc.buildAuthorizationUrlWithJAR(
        config,
        {
          redirect_uri: REDIRECT,
          scope: 'openid email',
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
          state,
          nonce,
        },
        signingKey,
      );
      expect(jar.searchParams.get('request')).toMatch(/^ey/);
      const url = await oidc.buildAuthorizationUrlWithPAR(config, jar.searchParams);
      expect(url.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);

      const page = await signIn(new FormBrowser(server.url), url, { email, password });
      expect(page.status).toBe(0);
      const callback = new URL(page.url);
      expect(callback.searchParams.get('iss')).toBe(server.url);
      const tokens = await oidc.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
      });
      expect(tokens.claims()).toMatchObject({ sub: user.id, email });

      // openid-client verifies the signed introspection answer itself.
      const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
      expect(introspected).toMatchObject({
        active: true,
        sub: user.id,
        client_id: config.clientMetadata().client_id,
      });

      // The same answer read raw: a JWT of type token-introspection+jwt signed with our keys.
      const raw = await fetch(`${server.url}/oauth/introspect`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/token-introspection+jwt',
        },
        body: new URLSearchParams({
          token: tokens.access_token,
          client_id: config.clientMetadata().client_id,
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: await clientAssertion(config, signingKey, `${server.url}/oauth/introspect`),
        }),
      });
      expect(raw.status).toBe(200);
      expect(raw.headers.get('content-type')).toMatch(/^application\/token-introspection\+jwt/);
      const { payload, protectedHeader } = await jwtVerify(
        await raw.text(),
        createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`)),
        { issuer: server.url },
      );
      expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'token-introspection+jwt' });
      expect(payload.token_introspection).toMatchObject({ active: true, sub: user.id });
    });
  },
);

/** A private_key_jwt client assertion for `audience`, made with jose. */
async function clientAssertion(config: oidc.Configuration, key: oidc.PrivateKey, audience: string) {
  const { SignJWT } = await import('jose');
  const clientId = config.clientMetadata().client_id;
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience([audience, config.serverMetadata().issuer])
    .setJti(oidc.randomState())
    .setIssuedAt()
    .setExpirationTime('1m')
    .sign(key.key);
}
