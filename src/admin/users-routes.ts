/** /v2/users: the user lifecycle routes (shapes in shared/API.md). */
import { publicUser, type EventUser } from '../events/catalog.js';
import type { Context } from 'koa';
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import type { RequestFacts } from '../services/audit.js';
import type { AnalyticsService } from '../services/analytics.js';
import type { PasswordResets } from '../services/password-resets.js';
import { UserService, type CreateUserInput, type Page } from '../services/users.js';
import type { Role as RoleRecord, SsoIdentity, User as UserRecord } from '../store/ports.js';
import {
  COMPARISON_OPS,
  METADATA_FIELD_PATTERN,
  metadataPath,
  type Comparison,
  type Expr,
  type Scalar,
  type SortKey,
} from '../store/query.js';
import { normalizeEmail } from '../store/user-fields.js';
import type { ApiRouter } from './api-router.js';
import { validationError } from './api-router.js';
import { principalActor, type Principal } from './principal.js';
import {
  Activity,
  BulkCreate,
  BulkResult,
  CreateUser,
  DeleteResult,
  codePoints,
  isoOf,
  jsonParameter,
  type JsonSchema,
  pageQuery,
  RESERVED_KEYS,
  WHITESPACE,
  wire,
  Preferences,
  jsonObject,
  RoleSummary,
  SetPassword,
  UpdateUser,
  User,
  UserList,
  userStatus,
  roleName,
} from './schemas.js';

export function requestFacts(ctx: Context): RequestFacts {
  return {
    request_id: String(ctx.state.requestId ?? '') || null,
    ip_address: ctx.ip || null,
    user_agent: ctx.get('User-Agent') || null,
  };
}

/** A service call's context: who acts, from where, holding which management scopes. */
export function contextOf(ctx: Context, principal: Principal | undefined) {
  return {
    actor: principalActor(principal),
    request: requestFacts(ctx),
    grants: principal?.scopes ?? new Set<string>(),
  };
}

/** The user as every event shows it; the management API adds `identities` (see apiUsers). */
export const toApiUser: (user: UserRecord) => EventUser = publicUser;

/** Users' upstream identities (single sign-on), by user id. */
export type IdentityLookup = (userIds: readonly string[]) => Promise<Map<string, SsoIdentity[]>>;
const noIdentities: IdentityLookup = async () => new Map();

/** Users as the management API shows them: the public shape plus their upstream identities. */
async function shapeUsers(list: readonly UserRecord[], lookup: IdentityLookup) {
  const identities = list.length > 0 ? await lookup(list.map((u) => u.id)) : new Map<string, SsoIdentity[]>();
  return list.map((u) => ({
    ...toApiUser(u),
    identities: (identities.get(u.id) ?? []).map((i) => ({
      connection: i.connection_id,
      subject: i.subject,
    })),
  }));
}

const toRoleSummary = (role: RoleRecord) => ({
  id: role.id,
  name: role.name,
  display_name: role.display_name,
  permissions: role.permissions,
});

function pagination(page: Page<unknown>, limit: number, offset: number) {
  return { total: page.total, limit, offset, has_more: page.hasMore, next_cursor: page.nextCursor };
}

/* --------------------------------------------------------------------------------------------- */
/* Query parsing: sort, filters, projections                                                      */
/* --------------------------------------------------------------------------------------------- */

const SORTABLE = [
  'email',
  'first_name',
  'last_name',
  'role',
  'status',
  'login_count',
  'last_login',
  'created_at',
  'updated_at',
];

/** The fields search filters may name, with the type their values are read as. */
const FILTERABLE: Record<string, 'string' | 'number' | 'boolean' | 'date'> = {
  email: 'string',
  first_name: 'string',
  last_name: 'string',
  role: 'string',
  status: 'string',
  email_verified: 'boolean',
  mfa_enabled: 'boolean',
  login_count: 'number',
  last_login: 'date',
  created_at: 'date',
  updated_at: 'date',
};

