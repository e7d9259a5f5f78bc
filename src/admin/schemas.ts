/**
 * The zod schemas of the management API: request and response shapes of shared/API.md. They are
 * the single source for validation and for the OpenAPI document (named ones become components).
 */
import { z } from 'zod';

import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.js';
import { USER_STATUSES, type JsonObject } from '../store/ports.js';

/** Named schemas, published as components of the OpenAPI document. */
export const apiSchemas = z.registry<{ id: string; description?: string }>();

function named<T extends z.ZodType>(id: string, schema: T, description?: string): T {
  apiSchemas.add(schema, { id, ...(description ? { description } : {}) });
  return schema;
}

export const timestamp = z.string().describe('RFC 3339 timestamp in UTC');
const isoOf = (d: Date | null) => (d ? d.toISOString() : null);
export { isoOf };

/**
 * Characters no e-mail address may hold: controls, format characters (zero-width, bidi overrides),
 * line and paragraph separators, private-use, unassigned and other default-ignorable code points. Each
 * would let a new address look exactly like an existing one.
 */
const INVISIBLE_IN_EMAIL = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;

/** Controls (NUL, ESC, …), line and paragraph separators, and bidi overrides/isolates. */
const UNSAFE_IN_TEXT = /[\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]/u;

/** Trims and NFC-normalizes text; anything that is not text passes through for the schema to refuse. */
const canonical = (value: unknown) => (typeof value === 'string' ? value.trim().normalize('NFC') : value);

/** Email syntax only (no DNS lookups); internationalized addresses are accepted, NFC-normalized. */
export const emailField = z
  .preprocess(
    canonical,
    z
      .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Invalid email format') })
      .refine((s) => s.isWellFormed(), { error: 'Contains an unpaired surrogate', abort: true })
      .refine((s) => !INVISIBLE_IN_EMAIL.test(s), {
        error: 'Contains an invisible or control character',
        abort: true,
      })
      .pipe(
        z
          .email({
            pattern: z.regexes.unicodeEmail,
            error: (issue) => (issue.input === undefined ? 'Required' : 'Invalid email format'),
          })
          .max(254, { error: 'At most 254 characters' }),
      ),
  )
  .describe(
    'E-mail address (syntax only, no DNS lookup), NFC-normalized; no control, zero-width, bidi, private-use, unassigned or other invisible characters. Unique case-insensitively (NFKC, lower case).',
  );

/** Human-readable text (names, display names): NFC, no controls, separators, bidi overrides or lone surrogates. */
export function textField(max: number) {
  return z
    .preprocess(
      canonical,
      z
        .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Must be a string') })
        .min(1, { error: 'Must not be empty' })
        .max(max, { error: `At most ${max} characters` })
        .refine((s) => s.isWellFormed(), { error: 'Contains an unpaired surrogate' })
        .refine((s) => !UNSAFE_IN_TEXT.test(s), {
          error: 'Contains a control, line-separator or bidi-override character',
        }),
    )
    .describe(
      `Text of 1 to ${max} characters, trimmed and NFC-normalized; no control characters, line separators, bidi overrides or unpaired surrogates`,
    );
}

const METADATA_KEY = /^[A-Za-z0-9_-]{1,64}$/;
/**
 * Keys that name JavaScript's object machinery. JSON.parse keeps them as plain data, but code that
 * copies objects by assignment would not, so they are refused by name rather than stored.
 */
export const RESERVED_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];
const METADATA_MAX_BYTES = 16_384;

interface Problem {
  /** The object holding the offending key, or the value that is too deep. */
  path: (string | number)[];
  message: string;
}

function metadataProblem(value: unknown, path: (string | number)[] = []): Problem | undefined {
  if (path.length > 5) return { path, message: 'Nested deeper than 5 levels' };
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const problem = metadataProblem(item, [...path, i]);
      if (problem) return problem;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (RESERVED_KEYS.includes(key)) return { path, message: `Key "${key}" is reserved` };
      if (!METADATA_KEY.test(key))
        return { path, message: `Key "${key.slice(0, 70)}" must be 1 to 64 letters, digits, "-" or "_"` };
      const problem = metadataProblem(item, [...path, key]);
      if (problem) return problem;
    }
  }
  return undefined;
}

