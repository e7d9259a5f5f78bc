/**
 * What happens to tokens after they are issued: refresh (offline_access only, rotation for public
 * clients, reuse detection that revokes the grant), introspection (RFC 7662) for authenticated
 * clients only, and revocation (RFC 7009).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';

import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { codeFlow, discover, oauthFailure } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';

const INVALID_GRANT = { status: 400, error: 'invalid_grant', error_description: 'grant request is invalid' };
const INVALID_TOKEN = { status: 401, error: 'invalid_token', error_description: 'invalid token provided' };

/** offline_access is only honoured together with prompt=consent (OpenID Connect Core §11). */
const OFFLINE = { scope: 'openid email offline_access', params: { prompt: 'consent' } };

describe.each(availableBackends())(
  'tokens with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    /** A resource server's client, authenticated, used to introspect. */
    let gateway: oidc.Configuration;
    let spa: TestClient;
    let spaConfig: oidc.Configuration;
    beforeAll(async () => {
      server = await startTestServer({ durable, shortLived });
      gateway = await discover(server.url, await registerClient(server.t, 'service'));
      spa = await registerClient(server.t, 'spa');
      spaConfig = await discover(server.url, spa);
    });
    afterAll(() => server.close());

    describe('refresh', () => {
      it('POST /oauth/token issues a refresh token only when offline_access is granted', async () => {
        const user = await createUser(server.t);
        const without = await codeFlow(spaConfig, spa, user, { scope: 'openid email' });
        expect(without.tokens.refresh_token).toBeUndefined();

        // Asked for without prompt=consent, offline_access is dropped from the grant.
        const unprompted = await codeFlow(spaConfig, spa, user, { scope: 'openid offline_access' });
        expect(unprompted.tokens.scope).toBe('openid');
        expect(unprompted.tokens.refresh_token).toBeUndefined();

        const offline = await codeFlow(spaConfig, spa, user, OFFLINE);
        expect(offline.tokens.scope).toBe('openid email offline_access');
        expect(offline.tokens.refresh_token).toEqual(expect.any(String));
      });

      it('POST /oauth/token rotates a public client’s refresh token on every use', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, OFFLINE);
        const seen = new Set([tokens.refresh_token!]);
        let current = tokens.refresh_token!;
        for (let i = 0; i < 3; i += 1) {
          const next = await oidc.refreshTokenGrant(spaConfig, current);
          expect(next.refresh_token).toEqual(expect.any(String));
          expect(seen.has(next.refresh_token!)).toBe(false);
          seen.add(next.refresh_token!);
          expect(next.claims()?.sub).toBe(user.user.id);
          const info = await oidc.fetchUserInfo(spaConfig, next.access_token, user.user.id);
          expect(info.email).toBe(user.email);
          current = next.refresh_token!;
        }
      });

      it('POST /oauth/token keeps a confidential client’s refresh token (no rotation before 70% of its lifetime)', async () => {
        const user = await createUser(server.t);
        const web = await registerClient(server.t, 'web');
        const config = await discover(server.url, web);
        const { tokens } = await codeFlow(config, web, user, OFFLINE);
        const first = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
        const second = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
        expect(first.refresh_token).toBe(tokens.refresh_token);
        expect(second.refresh_token).toBe(tokens.refresh_token);
        expect(second.access_token).not.toBe(first.access_token);
      });

      it('POST /oauth/token refuses a reused refresh token with invalid_grant and revokes the grant', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, OFFLINE);
        const second = await oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!);
        const third = await oidc.refreshTokenGrant(spaConfig, second.refresh_token!);
        expect((await oidc.tokenIntrospection(gateway, third.access_token)).active).toBe(true);

        // An attacker (or a confused client) presents the first, already rotated token.
        expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!))).toEqual(
          INVALID_GRANT,
        );

        // Reuse means theft: the legitimate holder's newest tokens stop working too.
        expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, third.refresh_token!))).toEqual(
          INVALID_GRANT,
        );
        expect(await oidc.tokenIntrospection(gateway, third.access_token)).toEqual({ active: false });
        expect(await oidc.tokenIntrospection(gateway, third.refresh_token!)).toEqual({ active: false });
        expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, third.access_token, user.user.id))).toEqual(
          INVALID_TOKEN,
        );
      });

      it('POST /oauth/token refuses another client’s refresh token with invalid_grant', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, OFFLINE);
        const other = await discover(server.url, await registerClient(server.t, 'spa'));
        expect(await oauthFailure(oidc.refreshTokenGrant(other, tokens.refresh_token!))).toEqual(
          INVALID_GRANT,
        );
        // The rightful owner is unaffected.
        expect((await oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!)).access_token).toEqual(
          expect.any(String),
        );
      });
    });

    describe('POST /oauth/introspect (RFC 7662)', () => {
      it('describes an active access token and refresh token to an authenticated client', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, OFFLINE);
        const access = await oidc.tokenIntrospection(gateway, tokens.access_token);
        const now = Math.floor(Date.now() / 1000);
        expect(access).toEqual({
          active: true,
          sub: user.user.id,
          client_id: spa.clientId,
          scope: 'openid email offline_access',
          iss: server.url,
          token_type: 'Bearer',
          iat: expect.any(Number),
          exp: expect.any(Number),
          // The email scope was granted: the user's address, which is also the user name here.
          email: user.user.email,
          username: user.user.email,
        });
        expect(Math.abs(access.iat! - now)).toBeLessThanOrEqual(5);
        expect(access.exp! - access.iat!).toBe(server.t.config.accessTokenTtlS);

        const refresh = await oidc.tokenIntrospection(gateway, tokens.refresh_token!, {
          token_type_hint: 'refresh_token',
        });
        expect(refresh).toMatchObject({ active: true, sub: user.user.id, client_id: spa.clientId });
        expect(refresh.token_type).toBeUndefined();
      });

      it('answers { active: false } to a public client, even for its own token', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
        expect(await oidc.tokenIntrospection(spaConfig, tokens.access_token)).toEqual({ active: false });
        // The same token is active for an authenticated client: the refusal is about the caller.
        expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);
      });

      it('refuses a request without client authentication with 401 invalid_client and a Basic challenge', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
        const res = await fetch(`${server.url}/oauth/introspect`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: tokens.access_token }),
        });
        expect(res.status).toBe(401);
        expect(res.headers.get('cache-control')).toBe('no-store');
        expect(res.headers.get('www-authenticate')).toBe(`Basic realm="${server.url}"`);
        expect(await res.json()).toEqual({
          error: 'invalid_client',
          error_description: 'client authentication is required',
        });
      });

      it('refuses a wrong client secret with 401 invalid_client', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
        const service = await registerClient(server.t, 'service');
        const wrong = await discover(server.url, service, 'client_secret_basic', 'not-the-secret');
        expect(await oauthFailure(oidc.tokenIntrospection(wrong, tokens.access_token))).toEqual({
          status: 401,
          error: 'invalid_client',
          error_description: 'client authentication failed',
        });
      });

      it('answers { active: false } for a token it never issued', async () => {
        expect(await oidc.tokenIntrospection(gateway, 'not-a-token-we-issued')).toEqual({ active: false });
      });
    });

    describe('POST /oauth/revoke (RFC 7009)', () => {
      it('revoking an access token makes it inactive, and with it the tokens issued under its grant', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, OFFLINE);
        await oidc.tokenRevocation(spaConfig, tokens.access_token, { token_type_hint: 'access_token' });
        expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
        expect(await oauthFailure(oidc.fetchUserInfo(spaConfig, tokens.access_token, user.user.id))).toEqual(
          INVALID_TOKEN,
        );
        // oidc-provider also revokes the refresh token (RFC 7009 §2.1 allows it): a client revoking
        // its access token on sign-out does not leave a live refresh token behind.
        expect(await oidc.tokenIntrospection(gateway, tokens.refresh_token!)).toEqual({ active: false });
        expect(await oauthFailure(oidc.refreshTokenGrant(spaConfig, tokens.refresh_token!))).toEqual(
          INVALID_GRANT,
        );
      });

      it('revoking a refresh token ends the grant: the refresh token and its access tokens become inactive', async () => {
        const user = await createUser(server.t);
        const web = await registerClient(server.t, 'web');
        const config = await discover(server.url, web);
        const { tokens } = await codeFlow(config, web, user, OFFLINE);
        await oidc.tokenRevocation(config, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
        expect(await oidc.tokenIntrospection(gateway, tokens.refresh_token!)).toEqual({ active: false });
        expect(await oidc.tokenIntrospection(gateway, tokens.access_token)).toEqual({ active: false });
        expect(await oauthFailure(oidc.refreshTokenGrant(config, tokens.refresh_token!))).toEqual(
          INVALID_GRANT,
        );
      });

      it('revokes a client-credentials token', async () => {
        const service = await registerClient(server.t, 'service');
        const config = await discover(server.url, service);
        const { access_token } = await oidc.clientCredentialsGrant(config, { scope: 'user:read' });
        await oidc.tokenRevocation(config, access_token);
        expect(await oidc.tokenIntrospection(gateway, access_token)).toEqual({ active: false });
      });

      it('answers 200 for a token it does not know, as RFC 7009 requires', async () => {
        await expect(oidc.tokenRevocation(spaConfig, 'not-a-token-we-issued')).resolves.toBeUndefined();
      });

      it('refuses to let a confidential client revoke another client’s token', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
        const web = await discover(server.url, await registerClient(server.t, 'web'));
        expect(await oauthFailure(oidc.tokenRevocation(web, tokens.access_token))).toEqual({
          status: 400,
          error: 'invalid_request',
          error_description: 'client is not authorized to revoke the presented token',
        });
        expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);
      });

      it('ignores a public client’s attempt to revoke another client’s token', async () => {
        const user = await createUser(server.t);
        const { tokens } = await codeFlow(spaConfig, spa, user, { scope: 'openid' });
        const otherSpa = await discover(server.url, await registerClient(server.t, 'spa'));
        await expect(oidc.tokenRevocation(otherSpa, tokens.access_token)).resolves.toBeUndefined();
        expect((await oidc.tokenIntrospection(gateway, tokens.access_token)).active).toBe(true);
      });
    });
  },
);
