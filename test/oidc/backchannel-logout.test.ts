/**
 * OpenID Connect Back-Channel Logout 1.0 end to end: an openid-client relying party signs in with a
 * client whose backchannel_logout_uri is a real HTTP receiver on loopback (allowed through the SSRF
 * guard by WEBHOOK_ALLOW_PRIVATE_NETWORKS, as in the webhook tests); when the session ends (the RP
 * sends the browser to /oauth/logout, or an administrator suspends the user) the receiver gets a
 * logout token POSTed as a form, which verifies with jose against the server's published JWKS.
 * A receiver that fails first gets the same token id again on the retry.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';

import { BACKCHANNEL_ENDPOINT_PREFIX } from '../../src/services/backchannel-logout.js';
import { adminClient, errorOf, type AdminClient } from '../helpers/admin-client.js';
import { createUser, registerClient, type TestClient } from '../helpers/fixtures.js';
import { codeFlow, discover, submit } from '../helpers/relying-party.js';
import { availableBackends } from '../helpers/test-app.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import {
  receiverScripts,
  startReceiver,
  type ReceivedRequest,
  type ReceiverScript,
  type WebhookReceiver,
} from '../helpers/webhook-receiver.js';

const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

describe.each(availableBackends())(
  'back-channel logout with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let server: TestServer;
    let admin: AdminClient;
    let jwks: ReturnType<typeof createRemoteJWKSet>;
    const receivers: WebhookReceiver[] = [];

    beforeAll(async () => {
      server = await startTestServer({
        durable,
        shortLived,
        env: {
          WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
          WEBHOOK_POLL_MS: '100',
          BACKCHANNEL_LOGOUT_RETRY_SCHEDULE: '200ms,200ms',
        },
      });
      admin = await adminClient(server);
      jwks = createRemoteJWKSet(new URL(`${server.url}/oauth/jwks`));
    });
    afterAll(async () => {
      await Promise.all(receivers.map((r) => r.close()));
      await server.close();
    });

    async function receiver(script: ReceiverScript = receiverScripts.alwaysOk()) {
      const started = await startReceiver(script);
      receivers.push(started);
      return started;
    }

    /** A confidential web client taking logout tokens at the receiver, and a user signed in to it. */
    async function signedIn(target: WebhookReceiver, metadata: Record<string, unknown> = {}) {
      const client = await registerClient(server.t, 'web', {
        metadata: { backchannel_logout_uri: `${target.url}/backchannel-logout`, ...metadata },
      });
      const user = await createUser(server.t);
      const config = await discover(server.url, client);
      const flow = await codeFlow(config, client, user, { scope: 'openid' });
      return { client, user, config, ...flow };
    }

    /** The logout token of a received request, verified; its header and claims. */
    async function verifiedLogout(req: ReceivedRequest, client: TestClient) {
      expect(req.method).toBe('POST');
      expect(req.path).toBe('/backchannel-logout');
      expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
      const form = new URLSearchParams(req.body);
      expect([...form.keys()]).toEqual(['logout_token']);
      const token = form.get('logout_token')!;
      const { payload, protectedHeader } = await jwtVerify(token, jwks, {
        issuer: server.url,
        audience: client.clientId,
        typ: 'logout+jwt',
        algorithms: ['RS256'],
        requiredClaims: ['iat', 'exp', 'jti', 'sub', 'events'],
      });
      return { payload, header: protectedHeader, token };
    }

    function expectLogoutClaims(payload: JWTPayload, sub: string, sid: unknown) {
      expect(payload.events).toEqual({ [LOGOUT_EVENT]: {} });
      expect(payload.sub).toBe(sub);
      expect(payload.sid).toBe(sid);
      expect(payload).not.toHaveProperty('nonce');
      expect(payload.exp! - payload.iat!).toBe(120);
    }

    it('discovery offers back-channel logout with sessions, and ID tokens carry sid', async () => {
      const metadata = (await (
        await fetch(`${server.url}/.well-known/openid-configuration`)
      ).json()) as Record<string, unknown>;
      expect(metadata.backchannel_logout_supported).toBe(true);
      expect(metadata.backchannel_logout_session_supported).toBe(true);
      expect(metadata.claims_supported).toContain('sid');
    });

    it('RP-initiated logout POSTs a logout token naming the session of the ID token', async () => {
      const target = await receiver();
      const { client, user, config, tokens, browser } = await signedIn(target, {
        backchannel_logout_session_required: true,
      });
      const sid = tokens.claims()!.sid;
      expect(sid).toEqual(expect.any(String));

      const confirm = await browser.go(
        oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! }).toString(),
      );
      const done = await submit(browser, confirm, { logout: 'yes' });
      expect(done.status).toBe(200);

      const [req] = await target.waitFor(1);
      const { payload, header } = await verifiedLogout(req!, client);
      expect(header.typ).toBe('logout+jwt');
      expect(header.kid).toEqual(expect.any(String));
      expectLogoutClaims(payload, user.user.id, sid);
      expect(req!.headers['user-agent']).toMatch(/^Latchkey-Logout\//);
    });

    it('suspending the user through /v2 tells the clients of their sessions', async () => {
      const target = await receiver();
      const { client, user, tokens } = await signedIn(target);
      const sid = tokens.claims()!.sid;

      const res = await admin.put(`/v2/users/${user.user.id}`, { status: 'suspended' });
      expect(res.status).toBe(200);

      const [req] = await target.waitFor(1);
      const { payload } = await verifiedLogout(req!, client);
      expectLogoutClaims(payload, user.user.id, sid);
    });

    it('signing out of every client of the session tells each of them, each with its own sid', async () => {
      const first = await receiver();
      const second = await receiver();
      const a = await signedIn(first);
      const other = await registerClient(server.t, 'web', {
        metadata: { backchannel_logout_uri: `${second.url}/backchannel-logout` },
      });
      const otherConfig = await discover(server.url, other);
      // The same browser: the second client signs in within the same session (consent only).
      const b = await codeFlow(otherConfig, other, a.user, { scope: 'openid', browser: a.browser });
      // A client without a back-channel logout URI gets no sid, and is told nothing.
      const plain = await registerClient(server.t, 'web');
      const c = await codeFlow(await discover(server.url, plain), plain, a.user, {
        scope: 'openid',
        browser: a.browser,
      });
      expect(c.tokens.claims()!).not.toHaveProperty('sid');

      const confirm = await a.browser.go(
        oidc.buildEndSessionUrl(a.config, { id_token_hint: a.tokens.id_token! }).toString(),
      );
      await submit(a.browser, confirm, { logout: 'yes' });

      const [toFirst] = await first.waitFor(1);
      const [toSecond] = await second.waitFor(1);
      const one = await verifiedLogout(toFirst!, a.client);
      const two = await verifiedLogout(toSecond!, other);
      expectLogoutClaims(one.payload, a.user.user.id, a.tokens.claims()!.sid);
      expectLogoutClaims(two.payload, a.user.user.id, b.tokens.claims()!.sid);
      expect(one.payload.jti).not.toBe(two.payload.jti);
    });

    it('deleting the user, or forcing a password reset, tells the clients too', async () => {
      const target = await receiver();
      const deleted = await signedIn(target);
      await admin.del(`/v2/users/${deleted.user.user.id}`).expect(200);
      const [req] = await target.waitFor(1);
      expectLogoutClaims(
        (await verifiedLogout(req!, deleted.client)).payload,
        deleted.user.user.id,
        deleted.tokens.claims()!.sid,
      );

      const reset = await signedIn(target);
      expect((await admin.post(`/v2/users/${reset.user.user.id}/password-reset`)).status).toBeLessThan(300);
      const [, second] = await target.waitFor(2);
      expectLogoutClaims(
        (await verifiedLogout(second!, reset.client)).payload,
        reset.user.user.id,
        reset.tokens.claims()!.sid,
      );
    });

    it('retries a receiver that failed, with the same jti, until it answers 200', async () => {
      const target = await receiver(receiverScripts.failThenOk(1));
      const { client, user, tokens } = await signedIn(target);

      const res = await admin.put(`/v2/users/${user.user.id}`, { status: 'inactive' });
      expect(res.status).toBe(200);

      const [first, second] = await target.waitFor(2);
      const one = await verifiedLogout(first!, client);
      const two = await verifiedLogout(second!, client);
      expect(two.payload.jti).toBe(one.payload.jti);
      expectLogoutClaims(two.payload, user.user.id, tokens.claims()!.sid);

      // The outbox records the delivery as made on the second attempt.
      const find = async () =>
        (
          await server.t.stores.durable.outbox.list({
            endpoint_id: `${BACKCHANNEL_ENDPOINT_PREFIX}${client.clientId}`,
            limit: 10,
          })
        ).items;
      let deliveries = await find();
      for (let i = 0; i < 100 && deliveries[0]?.status !== 'succeeded'; i += 1) {
        await new Promise((r) => setTimeout(r, 20));
        deliveries = await find();
      }
      expect(deliveries).toHaveLength(1);
      expect(deliveries[0]).toMatchObject({ status: 'succeeded', attempts: 2, last_status: 200 });
      expect(deliveries[0]!.event_id).toBe(one.payload.jti);
    });

    it('gives up after the last retry of a receiver that keeps failing', async () => {
      const target = await receiver(() => ({ status: 503, body: 'down' }));
      const { client, user } = await signedIn(target);
      await admin.put(`/v2/users/${user.user.id}`, { status: 'suspended' }).expect(200);
      // One attempt and the two retries of BACKCHANNEL_LOGOUT_RETRY_SCHEDULE.
      await target.waitFor(3);
      const endpoint = `${BACKCHANNEL_ENDPOINT_PREFIX}${client.clientId}`;
      const find = async () =>
        (await server.t.stores.durable.outbox.list({ endpoint_id: endpoint, limit: 10 })).items;
      let deliveries = await find();
      for (let i = 0; i < 100 && deliveries[0]?.status !== 'dead'; i += 1) {
        await new Promise((r) => setTimeout(r, 20));
        deliveries = await find();
      }
      expect(deliveries[0]).toMatchObject({
        status: 'dead',
        attempts: 3,
        last_status: 503,
        last_error: 'the client answered 503',
      });
      expect(target.requests).toHaveLength(3);
      // Counted per outcome (this instance's attempts, earlier tests' included).
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const count = (outcome: string) =>
        Number(
          new RegExp(
            `^latchkey_backchannel_logout_attempts_total\\{outcome="${outcome}"\\} (\\d+)$`,
            'm',
          ).exec(metrics)?.[1],
        );
      expect(count('dead')).toBeGreaterThanOrEqual(1);
      expect(count('failed')).toBeGreaterThanOrEqual(2);
      expect(count('delivered')).toBeGreaterThanOrEqual(1);
      // Given up: the audit trail says which client was never told, about whom.
      const audit = await admin
        .get(`/v2/audit?action=client.backchannel_logout_failed&target_id=${client.clientId}`)
        .expect(200);
      expect(audit.body.data).toEqual([
        expect.objectContaining({
          action: 'client.backchannel_logout_failed',
          actor: expect.objectContaining({ type: 'system' }),
          target: { type: 'client', id: client.clientId },
          details: expect.objectContaining({
            user_id: user.user.id,
            delivery_id: deliveries[0]!.id,
            attempts: 3,
            last_status: 503,
            reason: 'the client answered 503',
          }),
        }),
      ]);
    });

    it('ES256 clients get ES256 logout tokens', async () => {
      const target = await receiver();
      const { client, user, tokens } = await signedIn(target, { id_token_signed_response_alg: 'ES256' });
      await admin.put(`/v2/users/${user.user.id}`, { status: 'suspended' }).expect(200);
      const [req] = await target.waitFor(1);
      const token = new URLSearchParams(req!.body).get('logout_token')!;
      expect(decodeProtectedHeader(token).alg).toBe('ES256');
      const { payload } = await jwtVerify(token, jwks, {
        issuer: server.url,
        audience: client.clientId,
        typ: 'logout+jwt',
        algorithms: ['ES256'],
      });
      expectLogoutClaims(payload, user.user.id, tokens.claims()!.sid);
    });

    it('/v2/clients takes, shows and validates backchannel_logout_uri', async () => {
      const created = await admin
        .post('/v2/clients', {
          kind: 'web',
          client_name: 'Logout receiver',
          redirect_uris: ['https://rp.example.com/callback'],
          backchannel_logout_uri: 'https://rp.example.com/backchannel-logout',
          backchannel_logout_session_required: true,
        })
        .expect(201);
      expect(created.body).toMatchObject({
        backchannel_logout_uri: 'https://rp.example.com/backchannel-logout',
        backchannel_logout_session_required: true,
      });
      const id = created.body.client_id as string;
      expect((await admin.get(`/v2/clients/${id}`).expect(200)).body).toMatchObject({
        backchannel_logout_uri: 'https://rp.example.com/backchannel-logout',
      });

      const loopback = await admin
        .put(`/v2/clients/${id}`, { backchannel_logout_uri: 'http://127.0.0.1:4000/logout' })
        .expect(200);
      expect(loopback.body.backchannel_logout_uri).toBe('http://127.0.0.1:4000/logout');

      // http to anything but loopback is refused with what the rule is (the schema allows http URLs).
      const plain = await admin.put(`/v2/clients/${id}`, {
        backchannel_logout_uri: 'http://rp.example.com/logout',
      });
      expect(plain.status).toBe(422);
      expect(errorOf(plain.body)).toMatchObject({
        code: 'INVALID_CLIENT_METADATA',
        details: [
          {
            field: 'backchannel_logout_uri',
            issue:
              'backchannel_logout_uri must use https (http only to a loopback address outside production)',
          },
        ],
      });
      const fragment = await admin.put(`/v2/clients/${id}`, {
        backchannel_logout_uri: 'https://rp.example.com/logout#frag',
      });
      expect(fragment.status).toBe(400);
      expect(errorOf(fragment.body).code).toBe('VALIDATION_ERROR');

      const removed = await admin.put(`/v2/clients/${id}`, { backchannel_logout_uri: null }).expect(200);
      expect(removed.body).not.toHaveProperty('backchannel_logout_uri');
    });
  },
);
