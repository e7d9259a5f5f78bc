import { describe, expect, it } from '@jest/globals';

import {
  allOf,
  compileFilter,
  compileSort,
  escapeRegex,
  prefixPattern,
  type MongoFieldMap,
} from '../../src/store/mongo/mongo-query.js';
import { USER_FIELD_MAP } from '../../src/store/mongo/users.js';
import { QueryError, totalOrder, type Expr } from '../../src/store/query.js';

const compile = (expr: unknown) => compileFilter(USER_FIELD_MAP, expr as Expr);

describe('mongo filter compiler', () => {
  it('compiles each operator to an explicit MongoDB operator', () => {
    expect(compile({ field: 'role', op: 'eq', value: 'admin' })).toEqual({ role: { $eq: 'admin' } });
    expect(compile({ field: 'status', op: 'ne', value: 'active' })).toEqual({ status: { $ne: 'active' } });
    expect(compile({ field: 'login_count', op: 'gt', value: 3 })).toEqual({ login_count: { $gt: 3 } });
    expect(compile({ field: 'login_count', op: 'gte', value: 3 })).toEqual({ login_count: { $gte: 3 } });
    expect(compile({ field: 'login_count', op: 'lt', value: 2 })).toEqual({ login_count: { $lt: 2 } });
    expect(compile({ field: 'login_count', op: 'lte', value: 2 })).toEqual({ login_count: { $lte: 2 } });
    expect(compile({ field: 'status', op: 'in', value: ['suspended', 'inactive'] })).toEqual({
      status: { $in: ['suspended', 'inactive'] },
    });
    expect(compile({ field: 'last_name', op: 'contains', value: 'MIT' })).toEqual({
      last_name: { $regex: 'MIT', $options: 'i' },
    });
    expect(compile({ field: 'email_verified', op: 'eq', value: false })).toEqual({
      email_verified: { $eq: false },
    });
    const at = new Date('2026-01-01T00:00:00.000Z');
    expect(compile({ field: 'created_at', op: 'gte', value: at })).toEqual({ created_at: { $gte: at } });
  });

  it('keeps MongoDB null semantics for eq and ne', () => {
    expect(compile({ field: 'last_login', op: 'eq', value: null })).toEqual({ last_login: { $eq: null } });
    expect(compile({ field: 'last_login', op: 'ne', value: null })).toEqual({ last_login: { $ne: null } });
  });

  it('maps id to _id and email to its normalized twin, normalizing values', () => {
    expect(compile({ field: 'id', op: 'eq', value: 'usr_1' })).toEqual({ _id: { $eq: 'usr_1' } });
    expect(compile({ field: 'email', op: 'eq', value: '  Ada@Example.COM ' })).toEqual({
      email_normalized: { $eq: 'ada@example.com' },
    });
    expect(compile({ field: 'email', op: 'in', value: ['A@X.ORG', 'b@x.org'] })).toEqual({
      email_normalized: { $in: ['a@x.org', 'b@x.org'] },
    });
    expect(compile({ field: 'email', op: 'contains', value: 'EXAMPLE.org' })).toEqual({
      email_normalized: { $regex: 'example\\.org', $options: 'i' },
    });
  });

  it('addresses metadata paths under metadata without type checks', () => {
    expect(compile({ field: 'metadata.plan.tier', op: 'eq', value: 'gold' })).toEqual({
      'metadata.plan.tier': { $eq: 'gold' },
    });
    expect(compile({ field: 'metadata.score', op: 'gt', value: 7 })).toEqual({
      'metadata.score': { $gt: 7 },
    });
    expect(compile({ field: 'metadata.score', op: 'in', value: ['10', 10, true] })).toEqual({
      'metadata.score': { $in: ['10', 10, true] },
    });
    expect(compile({ field: 'metadata.note', op: 'contains', value: '{"$gt"' })).toEqual({
      'metadata.note': { $regex: '\\{"\\$gt"', $options: 'i' },
    });
  });

  it('escapes every regex metacharacter in contains', () => {
    const hostile = '.*+?^${}()|[]\\';
    const filter = compile({ field: 'first_name', op: 'contains', value: hostile }) as {
      first_name: { $regex: string };
    };
    expect(filter.first_name.$regex).toBe('\\.\\*\\+\\?\\^\\$\\{\\}\\(\\)\\|\\[\\]\\\\');
    expect(new RegExp(filter.first_name.$regex).test(`x${hostile}y`)).toBe(true);
    expect(new RegExp(filter.first_name.$regex).test('anything')).toBe(false);
    expect(escapeRegex('a.b')).toBe('a\\.b');
    expect(prefixPattern('smi.th')).toBe('^smi\\.th');
  });

  it('combines and/or, flattening single children and handling empty lists', () => {
    const where: Expr = {
      or: [
        {
          and: [
            { field: 'role', op: 'eq', value: 'admin' },
            { field: 'login_count', op: 'gt', value: 4 },
          ],
        },
        { field: 'status', op: 'eq', value: 'inactive' },
      ],
    };
    expect(compile(where)).toEqual({
      $or: [
        { $and: [{ role: { $eq: 'admin' } }, { login_count: { $gt: 4 } }] },
        { status: { $eq: 'inactive' } },
      ],
    });
    expect(compile({ and: [{ field: 'role', op: 'eq', value: 'x' }] })).toEqual({ role: { $eq: 'x' } });
    expect(compile({ and: [] })).toEqual({});
    expect(compile({ or: [] })).toEqual({ _id: { $exists: false } });
  });

  it('refuses hostile fields, operators and values with QueryError instead of passing them through', () => {
    const bad: unknown[] = [
      { field: '$where', op: 'eq', value: 'sleep(1000)' },
      { field: 'password_hash', op: 'eq', value: 'x' },
      { field: 'email_normalized', op: 'eq', value: 'x' },
      { field: 'search_terms', op: 'eq', value: 'x' },
      { field: '_id', op: 'eq', value: 'x' },
      { field: 'constructor', op: 'eq', value: 'x' },
      { field: '__proto__', op: 'eq', value: 'x' },
      { field: 'metadata.$gt', op: 'eq', value: 1 },
      { field: 'metadata.a..b', op: 'eq', value: 1 },
      { field: 'metadata.a.$where', op: 'eq', value: 1 },
      { field: 'metadata', op: 'eq', value: 1 },
      { field: 'role', op: '$regex', value: '.*' },
      { field: 'role', op: 'where', value: 'x' },
      { field: 'role', op: 'eq', value: { $ne: null } },
      { field: 'role', op: 'eq', value: { $regex: '.*' } },
      { field: 'role', op: 'eq', value: ['admin'] },
      { field: 'metadata.tier', op: 'eq', value: { $gt: '' } },
      { field: 'role', op: 'in', value: [{ $gt: '' }] },
      { field: 'role', op: 'in', value: [['admin']] },
      { field: 'role', op: 'in', value: 'admin' },
      { field: 'role', op: 'in', value: [] },
      { field: 'role', op: 'in', value: ['a', null] },
      { field: 'role', op: 'gt', value: null },
      { field: 'role', op: 'contains', value: '' },
      { field: 'role', op: 'contains', value: { $regex: '.*' } },
      { field: 'login_count', op: 'contains', value: '1' },
      { field: 'login_count', op: 'eq', value: Number.NaN },
      { field: 'login_count', op: 'eq', value: '3' },
      { field: 'role', op: 'eq', value: 3 },
      { field: 'created_at', op: 'gt', value: '2026-01-01' },
      { field: 'email_verified', op: 'eq', value: 'true' },
      { and: 'nope' },
      { or: { field: 'role', op: 'eq', value: 'x' } },
      { nor: [] },
      { $where: 'sleep(1000)' },
      { and: [{ field: 'role', op: 'eq', value: { $ne: null } }] },
    ];
    for (const where of bad) {
      expect(() => compile(where)).toThrow(QueryError);
    }
  });
});