/**
 * Free-form JSON object with safe keys (no "$", no ".", none of RESERVED_KEYS), at most 5 levels
 * deep and 16 KiB. Checked on the parsed input itself, before anything copies it.
 */
export const jsonObject = z
  .preprocess(
    (value, ctx) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
      const problem = metadataProblem(value);
      if (problem) {
        ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
        return z.NEVER;
      }
      if (Buffer.byteLength(JSON.stringify(value)) > METADATA_MAX_BYTES) {
        ctx.addIssue({ code: 'custom', message: `At most ${METADATA_MAX_BYTES} bytes of JSON` });
        return z.NEVER;
      }
      return value;
    },
    z.record(z.string().regex(METADATA_KEY), z.unknown(), { error: 'Must be a JSON object' }),
  )
  .describe(
    'JSON object of at most 16384 bytes, nested at most 5 levels; keys (at every level) are 1 to 64 letters, digits, "-" or "_", and never __proto__, constructor or prototype',
  )
  .transform((v) => v as JsonObject);

const nameField = (max = 100) => textField(max);

export const userStatus = z.enum(USER_STATUSES, { error: `One of ${USER_STATUSES.join(', ')}` });
export const roleName = z
  .string()
  .trim()
  .regex(/^[a-z0-9][a-z0-9_.:-]{0,63}$/, {
    error: 'Lower-case letters, digits, "_", ".", ":" or "-", at most 64',
  });
export const permission = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9_.:*-]{1,128}$/, { error: 'Letters, digits, "_", ".", ":", "*" or "-", at most 128' });
const password = z.string().max(1024, { error: 'At most 1024 characters' });

/* --------------------------------------------------------------------------------------------- */
/* Errors and paging                                                                              */
/* --------------------------------------------------------------------------------------------- */

export const ErrorEnvelope = named(
  'Error',
  z.object({
    error: z.object({
      code: z.enum(Object.keys(ERROR_CATALOG) as [ErrorCode, ...ErrorCode[]]),
      message: z.string(),
      details: z
        .array(z.object({ field: z.string(), issue: z.string(), provided: z.unknown().optional() }))
        .optional(),
      retry_after: z.number().int().optional().describe('Seconds to wait (also sent as Retry-After)'),
      resets_at: timestamp.optional().describe('QUOTA_EXCEEDED: when the quota period ends'),
      request_id: z.string(),
      timestamp,
    }),
  }),
  'The error envelope of every management-API error',
);

export const Pagination = named(
  'Pagination',
  z.object({
    total: z.number().int(),
    limit: z.number().int(),
    offset: z.number().int(),
    has_more: z.boolean(),
    next_cursor: z.string().nullable(),
  }),
);

/**
 * A query parameter holding a decimal integer: digits only, given once (`0x10`, `1e1`, `+5`, `5.0`, ` 5`
 * and `limit=1&limit=2` are refused rather than read as numbers).
 */
export function decimalInteger(min: number, max: number) {
  return z
    .string({ error: 'Must be given once, as a decimal integer' })
    .regex(/^-?[0-9]{1,10}$/, { error: 'Must be a decimal integer' })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, { error: `At least ${min}` })
        .max(max, { error: `At most ${max}` }),
    );
}

export const pageQuery = {
  limit: decimalInteger(1, 100).default(25).describe('Page size, 1 to 100'),
  offset: decimalInteger(0, 1_000_000).default(0).describe('Items to skip, 0 to 1000000'),
  cursor: z.string().max(2048).optional().describe('next_cursor of the previous page'),
};

/* --------------------------------------------------------------------------------------------- */
/* Roles                                                                                          */
/* --------------------------------------------------------------------------------------------- */

export const Role = named(
  'Role',
  z.object({
    id: z.string(),
    name: z.string(),
    display_name: z.string(),
    description: z.string().nullable(),
    permissions: z.array(z.string()),
    created_at: timestamp,
    updated_at: timestamp,
  }),
);

