/**
 * The query language both durable adapters compile to their own: a small boolean expression tree over
 * whitelisted fields with typed scalar values, sort keys, and keyset cursors built from the same tree.
 * User input never reaches a backend as text: it is parsed into this tree first, and adapters refuse
 * fields and values outside the rules below.
 */

export const COMPARISON_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'contains'] as const;
export type ComparisonOp = (typeof COMPARISON_OPS)[number];

export type Scalar = string | number | boolean | Date | null;

export interface Comparison {
  field: string;
  op: ComparisonOp;
  /** An array only for `in`; a string only for `contains`. */
  value: Scalar | Scalar[];
}

export type Expr = Comparison | { and: Expr[] } | { or: Expr[] };

export type SortDirection = 'asc' | 'desc';
export interface SortKey {
  field: string;
  dir: SortDirection;
}

export type FieldType = 'string' | 'number' | 'boolean' | 'date';

/** The user fields a query may name, with their types; `metadata.<path>` is allowed on top. */
export const USER_QUERY_FIELDS: Readonly<Record<string, FieldType>> = {
  id: 'string',
  email: 'string',
  first_name: 'string',
  last_name: 'string',
  role: 'string',
  status: 'string',
  plan: 'string',
  email_verified: 'boolean',
  mfa_enabled: 'boolean',
  login_count: 'number',
  last_login: 'date',
  created_at: 'date',
  updated_at: 'date',
  deleted_at: 'date',
};

/** The audit fields a query may name. */
export const AUDIT_QUERY_FIELDS: Readonly<Record<string, FieldType>> = {
  id: 'string',
  timestamp: 'date',
  actor_type: 'string',
  actor_id: 'string',
  actor_client_id: 'string',
  action: 'string',
  target_type: 'string',
  target_id: 'string',
  request_id: 'string',
};

/** Fields a list may be sorted (and cursor-paginated) by. */
export const USER_SORT_FIELDS = [
  'id',
  'email',
  'first_name',
  'last_name',
  'role',
  'status',
  'login_count',
  'last_login',
  'created_at',
  'updated_at',
] as const;

const METADATA_SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;
/** The field names metadataPath() reads (before its reserved-segment rule), as a JSON Schema pattern. */
export const METADATA_FIELD_PATTERN = '^metadata\\.[A-Za-z0-9_-]{1,64}(?:\\.[A-Za-z0-9_-]{1,64}){0,4}$';

/** `metadata.plan.tier` → ['plan', 'tier']; undefined when not a valid metadata path. */
const RESERVED_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

export function metadataPath(field: string): string[] | undefined {
  if (!field.startsWith('metadata.')) return undefined;
  const segments = field.slice('metadata.'.length).split('.');
  if (segments.length === 0 || segments.length > 5) return undefined;
  // Segments naming JavaScript's object machinery never address stored data.
  return segments.every((s) => METADATA_SEGMENT.test(s) && !RESERVED_SEGMENTS.has(s)) ? segments : undefined;
}

/** Thrown by adapters for a field or value the query language does not allow (a programming error upstream). */
export class QueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

function isScalar(v: unknown): v is Scalar {
  return (
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isFinite(v)) ||
    (v instanceof Date && !Number.isNaN(v.getTime()))
  );
}

/** Checks a comparison against the field catalog; adapters call it before compiling. */
export function checkComparison(c: Comparison, fields: Readonly<Record<string, unknown>>): void {
  if (!Object.hasOwn(fields, c.field) && !metadataPath(c.field))
    throw new QueryError(`unknown field ${c.field}`);
  if (!(COMPARISON_OPS as readonly string[]).includes(c.op)) throw new QueryError(`unknown operator ${c.op}`);
  if (c.op === 'in') {
    if (!Array.isArray(c.value) || c.value.length === 0 || c.value.length > 100 || !c.value.every(isScalar)) {
      throw new QueryError(`in needs a list of 1 to 100 scalar values for ${c.field}`);
    }
    if (c.value.some((v) => v === null)) throw new QueryError(`in does not accept null for ${c.field}`);
  } else if (c.op === 'contains') {
    if (typeof c.value !== 'string' || c.value.length === 0) {
      throw new QueryError(`contains needs a non-empty string for ${c.field}`);
    }
  } else if (!isScalar(c.value)) {
    throw new QueryError(`${c.op} needs a scalar value for ${c.field}`);
  } else if (c.value === null && c.op !== 'eq' && c.op !== 'ne') {
    throw new QueryError(`${c.op} does not accept null for ${c.field}`);
  }
}

