/**
 * Cedar policy decisions end to end: /v2/policies (Cedar's own messages on refusal, schema,
 * versions, as_of, rollback), /v2/policy-entities, and /v1/authorize with RBAC through role
 * parents, ABAC (an IP range with Cedar's ip extension, time passed in the context, a resource
 * owner attribute), forbid overriding permit, who may ask about whom, batch limits, sampled
 * decision logging, and a change on one instance in force on a second one within the bound.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';

import { adminApi, randomTag, uniqueRoleName, userToken, type AdminApi } from '../helpers/admin-api.js';
import { availableBackends, createTestApp, type TestApp } from '../helpers/test-app.js';

type Uid = { type: string; id: string };
const user = (id: string): Uid => ({ type: 'User', id });
const act = (id: string): Uid => ({ type: 'Action', id });
const doc = (id: string): Uid => ({ type: 'Document', id });

function authorize(t: TestApp, token: string, body: unknown) {
  return request(t.callback)
    .post('/v1/authorize')
    .set('Authorization', `Bearer ${token}`)
    .send(body as object);
}

describe.each(availableBackends())(
  '/v2/policies and /v1/authorize with durable=$durable, short-lived=$shortLived',
  ({ durable, shortLived }) => {
    let t: TestApp;
    let api: AdminApi;
    const decide = async (body: unknown) => {
      const res = await authorize(t, api.token, body);
      expect(res.status).toBe(200);
      return res.body as {
        decision: string;
        diagnostics: { reasons: string[]; errors: { policy: string | null; message: string }[] };
      };
    };
    const addPolicy = async (id: string, policy: string) => {
      const res = await api.post('/v2/policies', { id, policy });
      expect(res.status).toBe(201);
      return res.body;
    };

    beforeAll(async () => {
      t = await createTestApp({ durable, shortLived, env: { POLICY_DECISION_LOG_SAMPLE_RATE: '1' } });
      api = await adminApi(t);
    });
    afterAll(() => t.close());

    it('checks every write with Cedar, and against the schema when one is set', async () => {
      const bad = await api.post('/v2/policies', {
        policy: 'permit(principal, action, resource) when { context.x = 1 };',
      });
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe('INVALID_POLICY');
      expect(bad.body.error.details[0].issue).toContain("'=' is not a valid operator in Cedar");

      const schema =
        'entity Role; entity User in [Role] { email: String }; entity Document { owner: User };\n' +
        'action view appliesTo { principal: [User], resource: [Document] };';
      const put = await api.put('/v2/policies/schema', { schema });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({ schema, version: 1 });
      const typo = await api.post('/v2/policies', {
        policy: 'permit(principal, action == Action::"view", resource) when { resource.ownr == principal };',
      });
      expect(typo.status).toBe(422);
      expect(typo.body.error.code).toBe('POLICY_SCHEMA_VIOLATION');
      expect(typo.body.error.details[0].issue).toMatch(/ownr/);
      const fits = await api.post('/v2/policies', {
        id: `schema-ok-${randomTag()}`,
        policy: 'permit(principal, action == Action::"view", resource) when { resource.owner == principal };',
      });
      expect(fits.status).toBe(201);

      const broken = await api.put('/v2/policies/schema', { schema: 'entity User {' });
      expect(broken.status).toBe(400);
      expect(broken.body.error.code).toBe('INVALID_POLICY_SCHEMA');
      // A schema the stored policies do not meet is refused, naming the policy.
      const narrower = await api.put('/v2/policies/schema', { schema: 'entity User; entity Document;' });
      expect(narrower.status).toBe(422);
      expect(narrower.body.error.details[0].field).toBe(`policies.${fits.body.id}`);

      expect((await api.put('/v2/policies/schema', { schema: null })).body).toMatchObject({
        schema: null,
        version: 2,
      });
      expect((await api.delete(`/v2/policies/${fits.body.id}`)).status).toBe(204);
    });

    it('RBAC: roles are the user’s parents, named by role name; principals by id or e-mail', async () => {
      const editor = await api.createRole({ name: uniqueRoleName('editor') });
      const linked = await api.createRole({ name: uniqueRoleName('reviewer') });
      const alice = await api.createUser({ role: editor.name });
      const bob = await api.createUser();
      const edit = `edit-${randomTag()}`;
      const review = `review-${randomTag()}`;
      await addPolicy(
        `editors-${edit}`,
        `permit(principal in Role::"${editor.name}", action == Action::"${edit}", resource);`,
      );
      await addPolicy(
        `reviewers-${review}`,
        `permit(principal in Role::"${linked.name}", action == Action::"${review}", resource);`,
      );

      const allowed = await decide({ principal: user(alice.id), action: act(edit), resource: doc('a') });
      expect(allowed).toEqual({
        decision: 'Allow',
        diagnostics: { reasons: [`editors-${edit}`], errors: [] },
      });
      expect(
        (await decide({ principal: user(alice.email), action: act(edit), resource: doc('a') })).decision,
      ).toBe('Allow');
      expect(
        (await decide({ principal: user(bob.id), action: act(edit), resource: doc('a') })).decision,
      ).toBe('Deny');
      expect(
        (await decide({ principal: user('nobody'), action: act(edit), resource: doc('a') })).decision,
      ).toBe('Deny');

      expect(
        (await decide({ principal: user(bob.id), action: act(review), resource: doc('a') })).decision,
      ).toBe('Deny');
      expect((await api.post(`/v2/users/${bob.id}/roles/${linked.id}`)).status).toBeLessThan(300);
      expect(
        (await decide({ principal: user(bob.id), action: act(review), resource: doc('a') })).decision,
      ).toBe('Allow');
    });

    it('ABAC: an address range, the time from the context, the resource owner; forbid overrides permit', async () => {
      const tag = randomTag();
      const owner = await api.createUser();
      const other = await api.createUser();
      await addPolicy(
        `office-${tag}`,
        `permit(principal, action == Action::"vpn-${tag}", resource) when { ip(context.ip_address).isInRange(ip("10.0.0.0/8")) };`,
      );
      const vpn = (ip: string) =>
        decide({
          principal: user(owner.id),
          action: act(`vpn-${tag}`),
          resource: doc('x'),
          context: { ip_address: ip },
        });
      expect((await vpn('10.20.30.40')).decision).toBe('Allow');
      expect((await vpn('192.168.1.1')).decision).toBe('Deny');
      const garbage = await vpn('not-an-address');
      expect(garbage.decision).toBe('Deny');
      expect(garbage.diagnostics.errors).toEqual([
        { policy: `office-${tag}`, message: expect.stringContaining('invalid IP address') },
      ]);

      await addPolicy(
        `hours-${tag}`,
        `permit(principal, action == Action::"work-${tag}", resource) when { context.hour >= 9 && context.hour < 17 };`,
      );
      const at = (hour: number) =>
        decide({
          principal: user(owner.id),
          action: act(`work-${tag}`),
          resource: doc('x'),
          context: { hour },
        });
      expect((await at(10)).decision).toBe('Allow');
      expect((await at(20)).decision).toBe('Deny');

      await addPolicy(
        `owner-${tag}`,
        `permit(principal, action == Action::"read-${tag}", resource) when { resource.owner == principal };`,
      );
      const sent = [{ uid: doc(`d-${tag}`), attrs: { owner: { __entity: user(owner.id) } }, parents: [] }];
      const read = (who: string, entities?: unknown) =>
        decide({
          principal: user(who),
          action: act(`read-${tag}`),
          resource: doc(`d-${tag}`),
          ...(entities ? { entities } : {}),
        });
      expect((await read(owner.id, sent)).decision).toBe('Allow');
      expect((await read(other.id, sent)).decision).toBe('Deny');
      // A registered resource needs nothing sent; its parents come along.
      const registered = await api.put(`/v2/policy-entities/Document/d-${tag}`, {
        attrs: { owner: { __entity: user(owner.id) } },
        parents: [{ type: 'Folder', id: `f-${tag}` }],
      });
      expect(registered.status).toBe(200);
      expect((await read(owner.id)).decision).toBe('Allow');
      expect((await api.get(`/v2/policy-entities/Document/d-${tag}`)).body.parents).toEqual([
        { type: 'Folder', id: `f-${tag}` },
      ]);

      await addPolicy(
        `all-${tag}`,
        `permit(principal, action == Action::"share-${tag}", resource in Folder::"f-${tag}");`,
      );
      await addPolicy(
        `frozen-${tag}`,
        `forbid(principal, action, resource in Folder::"f-${tag}") when { context has frozen && context.frozen };`,
      );
      const share = (frozen: boolean) =>
        decide({
          principal: user(other.id),
          action: act(`share-${tag}`),
          resource: doc(`d-${tag}`),
          context: { frozen },
        });
      expect(await share(false)).toEqual({
        decision: 'Allow',
        diagnostics: { reasons: [`all-${tag}`], errors: [] },
      });
      expect(await share(true)).toEqual({
        decision: 'Deny',
        diagnostics: { reasons: [`frozen-${tag}`], errors: [] },
      });
    });

    it('keeps versions: as_of reads, rollback, deletion; all audited', async () => {
      const tag = randomTag();
      const id = `versioned-${tag}`;
      const ask = () => decide({ principal: user('u'), action: act(`v-${tag}`), resource: doc('x') });
      const v1 = await addPolicy(id, `permit(principal, action == Action::"v-${tag}", resource);`);
      expect(v1.version).toBe(1);
      expect((await ask()).decision).toBe('Allow');
      const v2 = await api.put(`/v2/policies/${id}`, {
        policy: `forbid(principal, action == Action::"v-${tag}", resource);`,
        description: 'closed',
      });
      expect(v2.body).toMatchObject({ version: 2, description: 'closed' });
      expect((await ask()).decision).toBe('Deny');

      const then = await api.get('/v2/policies', { as_of: v1.updated_at });
      expect(then.body.data.find((p: { id: string }) => p.id === id)).toMatchObject({
        version: 1,
        policy: v1.policy,
      });
      const before = await api.get('/v2/policies', {
        as_of: new Date(Date.parse(v1.created_at) - 1).toISOString(),
      });
      expect(before.body.data.find((p: { id: string }) => p.id === id)).toBeUndefined();

      const back = await api.post(`/v2/policies/${id}/rollback`, { version: 1 });
      expect(back.body).toMatchObject({ version: 3, policy: v1.policy, description: null });
      expect((await ask()).decision).toBe('Allow');
      expect((await api.post(`/v2/policies/${id}/rollback`, { version: 9 })).status).toBe(404);

      expect((await api.delete(`/v2/policies/${id}`)).status).toBe(204);
      expect((await api.get(`/v2/policies/${id}`)).body.error.code).toBe('POLICY_NOT_FOUND');
      expect((await ask()).decision).toBe('Deny');
      const versions = await api.get(`/v2/policies/${id}/versions`);
      expect(
        versions.body.data.map((v: { version: number; deleted: boolean }) => [v.version, v.deleted]),
      ).toEqual([
        [1, false],
        [2, false],
        [3, false],
        [4, true],
      ]);
      expect((await api.post(`/v2/policies/${id}/rollback`, { version: 2 })).body.version).toBe(5);

      const audit = await api.get('/v2/audit', { target_id: id });
      expect(audit.body.data.map((e: { action: string }) => e.action).sort()).toEqual(
        [
          'policy.created',
          'policy.deleted',
          'policy.rolled_back',
          'policy.rolled_back',
          'policy.updated',
        ].sort(),
      );
      const decisions = await api.get('/v2/audit', { action: 'policy.decision', limit: 1 });
      expect(decisions.body.data[0]).toMatchObject({ action: 'policy.decision' });
    });

    it('asks for a token: policy:evaluate asks about anyone, a user only about themselves', async () => {
      const none = await request(t.callback)
        .post('/v1/authorize')
        .send({ principal: user('a'), action: act('x'), resource: doc('y') });
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer realm=/);
      expect(none.body.error.code).toBe('AUTH_TOKEN_MISSING');

      const me = await api.createUser();
      const stranger = await api.createUser();
      const mine = await userToken(t, api, me.id);
      const own = await authorize(t, mine, {
        principal: user(me.email),
        action: act('x'),
        resource: doc('y'),
      });
      expect(own.status).toBe(200);
      const theirs = await authorize(t, mine, {
        principal: user(stranger.id),
        action: act('x'),
        resource: doc('y'),
      });
      expect(theirs.status).toBe(403);
      expect(theirs.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');

      const plain = await adminApi(t, { scope: 'user:read' });
      expect(
        (await authorize(t, plain.token, { principal: user(me.id), action: act('x'), resource: doc('y') }))
          .status,
      ).toBe(403);

      const invalid = await authorize(t, api.token, { principal: user('a'), action: act('x') });
      expect(invalid.status).toBe(400);
      expect(invalid.body.error.code).toBe('MISSING_REQUIRED_FIELD');
    });

    it('answers batches of up to 100 checks, in order', async () => {
      const tag = randomTag();
      await addPolicy(
        `batch-${tag}`,
        `permit(principal, action == Action::"b-${tag}", resource == Document::"yes");`,
      );
      const checks = Array.from({ length: 100 }, (_, i) => ({
        principal: user('u'),
        action: act(`b-${tag}`),
        resource: doc(i % 2 === 0 ? 'yes' : 'no'),
      }));
      const ok = await request(t.callback)
        .post('/v1/authorize/batch')
        .set('Authorization', `Bearer ${api.token}`)
        .send({ requests: checks });
      expect(ok.status).toBe(200);
      expect(ok.body.results).toHaveLength(100);
      expect(ok.body.results.map((r: { decision: string }) => r.decision)).toEqual(
        checks.map((_, i) => (i % 2 === 0 ? 'Allow' : 'Deny')),
      );
      const tooMany = await request(t.callback)
        .post('/v1/authorize/batch')
        .set('Authorization', `Bearer ${api.token}`)
        .send({ requests: [...checks, checks[0]] });
      expect(tooMany.status).toBe(400);
      expect(tooMany.body.error.code).toBe('VALIDATION_ERROR');
    });

    it('a change on one instance is in force on another sharing the data within the documented bound', async () => {
      const b = await createTestApp({ durable, shortLived, shareWith: t });
      try {
        const tag = randomTag();
        const onB = await adminApi(b);
        const ask = async () => {
          const res = await authorize(b, onB.token, {
            principal: user('u'),
            action: act(`p-${tag}`),
            resource: doc('x'),
          });
          expect(res.status).toBe(200);
          return res.body.decision as string;
        };
        expect(await ask()).toBe('Deny'); // B has compiled its set
        await addPolicy(`propagated-${tag}`, `permit(principal, action == Action::"p-${tag}", resource);`);
        // The bound is POLICY_CACHE_TTL_MS (5 s): the bus usually brings it at once.
        const deadline = Date.now() + t.config.policyCacheTtlMs + 2000;
        let decision = await ask();
        while (decision !== 'Allow' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          decision = await ask();
        }
        expect(decision).toBe('Allow');
      } finally {
        await b.close();
      }
    });
  },
);
