/**
 * Compiles the query tree (store/query.ts) to a SQLite WHERE clause. Column names come only from the
 * field map below; every value and JSON path is a bound parameter, never text in the statement.
 */
import type { SQLInputValue } from 'node:sqlite';

import {
  checkComparison,
  isComparison,
  metadataPath,
  QueryError,
  type Comparison,
  type Expr,
  type FieldType,
  type Scalar,
  type SortKey,
} from '../query.js';

export interface SqlField {
  column: string;
  type: FieldType;
}

export interface SqlFieldMap {
  fields: Readonly<Record<string, SqlField>>;
  /** Column holding the JSON object that `metadata.<path>` fields address. */
  metadataColumn?: string;
  /** Applied to values of a field before comparing (for example email normalization). */
  normalize?: (field: string, value: string) => string;
}

export interface SqlFragment {
  sql: string;
  params: SQLInputValue[];
}

function bind(value: Scalar): SQLInputValue {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

function jsonPath(segments: string[]): string {
  return `$${segments.map((s) => `."${s}"`).join('')}`;
}

/** JSON types a metadata value must have to compare like MongoDB's type-bracketed comparisons. */
function jsonTypesFor(value: Scalar): string[] | undefined {
  if (typeof value === 'number') return ['integer', 'real'];
  if (typeof value === 'boolean') return ['true', 'false'];
  if (typeof value === 'string') return ['text'];
  return undefined;
}

function compileMetadata(column: string, segments: string[], c: Comparison): SqlFragment {
  const path = jsonPath(segments);
  const extract = `json_extract(${column}, ?)`;
  const typeCheck = (value: Scalar): SqlFragment => {
    const types = jsonTypesFor(value);
    if (!types) return { sql: '1', params: [] };
    return {
      sql: `json_type(${column}, ?) IN (${types.map(() => '?').join(', ')})`,
      params: [path, ...types],
    };
  };
  const compare = (op: string, value: Scalar): SqlFragment => {
    const t = typeCheck(value);
    return { sql: `(${t.sql} AND ${extract} ${op} ?)`, params: [...t.params, path, bind(value)] };
  };
  switch (c.op) {
    case 'eq':
    case 'ne': {
      const value = c.value as Scalar;
      const eq: SqlFragment =
        value === null
          ? {
              sql: `(json_type(${column}, ?) IS NULL OR json_type(${column}, ?) = 'null')`,
              params: [path, path],
            }
          : compare('=', value);
      return c.op === 'eq' ? eq : { sql: `NOT IFNULL(${eq.sql}, 0)`, params: eq.params };
    }
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte': {
      const op = { gt: '>', gte: '>=', lt: '<', lte: '<=' }[c.op];
      return compare(op, c.value as Scalar);
    }
    case 'in': {
      const parts = (c.value as Scalar[]).map((v) => compare('=', v));
      return { sql: `(${parts.map((p) => p.sql).join(' OR ')})`, params: parts.flatMap((p) => p.params) };
    }
    case 'contains':
      return {
        sql: `(json_type(${column}, ?) = 'text' AND instr(lower(${extract}), lower(?)) > 0)`,
        params: [path, path, c.value as string],
      };
  }
}

/**
 * Own properties only: a plain lookup would find Object.prototype members (`constructor`,
 * `__proto__`), which `in` (in checkComparison) accepts too, and put `undefined` into the statement.
 */
function fieldOf(map: SqlFieldMap, name: string): SqlField | undefined {
  return Object.hasOwn(map.fields, name) ? map.fields[name] : undefined;
}

function compileComparison(map: SqlFieldMap, c: Comparison): SqlFragment {
  checkComparison(c, map.fields);
  const field = fieldOf(map, c.field);
  if (!field) {
    const segments = metadataPath(c.field);
    if (!segments || !map.metadataColumn) throw new QueryError(`unknown field ${c.field}`);
    return compileMetadata(map.metadataColumn, segments, c);
  }
  const norm = (v: Scalar): Scalar =>
    typeof v === 'string' && map.normalize ? map.normalize(c.field, v) : v;
  const col = field.column;
  switch (c.op) {
    case 'eq':
      return { sql: `${col} IS ?`, params: [bind(norm(c.value as Scalar))] };
    case 'ne':
      return { sql: `${col} IS NOT ?`, params: [bind(norm(c.value as Scalar))] };
    case 'gt':
      return { sql: `${col} > ?`, params: [bind(norm(c.value as Scalar))] };
    case 'gte':
      return { sql: `${col} >= ?`, params: [bind(norm(c.value as Scalar))] };
    case 'lt':
      return { sql: `${col} < ?`, params: [bind(norm(c.value as Scalar))] };
    case 'lte':
      return { sql: `${col} <= ?`, params: [bind(norm(c.value as Scalar))] };
    case 'in': {
      const values = (c.value as Scalar[]).map((v) => bind(norm(v)));
      return { sql: `${col} IN (${values.map(() => '?').join(', ')})`, params: values };
    }
    case 'contains':
      if (field.type !== 'string') throw new QueryError(`contains needs a text field, not ${c.field}`);
      return { sql: `instr(lower(${col}), lower(?)) > 0`, params: [bind(norm(c.value as string))] };
  }
}

export function compileWhere(map: SqlFieldMap, expr: Expr): SqlFragment {
  if (isComparison(expr)) return compileComparison(map, expr);
  const isAnd = 'and' in expr;
  const parts = (isAnd ? expr.and : expr.or).map((e) => compileWhere(map, e));
  if (parts.length === 0) return { sql: isAnd ? '1' : '0', params: [] };
  return {
    sql: `(${parts.map((p) => p.sql).join(isAnd ? ' AND ' : ' OR ')})`,
    params: parts.flatMap((p) => p.params),
  };
}

export function compileOrder(map: SqlFieldMap, sort: SortKey[]): string {
  return sort
    .map((k) => {
      const field = fieldOf(map, k.field);
      if (!field) throw new QueryError(`cannot sort by ${k.field}`);
      // Refused as the mongo compiler does, rather than read as ascending.
      if (k.dir !== 'asc' && k.dir !== 'desc')
        throw new QueryError(`unknown sort direction ${String(k.dir)}`);
      return `${field.column} ${k.dir === 'desc' ? 'DESC' : 'ASC'}`;
    })
    .join(', ');
}