export function isComparison(e: Expr): e is Comparison {
  return 'field' in e;
}

export function and(...parts: (Expr | undefined)[]): Expr | undefined {
  const present = parts.filter((p): p is Expr => p !== undefined);
  if (present.length === 0) return undefined;
  if (present.length === 1) return present[0];
  return { and: present };
}

/** Appends `id` as the final tie-breaker so every order is total (needed by keyset cursors). */
export function totalOrder(
  sort: SortKey[] | undefined,
  fallback: SortKey = { field: 'created_at', dir: 'desc' },
) {
  const keys = sort && sort.length > 0 ? sort.filter((k) => k.field !== 'id') : [fallback];
  const idKey = sort?.find((k) => k.field === 'id');
  const last = keys[keys.length - 1];
  return [...keys, idKey ?? { field: 'id', dir: last ? last.dir : 'asc' }];
}

/**
 * The rows strictly after `values` in the total order `sort`: the usual lexicographic keyset
 * predicate, extended for nulls, which sort first ascending and last descending on both backends.
 */
export function keysetAfter(sort: SortKey[], values: Scalar[]): Expr {
  const branches: Expr[] = [];
  for (let i = 0; i < sort.length; i += 1) {
    const key = sort[i]!;
    const value = values[i] ?? null;
    const equalBefore: Expr[] = sort
      .slice(0, i)
      .map((k, j) => ({ field: k.field, op: 'eq', value: values[j] ?? null }));
    let beyond: Expr | undefined;
    if (value === null) {
      // Ascending: nulls come first, so every non-null is after. Descending: nulls are last, nothing after.
      beyond = key.dir === 'asc' ? { field: key.field, op: 'ne', value: null } : undefined;
    } else if (key.dir === 'asc') {
      beyond = { field: key.field, op: 'gt', value };
    } else {
      beyond = {
        or: [
          { field: key.field, op: 'lt', value },
          { field: key.field, op: 'eq', value: null },
        ],
      };
    }
    if (beyond) branches.push(and(...equalBefore, beyond)!);
  }
  return branches.length === 1 ? branches[0]! : { or: branches };
}

/** Encodes the sort-key values of the last row of a page as an opaque cursor. */
export function encodeCursor(values: Scalar[]): string {
  const wire = values.map((v) => (v instanceof Date ? { d: v.toISOString() } : v));
  return Buffer.from(JSON.stringify(wire)).toString('base64url');
}

/** Decodes a cursor; undefined when it is not one we issued for a sort of this length. */
export function decodeCursor(cursor: string, length: number): Scalar[] | undefined {
  try {
    const wire: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(wire) || wire.length !== length) return undefined;
    const values = wire.map((v: unknown) => {
      if (v && typeof v === 'object' && 'd' in v && typeof (v as { d: unknown }).d === 'string') {
        return new Date((v as { d: string }).d);
      }
      return v;
    });
    return values.every(isScalar) ? (values as Scalar[]) : undefined;
  } catch {
    return undefined;
  }
}

/** Search terms: lower-cased words of names and of the email split at its punctuation. */
export function searchTerms(...texts: string[]): string[] {
  const out = new Set<string>();
  for (const text of texts) {
    for (const word of text
      .normalize('NFKC')
      .toLowerCase()
      .split(/[\s@.+_\-'",;:()/\\]+/u)) {
      if (word) out.add(word.slice(0, 64));
    }
  }
  return [...out];
}

/**
 * A search made only of separators (`_`, `.`, `@`, …) has no term to look for: it matches nothing,
 * rather than falling back to "no search" and listing everyone.
 */
export function searchFindsNothing(q: string | undefined): boolean {
  return q !== undefined && q.trim() !== '' && searchTerms(q).length === 0;
}

/** Terms of a search query; at most 5 are used. */
export function searchQueryTerms(q: string): string[] {
  return searchTerms(q).slice(0, 5);
}