export const RoleSummary = named(
  'RoleSummary',
  z.object({ id: z.string(), name: z.string(), display_name: z.string(), permissions: z.array(z.string()) }),
);

export const CreateRole = z
  .object({
    name: roleName,
    display_name: nameField().optional(),
    description: z.string().max(500).nullable().optional(),
    permissions: z.array(permission).max(200).default([]),
  })
  .strict();

export const UpdateRole = z
  .object({
    display_name: nameField().optional(),
    description: z.string().max(500).nullable().optional(),
    permissions: z.array(permission).max(200).optional(),
  })
  .strict();

/* --------------------------------------------------------------------------------------------- */
/* Users                                                                                          */
/* --------------------------------------------------------------------------------------------- */

export const User = named(
  'User',
  z.object({
    id: z.string(),
    email: z.string(),
    first_name: z.string(),
    last_name: z.string(),
    role: z.string(),
    status: userStatus,
    email_verified: z.boolean(),
    created_at: timestamp,
    updated_at: timestamp,
    last_login: timestamp.nullable(),
    metadata: z.record(z.string(), z.unknown()),
    plan: z.string().nullable().describe('The user’s plan; null means the default plan (basic)'),
    roles: z.array(RoleSummary).optional().describe('With include=roles'),
    permissions: z.array(z.string()).optional().describe('With include=permissions'),
    preferences: z.record(z.string(), z.unknown()).optional().describe('With include=preferences'),
  }),
);

export const UserList = named('UserList', z.object({ data: z.array(User), pagination: Pagination }));

export const CreateUser = z
  .object({
    email: emailField,
    first_name: nameField(),
    last_name: nameField(),
    role: roleName.optional(),
    status: userStatus.optional(),
    email_verified: z.boolean().optional(),
    password: password.optional(),
    send_welcome_email: z.boolean().optional(),
    metadata: jsonObject.optional(),
  })
  .strict();

export const UpdateUser = z
  .object({
    email: emailField.optional(),
    first_name: nameField().optional(),
    last_name: nameField().optional(),
    role: roleName.optional(),
    status: userStatus.optional(),
    email_verified: z.boolean().optional(),
    metadata: jsonObject.optional(),
  })
  .strict();

export const BulkCreate = z
  .object({
    users: z
      .array(z.unknown(), { error: 'Must be a list of users' })
      .min(1, { error: 'At least one user' })
      .max(100, { error: 'At most 100 users per request' }),
    options: z
      .object({ send_welcome_emails: z.boolean().optional(), fail_on_error: z.boolean().optional() })
      .strict()
      .optional(),
  })
  .strict();

export const BulkResult = named(
  'BulkResult',
  z.object({
    results: z.array(
      z.object({
        index: z.number().int(),
        success: z.boolean(),
        user: User.optional(),
        error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }).optional(),
      }),
    ),
    summary: z.object({ total: z.number().int(), successful: z.number().int(), failed: z.number().int() }),
  }),
);

export const DeleteResult = named(
  'DeleteResult',
  z.object({ message: z.string(), deleted_at: timestamp, soft_delete: z.boolean() }),
);

export const Preferences = z.record(z.string(), z.unknown());

export const Activity = named(
  'UserActivity',
  z.object({
    user_id: z.string(),
    activity_summary: z.object({
      total_logins: z.number().int(),
      last_login: timestamp.nullable(),
      failed_logins_last_30_days: z.number().int(),
      created_at: timestamp,
    }),
    recent_activities: z.array(
      z.object({
        event: z.string(),
        timestamp,
        ip_address: z.string().nullable(),
        user_agent: z.string().nullable(),
        actor: z.object({ type: z.string(), id: z.string() }),
        details: z.record(z.string(), z.unknown()).nullable(),
      }),
    ),
  }),
);

export const SetPassword = z
  .object({
    password: z.string({ error: 'Required' }).max(1024),
    require_reset: z.boolean().optional(),
  })
  .strict();
