/**
 * Discovery: the OpenID Connect and RFC 8414 documents are one document, every endpoint sits under
 * /oauth, only the code flow with PKCE S256 is offered, and behind a TLS-terminating proxy the
 * advertised URLs are https exactly when the proxy is trusted.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { registerClient } from '../helpers/fixtures.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

type Metadata = Record<string, unknown>;

const ISSUER = 'https://id.example.test';

async function metadata(url: string, headers: Record<string, string> = {}): Promise<Metadata> {
  const res = await fetch(url, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/(jwk-set\+)?json/);
  return (await res.json()) as Metadata;
}

const ENDPOINTS = {
  authorization_endpoint: '/oauth/authorize',
  token_endpoint: '/oauth/token',
  userinfo_endpoint: '/oauth/userinfo',
  introspection_endpoint: '/oauth/introspect',
  revocation_endpoint: '/oauth/revoke',
  jwks_uri: '/oauth/jwks',
  end_session_endpoint: '/oauth/logout',
} as const;

describe.each(availableBackends())(
  'discovery with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
    });
    afterAll(() => server.close());

    it('GET /.well-known/oauth-authorization-server serves the same document as /.well-known/openid-configuration', async () => {
      const openid = await metadata(`${server.url}/.well-known/openid-configuration`);
      const oauth = await metadata(`${server.url}/.well-known/oauth-authorization-server`);
      expect(oauth).toEqual(openid);
      expect(openid.issuer).toBe(server.url);
    });

    it('advertises every endpoint under /oauth on the issuer', async () => {
      const doc = await metadata(`${server.url}/.well-known/openid-configuration`);
      for (const [name, path] of Object.entries(ENDPOINTS)) expect(doc[name]).toBe(`${server.url}${path}`);
      // Nothing the provider serves lives outside /oauth (PAR included).
      for (const [name, value] of Object.entries(doc)) {
        if (name.endsWith('_endpoint') || name === 'jwks_uri') {
          expect(String(value).startsWith(`${server.url}/oauth/`)).toBe(true);
        }
      }
    });

    it('offers response_type code only, PKCE S256, and no implicit or hybrid flow', async () => {
      const doc = await metadata(`${server.url}/.well-known/openid-configuration`);
      // Not `none` either: no client may use it (the built-in account page uses code).
      expect(doc.response_types_supported).toEqual(['code']);
      expect(doc.code_challenge_methods_supported).toEqual(['S256']);
      expect(doc.grant_types_supported).toEqual([
        'authorization_code',
        'refresh_token',
        'client_credentials',
        // The device authorization grant (RFC 8628), for clients of kind `device`.
        'urn:ietf:params:oauth:grant-type:device_code',
        // API keys exchanged for access tokens (README: API keys, plans and quotas).
        'urn:latchkey:params:oauth:grant-type:api-key',
        'urn:ietf:params:oauth:grant-type:token-exchange',
      ]);
      expect(doc.authorization_response_iss_parameter_supported).toBe(true);
      // client_secret_jwt cannot work with secrets stored as hashes, so it is not offered.
      expect(doc.token_endpoint_auth_methods_supported).toEqual([
        'client_secret_basic',
        'client_secret_post',
        'private_key_jwt',
        'none',
      ]);
      expect(doc.scopes_supported).toEqual(
        expect.arrayContaining(['openid', 'profile', 'email', 'roles', 'offline_access']),
      );
    });

    it('lists in claims_supported the claims tokens and userinfo carry, sid included (back-channel logout)', async () => {
      const doc = await metadata(`${server.url}/.well-known/openid-configuration`);
      expect([...(doc.claims_supported as string[])].sort()).toEqual(
        [
          'sub',
          'amr',
          'acr',
          'idp',
          'name',
          'given_name',
          'family_name',
          'updated_at',
          'email',
          'email_verified',
          'roles',
          'sid',
          'auth_time',
          'iss',
        ].sort(),
      );
      expect(doc.backchannel_logout_supported).toBe(true);
      expect(doc.backchannel_logout_session_supported).toBe(true);
      expect(doc).not.toHaveProperty('frontchannel_logout_supported');
    });

    it('is what openid-client discovers, and its JWKS holds an RS256 and an ES256 public key', async () => {
      const client = await registerClient(server.t, 'spa');
      const config = await oidc.discovery(new URL(server.url), client.clientId, undefined, oidc.None(), {
        execute: [oidc.allowInsecureRequests],
      });
      const doc = config.serverMetadata();
      expect(doc.issuer).toBe(server.url);
      expect(doc.token_endpoint).toBe(`${server.url}/oauth/token`);

      const jwks = (await metadata(`${server.url}/oauth/jwks`)) as { keys: Record<string, unknown>[] };
      expect(jwks.keys.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);
      for (const key of jwks.keys) {
        expect(key.use).toBe('sig');
        expect(key.kid).toEqual(expect.any(String));
        // Public parts only.
        for (const privatePart of ['d', 'p', 'q', 'dp', 'dq', 'qi'])
          expect(key).not.toHaveProperty(privatePart);
      }
    });

    describe('behind a TLS-terminating proxy', () => {
      let trusted: TestServer;
      let untrusted: TestServer;
      beforeAll(async () => {
        trusted = await startTestServer({ durable, shortLived, env: { TRUST_PROXY: 'true', ISSUER } });
        untrusted = await startTestServer({ durable, shortLived, env: { TRUST_PROXY: 'false', ISSUER } });
      });
      afterAll(async () => {
        await trusted.close();
        await untrusted.close();
      });

      it('advertises https endpoint URLs when TRUST_PROXY=true and the proxy sends X-Forwarded-Proto: https', async () => {
        const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'id.example.test' };
        const openid = await metadata(`${trusted.url}/.well-known/openid-configuration`, forwarded);
        const oauth = await metadata(`${trusted.url}/.well-known/oauth-authorization-server`, forwarded);
        expect(oauth).toEqual(openid);
        expect(openid.issuer).toBe(ISSUER);
        for (const [name, path] of Object.entries(ENDPOINTS)) expect(openid[name]).toBe(`${ISSUER}${path}`);
      });

      it('uses the forwarded scheme with the request Host when the proxy sends no X-Forwarded-Host', async () => {
        const host = new URL(trusted.url).host;
        const doc = await metadata(`${trusted.url}/.well-known/openid-configuration`, {
          'x-forwarded-proto': 'https',
        });
        expect(doc.token_endpoint).toBe(`https://${host}/oauth/token`);
      });

      it('ignores X-Forwarded-* headers when the proxy is not trusted', async () => {
        const doc = await metadata(`${untrusted.url}/.well-known/openid-configuration`, {
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'attacker.example',
        });
        expect(doc.token_endpoint).toBe(`${untrusted.url}/oauth/token`);
      });
    });
  },
);