const PROJECTABLE = Object.keys(User.shape).filter(
  (f) => !['roles', 'permissions', 'preferences'].includes(f),
);

function parseSortKeys(items: unknown[], field: string): SortKey[] {
  const keys = items.map((item, i) => {
    const match = typeof item === 'string' ? /^([a-z_]+)(?::(asc|desc))?$/.exec(item.trim()) : null;
    if (!match || !SORTABLE.includes(match[1]!)) {
      throw new AppError('VALIDATION_ERROR', {
        details: [
          {
            field: `${field}[${i}]`,
            issue: `Use "field:asc" or "field:desc" with a field of ${SORTABLE.join(', ')}`,
            provided: item,
          },
        ],
      });
    }
    return { field: match[1]!, dir: (match[2] ?? 'asc') as SortKey['dir'] };
  });
  // A field named again adds nothing to the order: its first mention counts.
  return keys.filter((key, i) => keys.findIndex((k) => k.field === key.field) === i);
}

function typed(
  value: unknown,
  type: 'string' | 'number' | 'boolean' | 'date' | 'json',
  field: string,
): Scalar {
  const fail = (issue: string): never => {
    throw new AppError('VALIDATION_ERROR', { details: [{ field, issue, provided: value }] });
  };
  switch (type) {
    case 'string':
      return typeof value === 'string' && codePoints(value) <= FILTER_TEXT_MAX
        ? value
        : fail(`Must be a string of at most ${FILTER_TEXT_MAX} characters`);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? value : fail('Must be a number');
    case 'boolean':
      return typeof value === 'boolean' ? value : fail('Must be true or false');
    case 'date':
      return typeof value === 'string' && RFC3339.safeParse(value).success
        ? new Date(value)
        : fail('Must be an RFC 3339 timestamp');
    case 'json':
      return value === null || ['string', 'number', 'boolean'].includes(typeof value)
        ? (value as Scalar)
        : fail('Must be a string, number, boolean or null');
  }
}

/** Only eq and ne compare with null (metadata values may be null). */
function notNull(value: Scalar, field: string): Scalar {
  if (value === null) {
    throw new AppError('VALIDATION_ERROR', { details: [{ field, issue: 'Only eq and ne take null' }] });
  }
  return value;
}

/** `{"role":"admin","login_count":{"gte":5},"metadata.plan":{"in":["pro"]}}` → an AND of comparisons. */
export function parseFilters(raw: unknown): Expr | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new AppError('VALIDATION_ERROR', {
      details: [{ field: 'filters', issue: 'Must be a JSON object of field → value or { op: value }' }],
    });
  }
  const parts: Comparison[] = [];
  for (const [field, condition] of Object.entries(raw)) {
    const path = `filters.${field}`;
    // Own keys only: "__proto__" or "constructor" must not find Object.prototype's members.
    const type = Object.hasOwn(FILTERABLE, field)
      ? FILTERABLE[field]
      : metadataPath(field)
        ? ('json' as const)
        : undefined;
    if (!type) {
      throw new AppError('VALIDATION_ERROR', {
        details: [
          {
            field: path,
            issue: `Not a filterable field; use one of ${Object.keys(FILTERABLE).join(', ')} or metadata.<key>`,
          },
        ],
      });
    }
    const ops: [string, unknown][] =
      condition !== null && typeof condition === 'object' && !Array.isArray(condition)
        ? Object.entries(condition)
        : [['eq', condition]];
    if (ops.length === 0)
      throw new AppError('VALIDATION_ERROR', {
        details: [{ field: path, issue: 'Needs at least one operator' }],
      });
    for (const [op, value] of ops) {
      if (!(COMPARISON_OPS as readonly string[]).includes(op)) {
        throw new AppError('VALIDATION_ERROR', {
          details: [
            { field: `${path}.${op}`, issue: `Unknown operator; use one of ${COMPARISON_OPS.join(', ')}` },
          ],
        });
      }
      const at = `${path}.${op}`;
      let parsed: Scalar | Scalar[];
      if (op === 'in') {
        if (!Array.isArray(value) || value.length === 0 || value.length > 100) {
          throw new AppError('VALIDATION_ERROR', {
            details: [{ field: at, issue: 'Must be a list of 1 to 100 values' }],
          });
        }
        parsed = value.map((v, i) => notNull(typed(v, type, `${at}[${i}]`), `${at}[${i}]`));
      } else if (op === 'contains') {
        parsed = typed(value, 'string', at);
        if (parsed === '') {
          throw new AppError('VALIDATION_ERROR', { details: [{ field: at, issue: 'Must not be empty' }] });
        }
        if (type !== 'string' && type !== 'json') {
          throw new AppError('VALIDATION_ERROR', {
            details: [{ field: at, issue: 'contains works on text fields only' }],
          });
        }
      } else if (value === null && (op === 'eq' || op === 'ne')) {
        parsed = null;
      } else {
        parsed = op === 'eq' || op === 'ne' ? typed(value, type, at) : notNull(typed(value, type, at), at);
      }
      if (field === 'email' && typeof parsed === 'string' && op !== 'contains')
        parsed = normalizeEmail(parsed);
      parts.push({ field, op: op as Comparison['op'], value: parsed });
    }
  }
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : { and: parts };
}

