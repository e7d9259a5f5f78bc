/**
 * A compiled policy set hands Cedar only the policies whose scope can match a request, and only the
 * attributes those policies name; the decision and its diagnostics must be those of Cedar's own
 * evaluation of the whole set with every attribute. Checked here against cedar.isAuthorized over a
 * set whose policies read attributes in every way Cedar allows (`.`, `has`, nested, through an
 * entity reference, in a record comparison, a missing one that errs), for many requests.
 */
import { describe, expect, it } from '@jest/globals';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

import {
  cedarMessages,
  CompiledPolicySet,
  SubsetCache,
  type CedarEntity,
  type CedarRequest,
} from '../../src/services/policy-engine.js';
import type { PolicyRecord } from '../../src/store/ports.js';

const POLICIES: Record<string, string> = {
  email:
    'permit(principal in Role::"staff", action == Action::"read", resource) when { principal.email like "*@example.com" };',
  has: 'permit(principal, action == Action::"read", resource) when { principal has nick && principal.nick == "boss" };',
  owner: 'permit(principal, action == Action::"edit", resource) when { resource.owner == principal };',
  ownerMail:
    'permit(principal, action == Action::"share", resource) when { resource.owner.email == principal.email };',
  record:
    'permit(principal, action == Action::"read", resource) when { principal.metadata == {"tier": "gold"} };',
  missing: 'permit(principal, action == Action::"edit", resource) when { principal.not_there == 1 };',
  level: 'forbid(principal, action, resource) when { context.level < 0 };',
  status: 'forbid(principal, action, resource) unless { principal.status == "active" };',
  plain: 'permit(principal in Role::"admin", action, resource);',
  two: 'permit(principal, action == Action::"read", resource in Folder::"f1"); forbid(principal, action == Action::"read", resource) when { resource.secret };',
};

const now = new Date();
const records: PolicyRecord[] = Object.entries(POLICIES).map(([id, policy]) => ({
  id,
  description: null,
  policy,
  enabled: true,
  version: 1,
  created_at: now,
  updated_at: now,
}));

function entities(u: number): CedarEntity[] {
  const roles = [['staff'], ['admin'], [], ['staff', 'admin']][u % 4]!;
  const me: CedarEntity = {
    uid: { type: 'User', id: `u${u}` },
    attrs: {
      email: u % 3 === 0 ? `u${u}@example.com` : `u${u}@other.org`,
      status: u % 5 === 4 ? 'suspended' : 'active',
      metadata: u % 2 === 0 ? { tier: 'gold' } : { tier: 'silver', extra: true },
      plan: 'basic',
      ...(u % 7 === 0 ? { nick: 'boss' } : {}),
    },
    parents: roles.map((id) => ({ type: 'Role', id })),
  };
  const other: CedarEntity = {
    uid: { type: 'User', id: `o${u}` },
    attrs: { email: me.attrs.email!, status: 'active', metadata: {}, plan: 'pro' },
    parents: [],
  };
  const doc: CedarEntity = {
    uid: { type: 'Document', id: `d${u}` },
    attrs: {
      owner: { __entity: u % 2 === 0 ? me.uid : other.uid },
      secret: u % 6 === 1,
      title: `Doc ${u}`,
    },
    parents: u % 3 === 1 ? [{ type: 'Folder', id: 'f1' }] : [],
  };
  return [me, other, doc, ...roles.map((id) => ({ uid: { type: 'Role', id }, attrs: {}, parents: [] }))];
}

describe('CompiledPolicySet', () => {
  it('decides as Cedar does over the whole set with every attribute', () => {
    const set = new CompiledPolicySet(records, new SubsetCache(), 0);
    const parsed = cedar.policySetTextToParts(Object.values(POLICIES).join('\n'));
    expect(parsed.type).toBe('success');
    const whole: Record<string, string> = {};
    for (const [id, text] of Object.entries(POLICIES)) {
      const parts = cedar.policySetTextToParts(text);
      if (parts.type !== 'success') throw new Error(id);
      parts.policies.forEach((p, i) => (whole[parts.policies.length === 1 ? id : `${id}#${i}`] = p));
    }
    const storedId = (cedarId: string) => cedarId.replace(/#\d+$/, '');
    let allows = 0;
    let errors = 0;
    for (let u = 0; u < 84; u++) {
      for (const action of ['read', 'edit', 'share', 'delete']) {
        const request: CedarRequest = {
          principal: { type: 'User', id: `u${u}` },
          action: { type: 'Action', id: action },
          resource: { type: 'Document', id: `d${u}` },
          context: { level: (u % 9) - 1 },
          entities: entities(u),
        };
        const ours = set.decide(request);
        const answer = cedar.isAuthorized({
          principal: request.principal,
          action: request.action,
          resource: request.resource,
          context: request.context,
          policies: { staticPolicies: whole },
          entities: request.entities as cedar.Entities,
        });
        if (answer.type !== 'success') throw new Error(JSON.stringify(answer.errors));
        const theirs = answer.response;
        expect(ours.decision).toBe(theirs.decision === 'allow' ? 'Allow' : 'Deny');
        expect([...ours.diagnostics.reasons].sort()).toEqual(
          [...new Set(theirs.diagnostics.reason.map(storedId))].sort(),
        );
        expect(ours.diagnostics.errors.map((e) => `${e.policy}: ${e.message}`).sort()).toEqual(
          theirs.diagnostics.errors
            .map((e) => `${storedId(e.policyId)}: ${cedarMessages([e.error])[0]}`)
            .sort(),
        );
        if (ours.decision === 'Allow') allows += 1;
        errors += ours.diagnostics.errors.length;
      }
    }
    // The cases are not all alike: some allowed, some denied, some with evaluation errors.
    expect(allows).toBeGreaterThan(20);
    expect(allows).toBeLessThan(84 * 4 - 20);
    expect(errors).toBeGreaterThan(0);
  });

  it('hands sent entities to Cedar whole: one Cedar cannot read fails the request', () => {
    const set = new CompiledPolicySet(records, new SubsetCache(), 0);
    const doc: CedarEntity = {
      uid: { type: 'Document', id: 'bad' },
      attrs: { addr: { __extn: { fn: 'ip', arg: 'not an address' } } } as never,
      parents: [],
    };
    const [me] = entities(1);
    const request = (sent: boolean): CedarRequest => ({
      principal: me!.uid,
      action: { type: 'Action', id: 'delete' },
      resource: doc.uid,
      context: { level: 1 },
      entities: [me!, doc],
      ...(sent ? { sent: new Set(['Document\u0000bad']) } : {}),
    });
    const answer = cedar.isAuthorized({
      principal: me!.uid,
      action: { type: 'Action', id: 'delete' },
      resource: doc.uid,
      context: { level: 1 },
      policies: { staticPolicies: POLICIES.plain! },
      entities: [me!, doc] as cedar.Entities,
    });
    expect(answer.type).toBe('failure');
    const decided = set.decide(request(true));
    expect(decided.decision).toBe('Deny');
    expect(decided.diagnostics.errors).toHaveLength(1);
    expect(decided.diagnostics.errors[0]!.policy).toBeNull();
    // Not sent (as our own and registered entities, whose values are checked when written): the
    // attribute no policy names is left out, so Cedar never reads it.
    expect(set.decide(request(false)).decision).toBe('Allow');
  });
});
