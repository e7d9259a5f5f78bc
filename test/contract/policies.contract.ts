/**
 * The PolicyRepository contract: every adapter passes this suite unchanged. Each *.test.ts harness
 * gives a fresh data set, opened twice (two instances on the same data).
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';

import { StoreConflictError } from '../../src/store/errors.js';
import type { DurableStore, PolicyRepository } from '../../src/store/ports.js';

export interface PolicyHarness {
  open(): Promise<DurableStore>;
  destroy(): Promise<void>;
}

const tag = () => randomBytes(5).toString('hex');
const text = (action: string) => `permit(principal, action == Action::"${action}", resource);`;

export function describePolicyContract(harness: PolicyHarness): void {
  let store: DurableStore;
  let other: DurableStore;
  let repo: PolicyRepository;

  beforeAll(async () => {
    store = await harness.open();
    other = await harness.open();
    repo = store.policies;
  });
  afterAll(async () => {
    await store.close();
    await other.close();
    await harness.destroy();
  });

  it('appends versions, refuses stale writers, and lists heads by id', async () => {
    const id = `p-${tag()}`;
    const v1 = await repo.append(
      { policy_id: id, description: null, policy: text('a'), enabled: true },
      'absent',
    );
    expect(v1).toMatchObject({ policy_id: id, version: 1, deleted: false, enabled: true });
    await expect(
      repo.append({ policy_id: id, description: null, policy: text('b'), enabled: true }, 'absent'),
    ).rejects.toBeInstanceOf(StoreConflictError);
    const v2 = await repo.append({ policy_id: id, description: 'd', policy: text('b'), enabled: false }, 1);
    expect(v2.version).toBe(2);
    await expect(
      other.policies.append({ policy_id: id, description: null, policy: text('c'), enabled: true }, 1),
    ).rejects.toBeInstanceOf(StoreConflictError);
    const found = await other.policies.findById(id);
    expect(found).toMatchObject({ id, version: 2, description: 'd', policy: text('b'), enabled: false });
    expect(found!.created_at.getTime()).toBe(v1.created_at.getTime());
    expect(found!.updated_at.getTime()).toBe(v2.created_at.getTime());
    const ids = (await repo.list()).map((p) => p.id);
    expect(ids).toContain(id);
    expect([...ids].sort()).toEqual(ids);
  });

  it('reads as of a moment, hides deleted policies, and lets a deleted id be written again', async () => {
    const id = `q-${tag()}`;
    const v1 = await repo.append(
      { policy_id: id, description: null, policy: text('one'), enabled: true },
      'absent',
    );
    await new Promise((r) => setTimeout(r, 5));
    const v2 = await repo.append({ policy_id: id, description: null, policy: text('two'), enabled: true }, 1);
    expect((await repo.list(v1.created_at)).find((p) => p.id === id)?.policy).toBe(text('one'));
    expect((await repo.list(new Date(v1.created_at.getTime() - 1))).find((p) => p.id === id)).toBeUndefined();
    const before = await repo.revision();
    await repo.append(
      { policy_id: id, description: null, policy: text('two'), enabled: false, deleted: true },
      2,
    );
    expect(await other.policies.revision()).not.toBe(before);
    expect(await repo.findById(id)).toBeNull();
    expect((await repo.list()).find((p) => p.id === id)).toBeUndefined();
    expect((await repo.list(v2.created_at)).find((p) => p.id === id)?.policy).toBe(text('two'));
    const again = await repo.append(
      { policy_id: id, description: null, policy: text('three'), enabled: true },
      'absent',
    );
    expect(again.version).toBe(4);
    expect((await repo.versions(id)).map((v) => [v.version, v.deleted])).toEqual([
      [1, false],
      [2, false],
      [3, true],
      [4, false],
    ]);
    expect(await repo.versions(`missing-${tag()}`)).toEqual([]);
  });

  it('stamps each version after the one it follows, even within one millisecond', async () => {
    const id = `t-${tag()}`;
    let latest = await repo.append(
      { policy_id: id, description: null, policy: text('v1'), enabled: true },
      'absent',
    );
    const stamps = [latest.created_at.getTime()];
    for (let version = 2; version <= 6; version++) {
      latest = await repo.append(
        { policy_id: id, description: null, policy: text(`v${version}`), enabled: true },
        latest.version,
      );
      stamps.push(latest.created_at.getTime());
    }
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]).toBeGreaterThan(stamps[i - 1]!);
    for (const [i, at] of stamps.entries()) {
      expect((await repo.list(new Date(at))).find((p) => p.id === id)?.policy).toBe(text(`v${i + 1}`));
    }
  });

  it('versions the schema with the same stale-writer check', async () => {
    const current = (await repo.getSchema())?.version ?? 0;
    const put = await repo.putSchema('entity User;', current);
    expect(put).toMatchObject({ schema: 'entity User;', version: current + 1 });
    await expect(other.policies.putSchema(null, current)).rejects.toBeInstanceOf(StoreConflictError);
    expect(await other.policies.putSchema(null, current + 1)).toMatchObject({
      schema: null,
      version: current + 2,
    });
    expect(await repo.getSchema()).toMatchObject({ schema: null, version: current + 2 });
  });

  it('registers, replaces, finds, lists and removes entities', async () => {
    const type = `Doc${tag()}`;
    const a = await repo.putEntity({
      type,
      id: 'a',
      attrs: { 'odd.$key': 1, nested: { x: [true] } },
      parents: [],
    });
    expect(a).toMatchObject({ type, id: 'a', attrs: { 'odd.$key': 1, nested: { x: [true] } } });
    const replaced = await repo.putEntity({
      type,
      id: 'a',
      attrs: {},
      parents: [{ type: 'Folder', id: 'f' }],
    });
    expect(replaced.created_at.getTime()).toBe(a.created_at.getTime());
    expect(replaced.parents).toEqual([{ type: 'Folder', id: 'f' }]);
    await repo.putEntity({ type, id: 'b', attrs: {}, parents: [] });
    expect(
      (
        await other.policies.findEntities([
          { type, id: 'a' },
          { type, id: 'zz' },
        ])
      ).map((e) => e.id),
    ).toEqual(['a']);
    expect((await repo.listEntities({ limit: 10, type })).map((e) => e.id)).toEqual(['a', 'b']);
    expect(await repo.countEntities(type)).toBe(2);
    expect(await repo.removeEntity(type, 'a')).toBe(true);
    expect(await repo.removeEntity(type, 'a')).toBe(false);
    expect(await repo.countEntities(type)).toBe(1);
  });
}