/* The wire forms of the query parameters below, stated from the same lists the parsers use. */
const FILTER_TEXT_MAX = 256;
const RFC3339 = z.iso.datetime({ offset: true });
const SORT_ITEM = `[${WHITESPACE}]*(?:${SORTABLE.join('|')})(?::(?:asc|desc))?[${WHITESPACE}]*`;
const INCLUDES = ['roles', 'permissions', 'preferences'];
const INCLUDE_ITEM = `[${WHITESPACE}]*(?:(?:${INCLUDES.join('|')})[${WHITESPACE}]*)?`;

/** Search words: at most 200 characters as sent, trimmed. */
const searchText = wire(
  z
    .string()
    .refine((v) => codePoints(v) <= 200, { error: 'At most 200 characters' })
    .transform((v) => v.trim()),
  { type: 'string', maxLength: 200, description: 'Words matching the start of a name or email part' },
);

const FILTER_VALUE: Record<'string' | 'number' | 'boolean' | 'date' | 'json', JsonSchema> = {
  string: { type: 'string', maxLength: FILTER_TEXT_MAX },
  number: { type: 'number' },
  boolean: { type: 'boolean' },
  date: { type: 'string', format: 'date-time' },
  json: { type: ['string', 'number', 'boolean', 'null'] },
};
/** A filter's condition: a value (eq) or operators → values, for a field of `type`. */
function filterCondition(type: keyof typeof FILTER_VALUE): JsonSchema {
  const orNull = FILTER_VALUE[type];
  const value = type === 'json' ? { type: ['string', 'number', 'boolean'] } : FILTER_VALUE[type];
  const eq = type === 'json' ? orNull : { anyOf: [value, { type: 'null' }] };
  return {
    anyOf: [
      eq,
      {
        type: 'object',
        minProperties: 1,
        additionalProperties: false,
        properties: {
          eq,
          ne: eq,
          gt: value,
          gte: value,
          lt: value,
          lte: value,
          in: { type: 'array', minItems: 1, maxItems: 100, items: value },
          ...(type === 'string' || type === 'json'
            ? { contains: { type: 'string', minLength: 1, maxLength: FILTER_TEXT_MAX } }
            : {}),
        },
      },
    ],
  };
}
const FILTERS_SCHEMA: JsonSchema = {
  type: 'object',
  description: `Field → value, or → { operator: value } with operators ${COMPARISON_OPS.join(', ')} (contains on text fields only; in takes 1 to 100 values); several fields all apply. Text values are at most ${FILTER_TEXT_MAX} characters, dates RFC 3339. metadata.<key>[.<key>…] (up to 5 keys) compares a metadata value.`,
  properties: Object.fromEntries(Object.entries(FILTERABLE).map(([f, type]) => [f, filterCondition(type)])),
  patternProperties: { [METADATA_FIELD_PATTERN]: filterCondition('json') },
  propertyNames: { not: { pattern: `^metadata\\.(?:.*\\.)?(?:${RESERVED_KEYS.join('|')})(?:\\.|$)` } },
  additionalProperties: false,
};