describe('mongo sort compiler', () => {
  it('keeps key order, maps fields, and ends with _id from totalOrder', () => {
    expect(
      compileSort(
        USER_FIELD_MAP,
        totalOrder([
          { field: 'role', dir: 'asc' },
          { field: 'login_count', dir: 'desc' },
        ]),
      ),
    ).toEqual({ role: 1, login_count: -1, _id: -1 });
    expect(Object.keys(compileSort(USER_FIELD_MAP, totalOrder([{ field: 'email', dir: 'desc' }])))).toEqual([
      'email_normalized',
      '_id',
    ]);
    expect(compileSort(USER_FIELD_MAP, totalOrder(undefined))).toEqual({ created_at: -1, _id: -1 });
  });

  it('refuses fields outside the field map', () => {
    for (const field of ['password_hash', 'metadata.tier', '$natural', 'constructor', 'email_normalized']) {
      expect(() => compileSort(USER_FIELD_MAP, [{ field, dir: 'asc' }])).toThrow(QueryError);
    }
    expect(() => compileSort(USER_FIELD_MAP, [{ field: 'role', dir: 'sideways' as 'asc' }])).toThrow(
      QueryError,
    );
  });

  it('works with any field map', () => {
    const map: MongoFieldMap = { fields: { name: { path: 'n', type: 'string' } } };
    expect(compileSort(map, [{ field: 'name', dir: 'asc' }])).toEqual({ n: 1 });
    expect(() => compileFilter(map, { field: 'metadata.x', op: 'eq', value: 1 })).toThrow(QueryError);
  });
});

describe('allOf', () => {
  it('drops empty filters and joins the rest with $and', () => {
    expect(allOf({}, {})).toEqual({});
    expect(allOf({ a: 1 }, {})).toEqual({ a: 1 });
    expect(allOf({ a: 1 }, { b: 2 })).toEqual({ $and: [{ a: 1 }, { b: 2 }] });
  });
});
