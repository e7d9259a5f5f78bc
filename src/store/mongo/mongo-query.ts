/**
 * Compiles the query tree (store/query.ts) to a MongoDB filter and sort. This compiler is the only
 * guard between query input and the driver: document paths come only from the field map, every value
 * is checked to be a scalar of the field's type and is wrapped in an explicit operator, and regexes
 * are built from escaped text only, so nothing from a query can become an operator, a `$where` or a
 * pattern of its own.
 */
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

export interface MongoField {
  /** Document path the field is stored at. */
  path: string;
  type: FieldType;
}

export interface MongoFieldMap {
  fields: Readonly<Record<string, MongoField>>;
  /** Path of the free-form object that `metadata.<path>` fields address. */
  metadataPath?: string;
  /** Applied to string values of a field before comparing (for example email normalization). */
  normalize?: (field: string, value: string) => string;
}

export type MongoFilter = { [path: string]: unknown };
export type MongoSort = { [path: string]: 1 | -1 };

/** Matches no document: `$or: []` is an error on MongoDB, and every document has an `_id`. */
const MATCH_NOTHING: MongoFilter = { _id: { $exists: false } };

/** Escapes every character with a meaning in PCRE (MongoDB) and RE2 (FerretDB) patterns. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A pattern matching strings that start with `prefix`, usable by an index on MongoDB. */
export function prefixPattern(prefix: string): string {
  return `^${escapeRegex(prefix)}`;
}

/**
 * checkComparison has vetted the value already; this repeats the scalar test at the point of use
 * because letting an object through here would turn query input into operators.
 */
function scalar(field: string, value: unknown): Scalar {
  if (
    value === null ||
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isFinite(value)) ||
    (value instanceof Date && !Number.isNaN(value.getTime()))
  ) {
    return value;
  }
  throw new QueryError(`${field} needs a scalar value`);
}

/**
 * Typed fields only accept values of their type (null aside): mongoose would otherwise cast a
 * mismatched value silently or fail later with a CastError, far from the query that caused it.
 */
function checkType(field: string, type: FieldType, value: Scalar): void {
  if (value === null) return;
  const ok = type === 'date' ? value instanceof Date : typeof value === type;
  if (!ok) throw new QueryError(`${field} compares ${type} values`);
}

const RANGE_OPERATORS = { gt: '$gt', gte: '$gte', lt: '$lt', lte: '$lte' } as const;

function compileComparison(map: MongoFieldMap, c: Comparison): MongoFilter {
  checkComparison(c, map.fields);
  // Own properties only: `in` (used by checkComparison) also sees Object.prototype's `constructor`.
  const field = Object.hasOwn(map.fields, c.field) ? map.fields[c.field] : undefined;
  let path: string;
  let prepare: (value: unknown) => Scalar;
  if (field) {
    path = field.path;
    prepare = (value) => {
      const v = scalar(c.field, value);
      checkType(c.field, field.type, v);
      return typeof v === 'string' && map.normalize ? map.normalize(c.field, v) : v;
    };
  } else {
    const segments = metadataPath(c.field);
    if (!segments || !map.metadataPath) throw new QueryError(`unknown field ${c.field}`);
    // Segments are restricted to [A-Za-z0-9_-], so none can be an operator or split the path.
    path = [map.metadataPath, ...segments].join('.');
    // No type check: MongoDB's comparisons are type-bracketed, which is what metadata filters promise.
    prepare = (value) => scalar(c.field, value);
  }

  switch (c.op) {
    // eq/ne null keep MongoDB's meaning (null or missing / present and not null), which the SQL compiler mirrors.
    case 'eq':
      return { [path]: { $eq: prepare(c.value) } };
    case 'ne':
      return { [path]: { $ne: prepare(c.value) } };
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      return { [path]: { [RANGE_OPERATORS[c.op]]: prepare(c.value) } };
    case 'in': {
      if (!Array.isArray(c.value)) throw new QueryError(`in needs a list for ${c.field}`);
      return { [path]: { $in: c.value.map(prepare) } };
    }
    case 'contains': {
      if (field && field.type !== 'string')
        throw new QueryError(`contains needs a text field, not ${c.field}`);
      const text = prepare(c.value);
      if (typeof text !== 'string') throw new QueryError(`contains needs a string for ${c.field}`);
      return { [path]: { $regex: escapeRegex(text), $options: 'i' } };
    }
    default:
      throw new QueryError(`unknown operator ${String(c.op)}`);
  }
}

/** Compiles a filter expression; throws QueryError for anything outside the query language. */
export function compileFilter(map: MongoFieldMap, expr: Expr): MongoFilter {
  if (expr === null || typeof expr !== 'object') throw new QueryError('a filter must be an object');
  if (isComparison(expr)) return compileComparison(map, expr);
  const isAnd = 'and' in expr;
  const parts: unknown = isAnd ? expr.and : 'or' in expr ? expr.or : undefined;
  if (!Array.isArray(parts)) throw new QueryError('a filter node needs `field`, `and` or `or`');
  if (parts.length === 0) return isAnd ? {} : MATCH_NOTHING;
  const compiled = parts.map((e: Expr) => compileFilter(map, e));
  if (compiled.length === 1) return compiled[0]!;
  return isAnd ? { $and: compiled } : { $or: compiled };
}

/** Joins filters with `$and`, dropping empty ones (an empty `$and` is an error on MongoDB). */
export function allOf(...filters: MongoFilter[]): MongoFilter {
  const present = filters.filter((f) => Object.keys(f).length > 0);
  if (present.length === 0) return {};
  if (present.length === 1) return present[0]!;
  return { $and: present };
}

/** Compiles sort keys (already made total by totalOrder) to a MongoDB sort in the same key order. */
export function compileSort(map: MongoFieldMap, sort: SortKey[]): MongoSort {
  const out: MongoSort = {};
  for (const key of sort) {
    const field = Object.hasOwn(map.fields, key.field) ? map.fields[key.field] : undefined;
    if (!field) throw new QueryError(`cannot sort by ${key.field}`);
    if (key.dir !== 'asc' && key.dir !== 'desc')
      throw new QueryError(`unknown sort direction ${String(key.dir)}`);
    // A repeated path cannot change the order the first one set, and MongoDB refuses duplicates.
    if (!(field.path in out)) out[field.path] = key.dir === 'desc' ? -1 : 1;
  }
  return out;
}
