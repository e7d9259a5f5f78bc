/**
 * The artifact store contract (oidc-provider's adapter interface) and the counter store contract:
 * every short-lived-data adapter must pass these unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { MissingExpiryError } from '../../src/store/errors.js';
import type { ArtifactStore, CounterStore } from '../../src/store/ports.js';

export interface ShortLivedHarness {
  open(): Promise<{ artifacts: ArtifactStore; counters: CounterStore }>;
  /** Identifiers of anything the backend holds for this harness without an expiry (must stay empty). */
  entriesWithoutExpiry(): Promise<string[]>;
  destroy(): Promise<void>;
}

/** Every model oidc-provider v9 persists through its adapter. */
export const PROVIDER_MODELS = [
  'Session',
  'Interaction',
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'ClientCredentials',
  'Client',
  'InitialAccessToken',
  'RegistrationAccessToken',
  'Grant',
  'ReplayDetection',
  'PushedAuthorizationRequest',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
] as const;

const id = () => randomBytes(16).toString('base64url');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowSeconds = () => Math.floor(Date.now() / 1000);

export function describeShortLivedContract(harness: ShortLivedHarness): void {
  let artifacts: ArtifactStore;
  let counters: CounterStore;

  beforeAll(async () => {
    ({ artifacts, counters } = await harness.open());
  });

  afterAll(async () => {
    await artifacts?.close();
    await harness.destroy();
  });

  describe('artifacts', () => {
    it('stores and finds a payload for every provider model, keeping models apart', async () => {
      const shared = id();
      for (const model of PROVIDER_MODELS) {
        const payload = { kind: model, jti: shared, exp: nowSeconds() + 60, nested: { a: [1, 'b'] } };
        await artifacts.adapterFor(model).upsert(shared, payload, 60);
      }
      for (const model of PROVIDER_MODELS) {
        expect(await artifacts.adapterFor(model).find(shared)).toEqual({
          kind: model,
          jti: shared,
          exp: expect.any(Number),
          nested: { a: [1, 'b'] },
        });
      }
      expect(await artifacts.adapterFor('AccessToken').find(id())).toBeUndefined();
    });

    it('replaces the payload on a second upsert', async () => {
      const adapter = artifacts.adapterFor('Session');
      const key = id();
      await adapter.upsert(key, { uid: 'u1', accountId: 'a' }, 60);
      await adapter.upsert(key, { uid: 'u1', accountId: 'b' }, 60);
      expect(await adapter.find(key)).toEqual({ uid: 'u1', accountId: 'b' });
    });

    it('finds sessions by uid and device codes by user code', async () => {
      const session = artifacts.adapterFor('Session');
      const key = id();
      const uid = id();
      await session.upsert(key, { uid, accountId: 'acc' }, 60);
      expect(await session.findByUid(uid)).toEqual({ uid, accountId: 'acc' });
      expect(await session.findByUid(id())).toBeUndefined();

      const device = artifacts.adapterFor('DeviceCode');
      const code = id();
      await device.upsert(code, { userCode: 'ABCD-EFGH', grantId: 'g' }, 60);
      expect(await device.findByUserCode('ABCD-EFGH')).toEqual({ userCode: 'ABCD-EFGH', grantId: 'g' });
      expect(await device.findByUserCode('ZZZZ-ZZZZ')).toBeUndefined();

      await session.destroy(key);
      expect(await session.findByUid(uid)).toBeUndefined();
    });

    it('consumes once, atomically, and keeps the mark across a later upsert', async () => {
      const adapter = artifacts.adapterFor('AuthorizationCode');
      const key = id();
      await adapter.upsert(key, { grantId: 'g', accountId: 'a' }, 60);
      expect((await adapter.find(key))!.consumed).toBeUndefined();
      const before = nowSeconds();
      await Promise.all(Array.from({ length: 10 }, () => adapter.consume(key)));
      const consumed = (await adapter.find(key))!.consumed;
      expect(typeof consumed).toBe('number');
      expect(consumed).toBeGreaterThanOrEqual(before - 1);
      expect(consumed).toBeLessThanOrEqual(nowSeconds() + 1);
      await adapter.upsert(key, { grantId: 'g', accountId: 'a' }, 60);
      expect((await adapter.find(key))!.consumed).toBe(consumed);
    });

    it('does not create anything when consuming a missing artifact', async () => {
      const adapter = artifacts.adapterFor('RefreshToken');
      const key = id();
      await adapter.consume(key);
      expect(await adapter.find(key)).toBeUndefined();
    });

    it('destroys an artifact', async () => {
      const adapter = artifacts.adapterFor('AccessToken');
      const key = id();
      await adapter.upsert(key, { grantId: id() }, 60);
      await adapter.destroy(key);
      expect(await adapter.find(key)).toBeUndefined();
      await adapter.destroy(key);
    });

    it('revokes every grant-bound artifact of a grant, whatever model asks, and nothing else', async () => {
      const grantId = id();
      const otherGrant = id();
      const revoked = [
        ['AccessToken', id()],
        ['RefreshToken', id()],
        ['AuthorizationCode', id()],
        ['DeviceCode', id()],
        ['BackchannelAuthenticationRequest', id()],
      ] as const;
      for (const [model, key] of revoked) {
        await artifacts.adapterFor(model).upsert(key, { grantId, kind: model }, 60);
      }
      const keptToken = id();
      await artifacts.adapterFor('AccessToken').upsert(keptToken, { grantId: otherGrant }, 60);
      const keptGrant = grantId;
      await artifacts.adapterFor('Grant').upsert(keptGrant, { accountId: 'a', clientId: 'c' }, 60);
      const keptSession = id();
      await artifacts.adapterFor('Session').upsert(keptSession, { uid: id(), grantId }, 60);

      await artifacts.adapterFor('RefreshToken').revokeByGrantId(grantId);

      for (const [model, key] of revoked) {
        expect(await artifacts.adapterFor(model).find(key)).toBeUndefined();
      }
      expect(await artifacts.adapterFor('AccessToken').find(keptToken)).toEqual({ grantId: otherGrant });
      expect(await artifacts.adapterFor('Grant').find(keptGrant)).toBeDefined();
      expect(await artifacts.adapterFor('Session').find(keptSession)).toBeDefined();

      await artifacts.adapterFor('AccessToken').revokeByGrantId(id());
    });

    it('revokes tokens added to a grant after an earlier revocation of it', async () => {
      const grantId = id();
      const first = id();
      await artifacts.adapterFor('AccessToken').upsert(first, { grantId }, 60);
      await artifacts.adapterFor('AccessToken').revokeByGrantId(grantId);
      const second = id();
      await artifacts.adapterFor('RefreshToken').upsert(second, { grantId }, 60);
      await artifacts.adapterFor('AccessToken').revokeByGrantId(grantId);
      expect(await artifacts.adapterFor('RefreshToken').find(second)).toBeUndefined();
    });

    it('revokes every artifact of an account, whatever its model, with its lookups, and nothing else', async () => {
      const account = `acc-${id()}`;
      const other = `acc-${id()}`;
      const grantId = id();
      const otherGrant = id();
      const uid = id();
      const userCode = `UC-${id()}`;
      const revoked = [
        ['Session', id(), { uid, accountId: account, exp: nowSeconds() + 60 }],
        ['Grant', grantId, { accountId: account, clientId: 'c', openid: { scope: 'openid' } }],
        ['AuthorizationCode', id(), { grantId, accountId: account, clientId: 'c' }],
        ['AccessToken', id(), { grantId, accountId: account, clientId: 'c' }],
        ['RefreshToken', id(), { grantId, accountId: account, clientId: 'c' }],
        ['DeviceCode', id(), { grantId, accountId: account, userCode }],
        ['BackchannelAuthenticationRequest', id(), { grantId, accountId: account }],
        // Moved here from the other account by a later upsert.
        ['AccessToken', id(), { grantId: otherGrant, accountId: other }],
      ] as const;
      for (const [model, key, payload] of revoked) await artifacts.adapterFor(model).upsert(key, payload, 60);
      const moved = revoked.at(-1)!;
      await artifacts.adapterFor(moved[0]).upsert(moved[1], { grantId, accountId: account }, 60);

      const kept = [
        ['Session', id(), { uid: id(), accountId: other }],
        ['Grant', otherGrant, { accountId: other, clientId: 'c' }],
        ['AccessToken', id(), { grantId: otherGrant, accountId: other }],
        ['RefreshToken', id(), { grantId: otherGrant, accountId: other }],
        // Client credentials name no account; an interaction names one only inside its result.
        ['ClientCredentials', id(), { clientId: 'c', scope: 'api' }],
        ['Interaction', id(), { uid: id(), result: { login: { accountId: account } } }],
        // Moved from this account to the other one, so no longer this account's.
        ['AccessToken', id(), { grantId: otherGrant, accountId: other }],
      ] as const;
      const movedAway = kept.at(-1)!;
      await artifacts.adapterFor(movedAway[0]).upsert(movedAway[1], { grantId, accountId: account }, 60);
      for (const [model, key, payload] of kept) await artifacts.adapterFor(model).upsert(key, payload, 60);

      expect(await artifacts.revokeByAccountId(account)).toBe(revoked.length);

      for (const [model, key] of revoked) expect(await artifacts.adapterFor(model).find(key)).toBeUndefined();
      expect(await artifacts.adapterFor('Session').findByUid(uid)).toBeUndefined();
      expect(await artifacts.adapterFor('DeviceCode').findByUserCode(userCode)).toBeUndefined();
      for (const [model, key, payload] of kept) {
        expect(await artifacts.adapterFor(model).find(key)).toEqual(payload);
      }
      expect(await artifacts.adapterFor('Session').findByUid(kept[0][2].uid)).toEqual(kept[0][2]);

      // Nothing is left to revoke, and the grant's index no longer lists the revoked artifacts:
      // a token issued under it afterwards is still revoked with it.
      expect(await artifacts.revokeByAccountId(account)).toBe(0);
      const later = id();
      await artifacts.adapterFor('AccessToken').upsert(later, { grantId, accountId: account }, 60);
      await artifacts.adapterFor('AccessToken').revokeByGrantId(grantId);
      expect(await artifacts.adapterFor('AccessToken').find(later)).toBeUndefined();
      expect(await artifacts.revokeByAccountId(account)).toBe(0);

      expect(await artifacts.revokeByAccountId(`acc-${id()}`)).toBe(0);
      expect(await artifacts.revokeByAccountId('')).toBe(0);
      expect(await artifacts.revokeByAccountId(other)).toBe(5);
    });

    it('counts only live artifacts when revoking an account, and forgets those destroyed or revoked by grant', async () => {
      const account = `acc-${id()}`;
      const grantId = id();
      await artifacts.adapterFor('Session').upsert(id(), { uid: id(), accountId: account }, 1);
      const destroyed = id();
      await artifacts.adapterFor('AccessToken').upsert(destroyed, { grantId: id(), accountId: account }, 60);
      await artifacts.adapterFor('AccessToken').destroy(destroyed);
      await artifacts.adapterFor('RefreshToken').upsert(id(), { grantId, accountId: account }, 60);
      await artifacts.adapterFor('AccessToken').revokeByGrantId(grantId);
      const live = id();
      await artifacts.adapterFor('Grant').upsert(live, { accountId: account, clientId: 'c' }, 60);
      await sleep(1300);
      expect(await artifacts.revokeByAccountId(account)).toBe(1);
      expect(await artifacts.adapterFor('Grant').find(live)).toBeUndefined();
    });

    it("lists an account's live artifacts of one model, and none of another account's or model's", async () => {
      const account = `acc-${id()}`;
      const other = `acc-${id()}`;
      const [first, second, expired, moved, destroyed] = [id(), id(), id(), id(), id()];
      const sessions = artifacts.adapterFor('Session');
      await sessions.upsert(
        first,
        { uid: id(), accountId: account, authorizations: { a: { sid: 's1' } } },
        60,
      );
      await sessions.upsert(second, { uid: id(), accountId: account }, 60);
      await sessions.upsert(expired, { uid: id(), accountId: account }, 1);
      await sessions.upsert(moved, { uid: id(), accountId: account }, 60);
      await sessions.upsert(moved, { uid: id(), accountId: other }, 60);
      await sessions.upsert(destroyed, { uid: id(), accountId: account }, 60);
      await sessions.destroy(destroyed);
      await artifacts.adapterFor('Grant').upsert(id(), { accountId: account, clientId: 'c' }, 60);
      await sleep(1300);

      const listed = await artifacts.listByAccountId(account, 'Session');
      expect(listed).toHaveLength(2);
      expect(listed).toContainEqual(expect.objectContaining({ authorizations: { a: { sid: 's1' } } }));
      expect(listed.every((p) => p.accountId === account)).toBe(true);
      expect(await artifacts.listByAccountId(account, 'Grant')).toEqual([
        { accountId: account, clientId: 'c' },
      ]);
      expect(await artifacts.listByAccountId(other, 'Grant')).toEqual([]);
      expect(await artifacts.listByAccountId('', 'Session')).toEqual([]);
      expect(await artifacts.revokeByAccountId(account)).toBe(3);
      expect(await artifacts.listByAccountId(account, 'Session')).toEqual([]);
    });

    it('refuses writes without a positive, finite expiry and stores nothing for them', async () => {
      const adapter = artifacts.adapterFor('Session');
      for (const bad of [undefined, null, Number.NaN, 0, -5, Number.POSITIVE_INFINITY, '60']) {
        const key = id();
        await expect(adapter.upsert(key, { uid: key }, bad as never)).rejects.toBeInstanceOf(
          MissingExpiryError,
        );
        expect(await adapter.find(key)).toBeUndefined();
        expect(await adapter.findByUid(key)).toBeUndefined();
      }
    });

    it('expires artifacts and their indexes at the end of their lifetime, and a later upsert extends it', async () => {
      const code = artifacts.adapterFor('DeviceCode');
      const session = artifacts.adapterFor('Session');
      const short = id();
      const uid = id();
      const extended = id();
      const grantId = id();
      await code.upsert(short, { userCode: `U-${short}`, grantId }, 1);
      await session.upsert(uid, { uid }, 1);
      await session.upsert(extended, { uid: `x${uid}` }, 1);
      await session.upsert(extended, { uid: `x${uid}` }, 30);
      await sleep(1300);
      expect(await code.find(short)).toBeUndefined();
      expect(await code.findByUserCode(`U-${short}`)).toBeUndefined();
      expect(await session.findByUid(uid)).toBeUndefined();
      expect(await session.find(extended)).toEqual({ uid: `x${uid}` });
      await code.consume(short);
      expect(await code.find(short)).toBeUndefined();
      await code.revokeByGrantId(grantId);
    });

    it('holds nothing without an expiry after all of the above', async () => {
      expect(await harness.entriesWithoutExpiry()).toEqual([]);
    });

    it('answers ping', async () => {
      await expect(artifacts.ping()).resolves.toBeUndefined();
    });
  });

  describe('counters', () => {
    it('starts at the increment and a new window, and keeps the window while it runs', async () => {
      const key = `c:${id()}`;
      const start = Date.now();
      const first = await counters.increment(key, 60);
      expect(first.value).toBe(1);
      expect(first.resetAt.getTime()).toBeGreaterThanOrEqual(start + 59_000);
      expect(first.resetAt.getTime()).toBeLessThanOrEqual(Date.now() + 61_000);
      const second = await counters.increment(key, 60, 4);
      expect(second.value).toBe(5);
      expect(Math.abs(second.resetAt.getTime() - first.resetAt.getTime())).toBeLessThan(1000);
      expect(await counters.get(key)).toEqual(second);
    });

    it('counts 50 parallel increments exactly once each', async () => {
      const key = `c:${id()}`;
      const results = await Promise.all(Array.from({ length: 50 }, () => counters.increment(key, 60)));
      expect(results.map((r) => r.value).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      expect((await counters.get(key))!.value).toBe(50);
    });

    it('forgets a counter when reset or when its window ends', async () => {
      const key = `c:${id()}`;
      expect(await counters.get(key)).toBeNull();
      await counters.increment(key, 60);
      await counters.reset(key);
      expect(await counters.get(key)).toBeNull();

      await counters.increment(key, 1, 3);
      await sleep(1300);
      expect(await counters.get(key)).toBeNull();
      const fresh = await counters.increment(key, 60);
      expect(fresh.value).toBe(1);
    });

    it('applies resets and increments together', async () => {
      const [a, b, c] = [`c:${id()}`, `c:${id()}`, `c:${id()}`];
      await counters.increment(a, 60, 5);
      await counters.increment(b, 60, 2);
      await counters.update([
        { reset: a },
        { increment: b, windowSeconds: 60, by: -1 },
        { increment: c, windowSeconds: 60 },
      ]);
      expect(await counters.get(a)).toBeNull();
      expect((await counters.get(b))!.value).toBe(1);
      expect((await counters.get(c))!.value).toBe(1);
    });

    describe('guardAttempt', () => {
      const subject = (limit: number) => {
        const s = id();
        return { attempts: `ga:${s}`, lock: `gl:${s}`, lockouts: `go:${s}`, limit };
      };
      const guard = (subjects: ReturnType<typeof subject>[], lockoutBaseSeconds = 60) =>
        counters.guardAttempt({
          subjects,
          windowSeconds: 900,
          lockoutBaseSeconds,
          lockoutMaxSeconds: 3600,
          lockoutMemorySeconds: 86_400,
        });

      it('lets the limit through, locks on the attempt past it, and refuses while locked without counting', async () => {
        const s = subject(3);
        for (let i = 0; i < 3; i += 1) expect(await guard([s])).toEqual({ allowed: true });
        const before = Date.now();
        const locked = await guard([s]);
        expect(locked).toMatchObject({ allowed: false, subject: 0 });
        const until = (locked as { lockedUntil: Date }).lockedUntil.getTime();
        expect(until).toBeGreaterThanOrEqual(before + 59_000);
        expect(until).toBeLessThanOrEqual(Date.now() + 61_000);
        // Locked: refused with the same end, and the count started over (it is not counting).
        expect(await guard([s])).toEqual(locked);
        expect(await counters.get(s.attempts)).toBeNull();
        expect((await counters.get(s.lockouts))!.value).toBe(1);
      });

      it('stops at the first locked subject: later ones are not counted', async () => {
        const address = subject(0);
        const account = subject(5);
        expect(await guard([address, account])).toMatchObject({ allowed: false, subject: 0 });
        expect(await guard([address, account])).toMatchObject({ allowed: false, subject: 0 });
        expect(await counters.get(account.attempts)).toBeNull();
        // The other way round, the first is counted and the second refuses.
        const open = subject(100);
        expect(await guard([open, address])).toMatchObject({ allowed: false, subject: 1 });
        expect((await counters.get(open.attempts))!.value).toBe(1);
      });

      it('lets exactly the limit through out of 50 parallel attempts', async () => {
        const s = subject(5);
        const verdicts = await Promise.all(Array.from({ length: 50 }, () => guard([s])));
        expect(verdicts.filter((v) => v.allowed)).toHaveLength(5);
        const ends = new Set(verdicts.flatMap((v) => (v.allowed ? [] : [v.lockedUntil.getTime()])));
        expect(ends.size).toBe(1);
      });

      it('doubles the lock for each further lockout the subject earns', async () => {
        const s = subject(0);
        const first = await guard([s], 1);
        expect(first.allowed).toBe(false);
        const firstMs = (first as { lockedUntil: Date }).lockedUntil.getTime() - Date.now();
        expect(firstMs).toBeLessThanOrEqual(1000);
        await sleep(1100);
        const second = await guard([s], 1);
        const secondMs = (second as { lockedUntil: Date }).lockedUntil.getTime() - Date.now();
        expect(secondMs).toBeGreaterThan(1000);
        expect(secondMs).toBeLessThanOrEqual(2000);
        expect((await counters.get(s.lockouts))!.value).toBe(2);
      });

      it('refuses nonsense settings', async () => {
        await expect(
          counters.guardAttempt({
            subjects: [subject(1)],
            windowSeconds: 0,
            lockoutBaseSeconds: 1,
            lockoutMaxSeconds: 1,
            lockoutMemorySeconds: 1,
          }),
        ).rejects.toThrow(RangeError);
        await expect(guard([subject(-1)])).rejects.toThrow(RangeError);
      });
    });

    it('holds no counter without an expiry', async () => {
      expect(await harness.entriesWithoutExpiry()).toEqual([]);
    });
  });

  describe('rollup reads and distinct counts', () => {
    it('reads many counters at once, in order, with 0 for missing ones', async () => {
      const [a, b, missing] = [`m:${id()}`, `m:${id()}`, `m:${id()}`];
      await counters.increment(a, 60, 3);
      await counters.increment(b, 60, 7);
      expect(await counters.getMany([b, missing, a, b])).toEqual([7, 0, 3, 7]);
      expect(await counters.getMany([])).toEqual([]);
      const many = Array.from({ length: 1200 }, (_, i) => `m:${id()}:${i}`);
      await counters.update(many.slice(0, 600).map((k) => ({ increment: k, windowSeconds: 60 })));
      const values = await counters.getMany(many);
      expect(values.slice(0, 600).every((v) => v === 1)).toBe(true);
      expect(values.slice(600).every((v) => v === 0)).toBe(true);
    });

    it('counts distinct members of a set and of unions of sets (exact for small sets)', async () => {
      const [mon, tue, wed, empty] = [`d:${id()}`, `d:${id()}`, `d:${id()}`, `d:${id()}`];
      await counters.addDistinct([
        { key: mon, members: ['ada', 'bob', 'cy', 'ada'], ttlSeconds: 60 },
        { key: tue, members: ['bob', 'dee'], ttlSeconds: 60 },
      ]);
      await counters.addDistinct([{ key: tue, members: ['eve', 'dee'], ttlSeconds: 60 }]);
      await counters.addDistinct([{ key: wed, members: [], ttlSeconds: 60 }]);
      expect(await counters.countDistinct([mon])).toBe(3);
      expect(await counters.countDistinct([tue])).toBe(3);
      expect(await counters.countDistinct([mon, tue])).toBe(5);
      expect(await counters.countDistinct([mon, tue, wed, empty])).toBe(5);
      expect(await counters.countDistinct([empty])).toBe(0);
      expect(await counters.countDistinct([])).toBe(0);
      expect(await counters.countDistinctMany([[mon], [tue, mon], [], [wed]])).toEqual([3, 5, 0, 0]);
    });

    it('keeps five thousand members apart within the HyperLogLog error bound', async () => {
      const key = `d:${id()}`;
      const members = Array.from({ length: 5000 }, (_, i) => `usr_${i}`);
      await counters.addDistinct([{ key, members, ttlSeconds: 60 }]);
      const counted = await counters.countDistinct([key]);
      // 0.81% standard error on Redis; five of them is far beyond any real estimate's miss.
      expect(Math.abs(counted - 5000)).toBeLessThanOrEqual(5000 * 0.0405);
      if (counters.kind === 'embedded') expect(counted).toBe(5000);
    });

    it('forgets a distinct set when its time ends, and starts it afresh', async () => {
      const key = `d:${id()}`;
      await counters.addDistinct([{ key, members: ['ada', 'bob'], ttlSeconds: 1 }]);
      expect(await counters.countDistinct([key])).toBe(2);
      await sleep(1300);
      expect(await counters.countDistinct([key])).toBe(0);
      await counters.addDistinct([{ key, members: ['cy'], ttlSeconds: 60 }]);
      expect(await counters.countDistinct([key])).toBe(1);
    });

    it('refuses a set without a positive TTL', async () => {
      await expect(
        counters.addDistinct([{ key: `d:${id()}`, members: ['a'], ttlSeconds: 0 }]),
      ).rejects.toThrow(RangeError);
      await expect(counters.addLabels(`l:${id()}`, ['a'], Number.NaN)).rejects.toThrow(RangeError);
    });

    it('lists the labels of a label set, sorted and limited', async () => {
      const key = `l:${id()}`;
      expect(await counters.listLabels(key, 10)).toEqual([]);
      await counters.addLabels(key, ['sales', 'engineering'], 60);
      await counters.addLabels(key, ['sales', 'design'], 60);
      expect(await counters.listLabels(key, 10)).toEqual(['design', 'engineering', 'sales']);
      expect(await counters.listLabels(key, 2)).toEqual(['design', 'engineering']);
    });

    it('holds no distinct or label set without an expiry', async () => {
      expect(await harness.entriesWithoutExpiry()).toEqual([]);
    });
  });

  describe('quotas', () => {
    const day = 86_400_000;
    const t0 = new Date('2026-03-10T12:00:00Z');
    const end0 = new Date('2026-03-11T00:00:00Z');
    const plan = (now: Date, periodEnd: Date) => ({ quota: 3, credits: 2, now, periodEnd });

    it('starts a subject with the quota and credits, pays from the quota first, then from credits', async () => {
      const key = `q:${id()}`;
      const first = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 1 });
      expect(first).toEqual({ granted: true, remaining: 2, used: 1, credits: 2, periodEnd: end0 });
      const second = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 3 });
      expect(second).toEqual({ granted: true, remaining: 0, used: 4, credits: 1, periodEnd: end0 });
      const refused = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 2 });
      expect(refused).toEqual({ granted: false, remaining: 0, used: 4, credits: 1, periodEnd: end0 });
      const last = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 1 });
      expect(last).toEqual({ granted: true, remaining: 0, used: 5, credits: 0, periodEnd: end0 });
      const empty = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 1 });
      expect(empty.granted).toBe(false);
    });

    it('checks without taking when the amount is 0', async () => {
      const key = `q:${id()}`;
      const check = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 0 });
      expect(check).toEqual({ granted: true, remaining: 3, used: 0, credits: 2, periodEnd: end0 });
      await counters.setQuota(key, plan(t0, end0), { remaining: 0, credits: 0 });
      const refused = await counters.consumeQuota(key, { ...plan(t0, end0), amount: 0 });
      expect(refused).toEqual({ granted: false, remaining: 0, used: 0, credits: 0, periodEnd: end0 });
    });

    it('restarts the period once its end has passed, keeping the credits', async () => {
      const key = `q:${id()}`;
      await counters.consumeQuota(key, { ...plan(t0, end0), amount: 4 });
      const justBefore = new Date(end0.getTime() - 1);
      const stillOld = await counters.consumeQuota(key, { ...plan(justBefore, end0), amount: 0 });
      expect(stillOld).toMatchObject({ remaining: 0, used: 4, credits: 1, periodEnd: end0 });
      const end1 = new Date(end0.getTime() + day);
      const next = await counters.consumeQuota(key, { ...plan(end0, end1), amount: 1 });
      expect(next).toEqual({ granted: true, remaining: 2, used: 1, credits: 1, periodEnd: end1 });
    });

    it('sets the remaining quota and credits as an administrator asks', async () => {
      const key = `q:${id()}`;
      const set = await counters.setQuota(key, plan(t0, end0), { remaining: 50 });
      expect(set).toEqual({ remaining: 50, used: 0, credits: 2, periodEnd: end0 });
      const both = await counters.setQuota(key, plan(t0, end0), { remaining: 7, credits: 9 });
      const creditsOnly = await counters.setQuota(key, plan(t0, end0), { credits: 4 });
      expect(creditsOnly).toEqual({ remaining: 7, used: 0, credits: 4, periodEnd: end0 });
      expect(both).toEqual({ remaining: 7, used: 0, credits: 9, periodEnd: end0 });
      await expect(counters.setQuota(key, plan(t0, end0), { remaining: -1 })).rejects.toThrow(RangeError);
      await expect(counters.consumeQuota(key, { ...plan(t0, end0), amount: 1.5 })).rejects.toThrow(
        RangeError,
      );
    });

    it('grants exactly the quota to 100 parallel consumers', async () => {
      const key = `q:${id()}`;
      const request = { quota: 10, credits: 0, now: t0, periodEnd: end0, amount: 1 };
      const results = await Promise.all(
        Array.from({ length: 100 }, () => counters.consumeQuota(key, request)),
      );
      expect(results.filter((r) => r.granted)).toHaveLength(10);
      expect(
        results
          .filter((r) => r.granted)
          .map((r) => r.remaining)
          .sort((a, b) => a - b),
      ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const after = await counters.consumeQuota(key, { ...request, amount: 0 });
      expect(after).toMatchObject({ granted: false, remaining: 0, used: 10 });
    });

    it('admits a request in one step: counts every window, and takes quota only within the limits', async () => {
      const tag = id();
      const windows = [
        { key: `w:h:${tag}`, windowSeconds: 3600, limit: 100 },
        { key: `w:s:${tag}`, windowSeconds: 60, limit: 2 },
      ];
      const quota = { key: `q:${tag}`, ...plan(t0, end0), amount: 1 };
      const first = await counters.admit({ windows, quota });
      expect(first.limited).toBe(false);
      expect(first.windows.map((w) => w.value)).toEqual([1, 1]);
      expect(first.windows[0]!.resetAt.getTime()).toBeGreaterThan(Date.now() + 3_500_000);
      expect(first.quota).toEqual({ granted: true, remaining: 2, used: 1, credits: 2, periodEnd: end0 });
      expect((await counters.admit({ windows, quota })).quota).toMatchObject({ granted: true, remaining: 1 });
      const third = await counters.admit({ windows, quota });
      expect(third.limited).toBe(true);
      expect(third.windows.map((w) => w.value)).toEqual([3, 3]);
      expect(third.quota).toBeUndefined();
      // The refused request took nothing.
      expect(await counters.consumeQuota(quota.key, { ...quota, amount: 0 })).toMatchObject({
        remaining: 1,
        used: 2,
      });
      const ratesOnly = await counters.admit({
        windows: [{ key: `w:o:${tag}`, windowSeconds: 60, limit: 5 }],
      });
      expect(ratesOnly).toEqual({ windows: [{ value: 1, resetAt: expect.any(Date) }], limited: false });
    });

    it('holds no quota without an expiry', async () => {
      expect(await harness.entriesWithoutExpiry()).toEqual([]);
    });
  });
}