const listQuery = z.object({
  ...pageQuery,
  role: roleName.optional(),
  status: userStatus.optional(),
  mfa_enabled: z
    .enum(['true', 'false'], { error: 'true or false' })
    .optional()
    .describe('Only users with (true) or without (false) a second factor'),
  sort: wire(
    z.string().refine((v) => codePoints(v) <= 200, { error: 'At most 200 characters' }),
    {
      type: 'string',
      maxLength: 200,
      pattern: `^(?:${SORT_ITEM}(?:,${SORT_ITEM})*)?$`,
      description: `field:asc|desc, comma-separated for several fields (of ${SORTABLE.join(', ')}); a field named twice counts once`,
    },
  ).optional(),
  search: searchText.optional(),
});

const searchQuery = z.object({
  ...pageQuery,
  q: searchText.optional(),
  filters: jsonParameter(z.unknown(), FILTERS_SCHEMA).optional(),
  sort: jsonParameter(z.unknown(), {
    type: 'array',
    description: 'JSON array of "field:dir"; a field named twice counts once',
    items: { type: 'string', pattern: `^${SORT_ITEM}$` },
  }).optional(),
  fields: jsonParameter(z.unknown(), {
    type: 'array',
    description: 'JSON array of fields to return (id is always returned)',
    items: { enum: PROJECTABLE },
  }).optional(),
});

const idParam = z.object({ id: z.string().min(1).max(64) });
const includeQuery = z.object({
  include: wire(
    z
      .string()
      .refine((v) => codePoints(v) <= 100, { error: 'At most 100 characters' })
      .transform((s, ctx) => {
        const parts = s
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean);
        const bad = parts.find((p) => !INCLUDES.includes(p));
        if (bad)
          ctx.addIssue({
            code: 'custom',
            message: `Unknown include "${bad}"; use roles, permissions, preferences`,
          });
        return new Set(parts);
      }),
    {
      type: 'string',
      maxLength: 100,
      pattern: `^${INCLUDE_ITEM}(?:,${INCLUDE_ITEM})*$`,
      description: 'Comma-separated: roles, permissions, preferences',
    },
  )
    .optional()
    .transform((v) => v ?? new Set<string>()),
});

const USER_ERRORS: ErrorCode[] = ['USER_NOT_FOUND'];

/**
 * Names of the fields an audit diff changed; `metadata.department` for keys of object fields.
 * updated_at changes with every change, so it is left out.
 */
export function changedFieldNames(changes: Record<string, unknown> | null): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const names: string[] = [];
  for (const [field, change] of Object.entries(changes ?? {})) {
    if (field === 'updated_at') continue;
    const { before, after } = (isObject(change) ? change : {}) as { before?: unknown; after?: unknown };
    if (isObject(before) && isObject(after)) {
      for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
        if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) names.push(`${field}.${key}`);
      }
    } else {
      names.push(field);
    }
  }
  return names;
}

export function registerUserRoutes(
  api: ApiRouter,
  users: UserService,
  analytics: AnalyticsService,
  resets?: PasswordResets,
  identitiesOf: IdentityLookup = noIdentities,
): void {
  const apiUsers = (list: readonly UserRecord[]) => shapeUsers(list, identitiesOf);
  const apiUser = async (user: UserRecord) => (await apiUsers([user]))[0]!;
  api.add({
    method: 'get',
    path: '/users',
    operationId: 'listUsers',
    summary: 'List users',
    description: 'Offset or cursor pagination; cursors stay consistent while users are being added.',
    tag: 'Users',
    scope: 'user:read',
    query: listQuery,
    responses: { 200: { description: 'A page of users', schema: UserList } },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const where: Expr[] = [];
      if (query.role) where.push({ field: 'role', op: 'eq', value: query.role });
      if (query.status) where.push({ field: 'status', op: 'eq', value: query.status });
      if (query.mfa_enabled)
        where.push({ field: 'mfa_enabled', op: 'eq', value: query.mfa_enabled === 'true' });
      const sort = query.sort ? parseSortKeys(query.sort.split(','), 'sort') : undefined;
      const page = await users.list({
        limit: query.limit,
        offset: query.offset,
        cursor: query.cursor,
        where: where.length > 1 ? { and: where } : where[0],
        search: query.search,
        sort,
      });
      return {
        status: 200,
        body: { data: await apiUsers(page.items), pagination: pagination(page, query.limit, query.offset) },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/users/search',
    operationId: 'searchUsers',
    summary: 'Search users',
    description:
      'Full-text `q` over names and email, typed `filters` (unknown fields or operators are refused, never passed on), `sort`, and a `fields` projection.',
    tag: 'Users',
    scope: 'user:read',
    query: searchQuery,
    responses: {
      200: {
        description: 'A page of (projected) users',
        schema: z.object({
          data: z.array(User.partial().required({ id: true })),
          pagination: UserList.shape.pagination,
        }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const where = query.filters !== undefined ? parseFilters(query.filters) : undefined;
      let sort: SortKey[] | undefined;
      if (query.sort !== undefined) {
        if (!Array.isArray(query.sort))
          throw new AppError('VALIDATION_ERROR', {
            details: [{ field: 'sort', issue: 'Must be a JSON array of "field:dir"' }],
          });
        sort = parseSortKeys(query.sort, 'sort');
      }
      let fields: string[] | undefined;
      if (query.fields !== undefined) {
        const parsed: unknown = query.fields;
        if (!Array.isArray(parsed) || parsed.some((f) => typeof f !== 'string' || !PROJECTABLE.includes(f))) {
          throw new AppError('VALIDATION_ERROR', {
            details: [{ field: 'fields', issue: `Must be a JSON array of ${PROJECTABLE.join(', ')}` }],
          });
        }
        fields = ['id', ...(parsed as string[]).filter((f) => f !== 'id')];
      }
      const page = await users.list({
        limit: query.limit,
        offset: query.offset,
        cursor: query.cursor,
        where,
        search: query.q,
        sort,
      });
      const data = (await apiUsers(page.items)).map((shaped) => {
        const full = shaped as Record<string, unknown>;
        return fields ? Object.fromEntries(fields.map((f) => [f, full[f]])) : full;
      });
      return { status: 200, body: { data, pagination: pagination(page, query.limit, query.offset) } };
    },
  });

  api.add({
    method: 'post',
    path: '/users',
    operationId: 'createUser',
    summary: 'Create a user',
    description:
      'The email is unique case-insensitively (soft-deleted users keep theirs). An optional password must meet the password policy. `send_welcome_email: true` sends the user a welcome e-mail through the outbox (never delaying or failing this request; see GET /v2/mail/messages) and is recorded in the audit entry.',
    tag: 'Users',
    scope: 'user:write',
    body: CreateUser,
    responses: { 201: { description: 'The created user', schema: User } },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'INVALID_ROLE',
      'USER_ALREADY_EXISTS',
      'CONFUSABLE_EMAIL',
      'BUSINESS_RULE_VIOLATION',
    ],
    async handler({ body, principal, ctx }) {
      const user = await users.create(body as CreateUserInput, contextOf(ctx, principal));
      return { status: 201, body: await apiUser(user), headers: { Location: `/v2/users/${user.id}` } };
    },
  });

  api.add({
    method: 'post',
    path: '/users/bulk',
    operationId: 'bulkCreateUsers',
    summary: 'Create up to 100 users',
    description:
      'Each item gets its own result. With `options.fail_on_error: true` nothing is created unless every item can be (all or nothing). 201 when every item was created, 200 otherwise. `options.send_welcome_emails` (or an item’s own `send_welcome_email`) sends each created user the welcome e-mail and is recorded in their audit entry, as for a single creation.',
    tag: 'Users',
    scope: 'user:write',
    body: BulkCreate,
    responses: {
      200: { description: 'Some or no items were created', schema: BulkResult },
      201: { description: 'Every item was created', schema: BulkResult },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ body, principal, ctx }) {
      const items = body.users.map((raw) => {
        const parsed = CreateUser.safeParse(raw);
        if (parsed.success) return { ok: true as const, input: parsed.data as CreateUserInput };
        const error = validationError(parsed.error, raw);
        const first = error.details?.[0];
        const code =
          error.code === 'MISSING_REQUIRED_FIELD'
            ? 'MISSING_REQUIRED_FIELD'
            : first?.field === 'email'
              ? 'INVALID_EMAIL_FORMAT'
              : 'VALIDATION_ERROR';
        return {
          ok: false as const,
          code,
          message: error.details?.map((d) => `${d.field}: ${d.issue}`).join('; ') ?? error.message,
          field: first?.field,
        };
      });
      const results = await users.bulkCreate(
        items,
        {
          failOnError: body.options?.fail_on_error ?? false,
          sendWelcomeEmails: body.options?.send_welcome_emails ?? false,
        },
        contextOf(ctx, principal),
      );
      const successful = results.filter((r) => r.success).length;
      return {
        status: successful === results.length ? 201 : 200,
        body: {
          results: results.map((r) =>
            r.success ? { index: r.index, success: true, user: { ...toApiUser(r.user), identities: [] } } : r,
          ),
          summary: { total: results.length, successful, failed: results.length - successful },
        },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/users/{id}',
    operationId: 'getUser',
    summary: 'Get a user',
    tag: 'Users',
    scope: 'user:read',
    params: idParam,
    query: includeQuery,
    responses: { 200: { description: 'The user', schema: User } },
    errors: USER_ERRORS,
    async handler({ params, query }) {
      const user = await users.get(params.id);
      const body: Record<string, unknown> = await apiUser(user);
      if (query.include.has('roles') || query.include.has('permissions')) {
        const roles = await users.rolesOf(user);
        if (query.include.has('roles')) body.roles = roles.map(toRoleSummary);
        if (query.include.has('permissions')) body.permissions = UserService.permissionsOf(roles);
      }
      if (query.include.has('preferences')) body.preferences = user.preferences;
      return { status: 200, body };
    },
  });

  api.add({
    method: 'put',
    path: '/users/{id}',
    operationId: 'updateUser',
    summary: 'Update a user (partial)',
    description:
      'Only the fields present change. Setting `status` to `suspended` or `inactive` ends the user’s sessions and revokes their grants and tokens at once. A new `email` is unconfirmed (`email_verified: false`, and a confirmation link is mailed to it) unless the same request sets `email_verified`.',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    body: UpdateUser,
    responses: { 200: { description: 'The updated user', schema: User } },
    errors: [
      ...USER_ERRORS,
      'VALIDATION_ERROR',
      'INVALID_ROLE',
      'USER_ALREADY_EXISTS',
      'CONFUSABLE_EMAIL',
      'LAST_ADMINISTRATOR',
    ],
    async handler({ params, body, principal, ctx }) {
      return {
        status: 200,
        body: await apiUser(await users.update(params.id, body, contextOf(ctx, principal))),
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/users/{id}',
    operationId: 'deleteUser',
    summary: 'Delete a user',
    description:
      '`soft_delete=true` hides the user (restorable, email stays reserved); otherwise the user is erased (also a soft-deleted one). Either way their sessions, grants and tokens are revoked.',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    query: z.object({
      soft_delete: z
        .enum(['true', 'false'], { error: 'true or false' })
        .optional()
        .transform((v) => v === 'true'),
    }),
    responses: { 200: { description: 'Deleted', schema: DeleteResult } },
    errors: [...USER_ERRORS, 'LAST_ADMINISTRATOR'],
    async handler({ params, query, principal, ctx }) {
      const context = contextOf(ctx, principal);
      const result = query.soft_delete
        ? await users.remove(params.id, true, context)
        : await users.erase(params.id, context);
      return {
        status: 200,
        body: {
          message: result.soft_delete ? 'User deleted (restorable)' : 'User erased',
          deleted_at: result.deleted_at.toISOString(),
          soft_delete: result.soft_delete,
        },
      };
    },
  });

  api.add({
    method: 'post',
    path: '/users/{id}/restore',
    operationId: 'restoreUser',
    summary: 'Restore a soft-deleted user',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    responses: { 200: { description: 'The restored user', schema: User } },
    errors: [...USER_ERRORS, 'CONFLICT'],
    async handler({ params, principal, ctx }) {
      return { status: 200, body: await apiUser(await users.restore(params.id, contextOf(ctx, principal))) };
    },
  });

  api.add({
    method: 'get',
    path: '/users/{id}/preferences',
    operationId: 'getUserPreferences',
    summary: 'Get a user’s preferences',
    tag: 'Users',
    scope: 'user:read',
    params: idParam,
    responses: { 200: { description: 'The preferences object', schema: Preferences } },
    errors: USER_ERRORS,
    async handler({ params }) {
      return { status: 200, body: (await users.get(params.id)).preferences };
    },
  });

  api.add({
    method: 'put',
    path: '/users/{id}/preferences',
    operationId: 'setUserPreferences',
    summary: 'Replace a user’s preferences',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    body: jsonObject,
    responses: { 200: { description: 'The stored preferences', schema: Preferences } },
    errors: [...USER_ERRORS, 'VALIDATION_ERROR'],
    async handler({ params, body, principal, ctx }) {
      return { status: 200, body: await users.setPreferences(params.id, body, contextOf(ctx, principal)) };
    },
  });

  api.add({
    method: 'get',
    path: '/users/{id}/activity',
    operationId: 'getUserActivity',
    summary: 'A user’s sign-ins and account changes',
    tag: 'Users',
    scope: 'user:read',
    params: idParam,
    query: z.object({ limit: pageQuery.limit.default(20), cursor: pageQuery.cursor }),
    responses: { 200: { description: 'Activity, newest first', schema: Activity } },
    errors: [...USER_ERRORS, 'INVALID_CURSOR'],
    async handler({ params, query }) {
      const [{ user, recent, nextCursor, failedLoginsLast30Days }, rollups] = await Promise.all([
        users.activity(params.id, query.limit, query.cursor),
        analytics.activitySummary(params.id),
      ]);
      return {
        status: 200,
        body: {
          user_id: user.id,
          activity_summary: {
            total_logins: user.login_count,
            last_login: isoOf(user.last_login),
            average_session_duration: rollups.average_session_duration,
            most_active_day: rollups.most_active_day,
            preferred_login_time: rollups.preferred_login_time,
            // The audit trail counts every failed sign-in already, exactly, with the entries listed.
            failed_logins_last_30_days: failedLoginsLast30Days,
            created_at: user.created_at.toISOString(),
          },
          recent_activities: recent.map((e) => ({
            event: e.action,
            timestamp: e.timestamp.toISOString(),
            ip_address: e.ip_address,
            user_agent: e.user_agent,
            actor: { type: e.actor_type, id: e.actor_id },
            ...(e.action === 'user.updated' ? { changes: changedFieldNames(e.changes) } : {}),
            details: e.details,
          })),
          pagination: { limit: query.limit, has_more: nextCursor !== null, next_cursor: nextCursor },
        },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/users/{id}/roles',
    operationId: 'listUserRoles',
    summary: 'List a user’s roles',
    tag: 'Users',
    scope: 'user:read',
    params: idParam,
    responses: {
      200: {
        description: 'The primary role and linked roles',
        schema: z.object({ data: z.array(RoleSummary) }),
      },
    },
    errors: USER_ERRORS,
    async handler({ params }) {
      const roles = await users.rolesOf(await users.get(params.id));
      return { status: 200, body: { data: roles.map(toRoleSummary) } };
    },
  });

  const roleLinkParams = z.object({ id: z.string().min(1).max(64), role_id: z.string().min(1).max(64) });
  api.add({
    method: 'post',
    path: '/users/{id}/roles/{role_id}',
    operationId: 'assignUserRole',
    summary: 'Assign a role to a user',
    tag: 'Users',
    scope: 'role:manage',
    params: roleLinkParams,
    responses: { 200: { description: 'The user’s roles', schema: z.object({ data: z.array(RoleSummary) }) } },
    errors: [...USER_ERRORS, 'ROLE_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const roles = await users.assignRole(params.id, params.role_id, contextOf(ctx, principal));
      return { status: 200, body: { data: roles.map(toRoleSummary) } };
    },
  });

  api.add({
    method: 'delete',
    path: '/users/{id}/roles/{role_id}',
    operationId: 'removeUserRole',
    summary: 'Remove a role from a user',
    tag: 'Users',
    scope: 'role:manage',
    params: roleLinkParams,
    responses: { 200: { description: 'The user’s roles', schema: z.object({ data: z.array(RoleSummary) }) } },
    errors: [...USER_ERRORS, 'ROLE_NOT_FOUND', 'NOT_FOUND', 'LAST_ADMINISTRATOR'],
    async handler({ params, principal, ctx }) {
      const roles = await users.removeRole(params.id, params.role_id, contextOf(ctx, principal));
      return { status: 200, body: { data: roles.map(toRoleSummary) } };
    },
  });

  api.add({
    method: 'post',
    path: '/users/{id}/password-reset',
    operationId: 'requirePasswordReset',
    summary: 'Force a password change at next sign-in',
    description:
      'Sets the user’s password-reset flag and ends their sessions; the sign-in page then asks for a new password. With `{"send_email": true}` the user is also mailed a single-use link to choose a new password (PASSWORD_RESET_TTL_S); `email_sent` says whether one was composed (false when the user is not active). When e-mail is off (production without SMTP_URL), `send_email: true` is refused with `422 EMAIL_NOT_CONFIGURED` and nothing changes. The body may be left out.',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    body: z.object({ send_email: z.boolean().optional() }).strict(),
    bodyOptional: true,
    responses: {
      200: {
        description: 'The user',
        schema: User.extend({ password_reset_required: z.boolean(), email_sent: z.boolean() }),
      },
    },
    errors: [...USER_ERRORS, 'EMAIL_NOT_CONFIGURED'],
    async handler({ params, body, principal, ctx }) {
      const context = contextOf(ctx, principal);
      // Asked to mail a link that cannot be sent: refused before anything changes.
      if (body.send_email === true && !resets?.available) throw new AppError('EMAIL_NOT_CONFIGURED');
      const user = await users.requirePasswordReset(params.id, context);
      const sent =
        body.send_email === true && resets
          ? await resets.send(user.id, { type: context.actor.actor_type, id: context.actor.actor_id }, null)
          : false;
      return {
        status: 200,
        body: {
          ...(await apiUser(user)),
          password_reset_required: user.password_reset_required,
          email_sent: sent,
        },
      };
    },
  });

  api.add({
    method: 'put',
    path: '/users/{id}/password',
    operationId: 'setUserPassword',
    summary: 'Set a user’s password',
    description:
      'Checked against the password policy; never returned. `require_reset: true` makes the user change it at next sign-in.',
    tag: 'Users',
    scope: 'user:write',
    params: idParam,
    body: SetPassword,
    responses: { 204: { description: 'Password set' } },
    errors: [...USER_ERRORS, 'VALIDATION_ERROR', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, body, principal, ctx }) {
      await users.setPassword(params.id, body.password, contextOf(ctx, principal), {
        requireReset: body.require_reset,
      });
      return { status: 204 };
    },
  });
}
