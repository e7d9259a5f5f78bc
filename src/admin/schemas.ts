/**
 * The zod schemas of the management API: request and response shapes of shared/API.md. They are
 * the single source for validation and for the OpenAPI document (named ones become components).
 */
import { z } from 'zod';

import { EVENT_TYPES } from '../events/catalog.js';
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.js';
import { USER_STATUSES, type JsonObject } from '../store/ports.js';

/** Named schemas, published as components of the OpenAPI document. */
export const apiSchemas = z.registry<{ id: string; description?: string }>();

export function named<T extends z.ZodType>(id: string, schema: T, description?: string): T {
  apiSchemas.add(schema, { id, ...(description ? { description } : {}) });
  return schema;
}

export const timestamp = z.string().describe('RFC 3339 timestamp in UTC');
const isoOf = (d: Date | null) => (d ? d.toISOString() : null);
export { isoOf };

/* --------------------------------------------------------------------------------------------- */
/* The wire: what the OpenAPI document states is what these validators check                    */
/* --------------------------------------------------------------------------------------------- */

export type JsonSchema = Record<string, unknown>;

/**
 * States the JSON Schema of `schema` where zod cannot derive it (refinements, preprocessing,
 * transforms): the OpenAPI document shows `json` for it, so the validator below and the document
 * are written side by side from the same constants. Apply it last: zod's `.describe()` clones and
 * the clone would lose it (put the description in `json`); `.optional()`, `.nullable()` and
 * `.default()` wrap and keep it.
 */
export function wire<T extends z.ZodType>(schema: T, json: JsonSchema) {
  // A pipe into a pass-through holds the stated schema: it is a fresh node (a refined schema is a
  // clone whose parent the generator would otherwise walk), and it validates exactly as `schema`.
  const wired = schema.pipe(z.custom<z.output<T>>());
  wired._zod.toJSONSchema = () => structuredClone(json);
  return wired;
}

/** Keywords added to what zod derives for `schema` (a rule of a refinement zod cannot see). */
export const schemaExtras = new WeakMap<z.ZodType, JsonSchema>();
export function extra<T extends z.ZodType>(schema: T, json: JsonSchema): T {
  schemaExtras.set(schema, json);
  return schema;
}

/**
 * Marks the wired schema of a query parameter whose value is JSON text: the document describes it
 * with `content: application/json` and the schema of the parsed value (OpenAPI 3.1 §4.8.12).
 */
export const JSON_PARAMETER = 'x-latchkey-json-parameter';

/**
 * A query parameter holding JSON text: parsed (400 "Not valid JSON" otherwise), then checked by
 * `schema`, whose JSON Schema `json` the document shows for the parsed value.
 */
export function jsonParameter<T extends z.ZodType>(schema: T, json: JsonSchema) {
  return wire(
    z
      .string({ error: 'Must be given once, as JSON text' })
      .transform((text, ctx) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'Not valid JSON', input: text });
          return z.NEVER;
        }
      })
      .pipe(schema),
    { ...json, [JSON_PARAMETER]: true },
  );
}

/** Schemas the wired ones refer to, published under components/schemas. */
export const wireComponents: Record<string, JsonSchema> = {};

/** Length as JSON Schema counts it (code points; a character outside the BMP counts once). */
export const codePoints = (s: string): number => {
  let n = 0;
  for (const _ of s) n += 1;
  return n;
};

/** A string of `min` to `max` code points, as `minLength`/`maxLength` say. */
export function chars(min: number, max: number, message?: string) {
  return wire(
    z
      .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Must be a string') })
      .refine((s) => codePoints(s) >= min && codePoints(s) <= max, {
        error: message ?? (min > 0 ? `${min} to ${max} characters` : `At most ${max} characters`),
      }),
    { type: 'string', ...(min > 0 ? { minLength: min } : {}), maxLength: max },
  );
}

/**
 * What String.prototype.trim() removes (ECMAScript WhiteSpace and LineTerminator), spelled out so
 * that every regex engine reading a pattern built from it agrees on the set.
 */
export const WHITESPACE =
  '\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff';
/** Controls (C0, DEL, C1), line and paragraph separators, bidi overrides and isolates. */
const UNSAFE_IN_TEXT_CLASS = '\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';
/**
 * Human-readable text as sent: anything trim() removes around it, then at least one other character,
 * none of them unsafe. (Unpaired surrogates are refused too; a pattern cannot name them portably.)
 */
export const TEXT_PATTERN = `^[${WHITESPACE}]*[^${UNSAFE_IN_TEXT_CLASS}${WHITESPACE}](?:[^${UNSAFE_IN_TEXT_CLASS}]*[^${UNSAFE_IN_TEXT_CLASS}${WHITESPACE}])?[${WHITESPACE}]*$`;
const TEXT_RE = new RegExp(TEXT_PATTERN, 'u');
const UNSAFE_RE = new RegExp(`[${UNSAFE_IN_TEXT_CLASS}]`, 'u');
/** Not only whitespace (what trim() would leave empty). */
export const NOT_BLANK_PATTERN = `[^${WHITESPACE}]`;
const NOT_BLANK_RE = new RegExp(NOT_BLANK_PATTERN, 'u');

/**
 * Characters no e-mail address may hold: controls, format characters (zero-width, bidi overrides),
 * line and paragraph separators, private-use, unassigned and other default-ignorable code points. Each
 * would let a new address look exactly like an existing one.
 */
const INVISIBLE_IN_EMAIL = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
const WHITESPACE_RE = new RegExp(`[${WHITESPACE}]`, 'u');
const hex4 = (cp: number) => `\\u${cp.toString(16).padStart(4, '0')}`;
/**
 * A character class of the Basic Multilingual Plane's code points that `allowed` admits, as ranges
 * any regex engine reads alike (no Unicode property escapes, whose tables differ between engines
 * and versions). Built from this runtime's own Unicode data, so the pattern says exactly what the
 * check below it lets through.
 */
function bmpClass(allowed: (ch: string) => boolean): string {
  const ranges: [number, number][] = [];
  for (let cp = 0; cp <= 0xffff; cp += 1) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    if (!allowed(String.fromCharCode(cp))) continue;
    const last = ranges.at(-1);
    if (last && last[1] === cp - 1) last[1] = cp;
    else ranges.push([cp, cp]);
  }
  return ranges.map(([a, b]) => (a === b ? hex4(a) : `${hex4(a)}-${hex4(b)}`)).join('');
}
/** What an address may hold beside its "@": visible BMP characters, no whitespace. */
const EMAIL_DOMAIN_CLASS = bmpClass(
  (ch) => ch !== '@' && !WHITESPACE_RE.test(ch) && !INVISIBLE_IN_EMAIL.test(ch),
);
const EMAIL_LOCAL_CLASS = bmpClass(
  (ch) => ch !== '@' && ch !== '"' && !WHITESPACE_RE.test(ch) && !INVISIBLE_IN_EMAIL.test(ch),
);
/**
 * An address as sent: optional surrounding whitespace (trimmed), then 1 to 64 characters, "@" and 1
 * to 255 characters, all from the Basic Multilingual Plane and none invisible.
 */
export const EMAIL_PATTERN = `^[${WHITESPACE}]*[${EMAIL_LOCAL_CLASS}]{1,64}@[${EMAIL_DOMAIN_CLASS}]{1,255}[${WHITESPACE}]*$`;
const EMAIL_RE = new RegExp(EMAIL_PATTERN, 'u');
export const EMAIL_MAX = 254;

/** Email syntax only (no DNS lookups); internationalized addresses are accepted, NFC-normalized. */
export const emailField = wire(
  z
    .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Invalid email format') })
    .refine((s) => s.isWellFormed(), { error: 'Contains an unpaired surrogate', abort: true })
    .refine((s) => EMAIL_RE.test(s), { error: 'Invalid email format', abort: true })
    .refine((s) => codePoints(s) <= EMAIL_MAX, { error: `At most ${EMAIL_MAX} characters`, abort: true })
    .transform((s) => s.trim().normalize('NFC'))
    .refine((s) => !INVISIBLE_IN_EMAIL.test(s), {
      error: 'Contains an invisible or control character',
      abort: true,
    })
    .pipe(z.email({ pattern: z.regexes.unicodeEmail, error: 'Invalid email format' })),
  {
    type: 'string',
    maxLength: EMAIL_MAX,
    pattern: EMAIL_PATTERN,
    description:
      'E-mail address (syntax only, no DNS lookup: local part, "@", domain), trimmed and NFC-normalized; characters of the Basic Multilingual Plane only, and no control, zero-width, bidi, private-use, unassigned or other invisible characters. Unique case-insensitively (NFKC, lower case).',
  },
);

/**
 * Human-readable text (names, display names): at most `max` characters as sent, not blank, no
 * controls, separators, bidi overrides or lone surrogates; stored trimmed and NFC-normalized.
 */
export function textField(max: number) {
  return wire(
    z
      .string({ error: (issue) => (issue.input === undefined ? 'Required' : 'Must be a string') })
      .superRefine((s, ctx) => {
        const issue = (message: string) => ctx.addIssue({ code: 'custom', message, input: s });
        if (!NOT_BLANK_RE.test(s)) return issue('Must not be empty');
        if (codePoints(s) > max) return issue(`At most ${max} characters`);
        if (!s.isWellFormed()) return issue('Contains an unpaired surrogate');
        if (!TEXT_RE.test(s) || UNSAFE_RE.test(s.trim())) {
          return issue('Contains a control, line-separator or bidi-override character');
        }
      })
      .transform((s) => s.trim().normalize('NFC')),
    {
      type: 'string',
      minLength: 1,
      maxLength: max,
      pattern: TEXT_PATTERN,
      description: `Text of 1 to ${max} characters as sent, not blank, stored trimmed and NFC-normalized; no control characters, line separators, bidi overrides or unpaired surrogates`,
    },
  );
}

/** Trimmed text of 1 to `max` characters (as sent) that is not blank; no other rule. */
export function plainText(max: number, description?: string) {
  return wire(
    z
      .string()
      .refine((s) => NOT_BLANK_RE.test(s), { error: 'Must not be empty', abort: true })
      .refine((s) => codePoints(s) <= max, { error: `At most ${max} characters` })
      .transform((s) => s.trim()),
    {
      type: 'string',
      minLength: 1,
      maxLength: max,
      pattern: NOT_BLANK_PATTERN,
      ...(description ? { description } : {}),
    },
  );
}

export const METADATA_KEY_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
const METADATA_KEY = new RegExp(METADATA_KEY_PATTERN);
/**
 * Keys that name JavaScript's object machinery. JSON.parse keeps them as plain data, but code that
 * copies objects by assignment would not, so they are refused by name rather than stored.
 */
export const RESERVED_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];
export const METADATA_MAX_BYTES = 16_384;
/** Levels of keys and indexes below the top object a value may sit at. */
export const METADATA_MAX_DEPTH = 5;

interface Problem {
  /** The object holding the offending key, or the value that is too deep. */
  path: (string | number)[];
  message: string;
}

function metadataProblem(value: unknown, path: (string | number)[] = []): Problem | undefined {
  if (path.length > METADATA_MAX_DEPTH) return { path, message: 'Nested deeper than 5 levels' };
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

/** The key rule of every object level, for `propertyNames`. */
export const METADATA_KEY_SCHEMA: JsonSchema = {
  type: 'string',
  pattern: METADATA_KEY_PATTERN,
  not: { enum: [...RESERVED_KEYS] },
};
const SCALAR: JsonSchema[] = [{ type: 'null' }, { type: 'boolean' }, { type: 'number' }, { type: 'string' }];
// A value `depth` levels below the top object: containers only while there is room below them.
for (let depth = METADATA_MAX_DEPTH; depth >= 1; depth -= 1) {
  const below: JsonSchema =
    depth === METADATA_MAX_DEPTH
      ? (false as unknown as JsonSchema)
      : { $ref: `#/components/schemas/MetadataValue${depth + 1}` };
  wireComponents[`MetadataValue${depth}`] = {
    description: `A metadata value ${depth} level(s) below the top object`,
    anyOf: [
      ...SCALAR,
      { type: 'array', items: below },
      { type: 'object', propertyNames: METADATA_KEY_SCHEMA, additionalProperties: below },
    ],
  };
}

/**
 * Free-form JSON object with safe keys (no "$", no ".", none of RESERVED_KEYS), at most 5 levels
 * deep and 16 KiB. Checked on the parsed input itself, before anything copies it.
 */
export const jsonObject = wire(
  z
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
    .transform((v) => v as JsonObject),
  {
    type: 'object',
    propertyNames: METADATA_KEY_SCHEMA,
    additionalProperties: { $ref: '#/components/schemas/MetadataValue1' },
    description: `JSON object of at most ${METADATA_MAX_BYTES} bytes (as JSON.stringify writes it), nested at most ${METADATA_MAX_DEPTH} levels; keys (at every level) are 1 to 64 letters, digits, "-" or "_", and never __proto__, constructor or prototype`,
  },
);

/* --------------------------------------------------------------------------------------------- */
/* Addresses and URIs: grammars every engine reads alike, and that WHATWG URL always parses       */
/* --------------------------------------------------------------------------------------------- */

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/** A dotted-quad IPv4 address without leading zeros. */
export const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
const H16 = '[0-9A-Fa-f]{1,4}';
/** An IPv6 address in RFC 4291 text form (no zone); embedded IPv4 as ::a.b.c.d, ::ffff:a.b.c.d or in full. */
export const IPV6 =
  `(?:(?:${H16}:){7}${H16}|(?:${H16}:){1,7}:|(?:${H16}:){1,6}:${H16}|(?:${H16}:){1,5}(?::${H16}){1,2}` +
  `|(?:${H16}:){1,4}(?::${H16}){1,3}|(?:${H16}:){1,3}(?::${H16}){1,4}|(?:${H16}:){1,2}(?::${H16}){1,5}` +
  `|${H16}:(?::${H16}){1,6}|:(?:(?::${H16}){1,7}|:)|(?:${H16}:){6}${IPV4}|::(?:[Ff]{4}:)?${IPV4})`;
const LABEL = '(?![Xx][Nn]--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** The last label starts with a letter, so WHATWG never reads the name as an IPv4 number. */
const TOP_LABEL = '(?![Xx][Nn]--)[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOST = `(?:(?:${LABEL}\\.)*${TOP_LABEL}|${IPV4}|\\[${IPV6}\\])`;
const PORT = '(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)';
/** RFC 3986 characters of a path and query (unreserved, sub-delims, ":", "@", "/", "?", "%"). */
const PATH_CHARS = "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]";
const OPAQUE_HOST_CHARS = "[A-Za-z0-9._~!$&'()*+,;=%-]";
const WEB = `https?://${HOST}(?::${PORT})?(?:[/?]${PATH_CHARS}*)?`;
const OTHER = `(?!(?:https?|wss?|ftp|file):)[a-z][a-z0-9+.-]*:(?://(?:${OPAQUE_HOST_CHARS}+(?::${PORT})?)?(?:[/?]${PATH_CHARS}*)?|(?!//)${PATH_CHARS}*)`;
/** An http(s) URI without fragment or user info, ASCII (anything else percent-encoded). */
export const WEB_URI_PATTERN = `^${WEB}$`;
/** An absolute URI without fragment: http(s) as above, or another scheme (urn:…, api://…, com.example.app:/cb). */
export const ABSOLUTE_URI_PATTERN = `^(?:${WEB}|${OTHER})$`;
export const URI_MAX = 2000;

/** A URI of `pattern`, at most URI_MAX characters, that WHATWG URL also parses. */
export function uriField(pattern: string, description: string) {
  const re = new RegExp(pattern);
  return wire(
    z
      .string()
      .max(URI_MAX, { error: `At most ${URI_MAX} characters` })
      .refine((s) => re.test(s) && URL.canParse(s), { error: description }),
    { type: 'string', minLength: 1, maxLength: URI_MAX, pattern, description },
  );
}

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
const password = chars(0, 1024);

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

/** The Pagination of an offset-paged list: `count` items from `offset` of `total`, no cursors. */
export function offsetPagination(total: number, limit: number, offset: number, count: number) {
  return { total, limit, offset, has_more: offset + count < total, next_cursor: null };
}

/**
 * A query parameter holding a decimal integer: digits only, given once (`0x10`, `1e1`, `+5`, `5.0`, ` 5`
 * and `limit=1&limit=2` are refused rather than read as numbers).
 */
export function decimalInteger(min: number, max: number, description?: string) {
  return wire(
    z
      .string({ error: 'Must be given once, as a decimal integer' })
      .regex(/^-?[0-9]{1,10}$/, { error: 'Must be a decimal integer' })
      .transform(Number)
      .pipe(
        z
          .number()
          .int()
          .min(min, { error: `At least ${min}` })
          .max(max, { error: `At most ${max}` }),
      ),
    { type: 'integer', minimum: min, maximum: max, ...(description ? { description } : {}) },
  );
}

/** Cursors are base64url text this server wrote; one it did not write for this list is a 422. */
export const CURSOR_PATTERN = '^[A-Za-z0-9_-]*$';
export const CURSOR_MAX = 2048;

export const pageQuery = {
  limit: decimalInteger(1, 100, 'Page size, 1 to 100').default(25),
  offset: decimalInteger(0, 1_000_000, 'Items to skip, 0 to 1000000').default(0),
  cursor: wire(
    z
      .string()
      .max(CURSOR_MAX, { error: `At most ${CURSOR_MAX} characters` })
      .regex(new RegExp(CURSOR_PATTERN), { error: 'Not a cursor (base64url text)' }),
    {
      type: 'string',
      maxLength: CURSOR_MAX,
      pattern: CURSOR_PATTERN,
      description:
        'next_cursor of the previous page (422 INVALID_CURSOR when it is not one this list issued for this sort order)',
    },
  ).optional(),
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
    description: chars(0, 500).nullable().optional(),
    permissions: z.array(permission).max(200).default([]),
  })
  .strict();

export const UpdateRole = z
  .object({
    display_name: nameField().optional(),
    description: chars(0, 500).nullable().optional(),
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
    mfa_enabled: z
      .boolean()
      .describe(
        'Whether the user has a second factor (an authenticator app or a passkey); see GET /v2/users/{id}/mfa',
      ),
    created_at: timestamp,
    updated_at: timestamp,
    last_login: timestamp.nullable(),
    metadata: z.record(z.string(), z.unknown()),
    plan: z.string().nullable().describe('The user’s plan; null means the default plan (basic)'),
    identities: z
      .array(z.object({ connection: z.string(), subject: z.string() }))
      .describe(
        'The user’s accounts at upstream identity providers (single sign-on): connection id and subject',
      ),
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

export const CreateInvitation = named(
  'CreateInvitation',
  z
    .object({
      email: emailField,
      first_name: nameField().optional().describe('Filled in on the sign-up page; the invitee may change it'),
      last_name: nameField().optional().describe('Filled in on the sign-up page; the invitee may change it'),
      locale: z
        .string()
        .regex(/^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$/)
        .optional()
        .describe('Language of the message (a language tag such as de); English when it has no strings'),
    })
    .strict(),
);

export const Invitation = named(
  'Invitation',
  z.object({
    email: z.string(),
    expires_at: timestamp,
    email_sent: z.literal(true).describe('The message is in the mail outbox (see GET /v2/mail/messages)'),
  }),
);

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
      average_session_duration: z
        .number()
        .int()
        .nullable()
        .describe('Seconds from sign-in to sign-out or session expiry, averaged; null before any sign-in'),
      most_active_day: z
        .enum(['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'])
        .nullable()
        .describe('The UTC weekday with the most sign-ins'),
      preferred_login_time: z
        .string()
        .nullable()
        .describe('The UTC hour with the most sign-ins, as 09:00-10:00'),
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
        changes: z
          .array(z.string())
          .optional()
          .describe('user.updated only: the changed fields, as metadata.department for nested ones'),
        details: z.record(z.string(), z.unknown()).nullable(),
      }),
    ),
    pagination: z.object({
      limit: z.number().int(),
      has_more: z.boolean(),
      next_cursor: z.string().nullable(),
    }),
  }),
);

export const SetPassword = z
  .object({
    password: chars(0, 1024),
    require_reset: z.boolean().optional(),
  })
  .strict();

/* --------------------------------------------------------------------------------------------- */
/* Webhooks                                                                                       */
/* --------------------------------------------------------------------------------------------- */

const WEBHOOK_EVENT_VALUES = [...EVENT_TYPES, '*'] as const;
const webhookEvent = z.enum(WEBHOOK_EVENT_VALUES, {
  error: `An event type of the catalog (${EVENT_TYPES.join(', ')}), or * for all`,
});
/** User-supplied secrets: 16 to 256 printable ASCII characters without spaces (whsec_… decoded 24-64 bytes). */
const webhookSecret = wire(
  z
    .string()
    .min(16)
    .max(256)
    .regex(/^[\x21-\x7e]+$/),
  {
    type: 'string',
    minLength: 16,
    maxLength: 256,
    pattern: '^[\\x21-\\x7e]+$',
    description:
      'Signing secret: whsec_ followed by base64 (Standard Webhooks), or any 16 to 256 printable ASCII characters; generated when left out',
  },
);

export const Webhook = named(
  'Webhook',
  z.object({
    webhook_id: z.string(),
    url: z.string(),
    events: z.array(z.string()),
    description: z.string().nullable(),
    active: z.boolean(),
    disabled_reason: z.string().nullable().describe('Why the server disabled the endpoint, if it did'),
    failing_since: timestamp.nullable().describe('Start of the current run of failed attempts'),
    previous_secret_expires_at: timestamp
      .nullable()
      .describe('Until when the secret before the last rotation still signs'),
    created_at: timestamp,
    updated_at: timestamp,
  }),
  'A subscribed webhook endpoint (its secret is never shown after creation or rotation)',
);

export const CreateWebhook = z
  .object({
    url: uriField(WEB_URI_PATTERN, 'An http(s) URL without fragment (https only in production)'),
    events: z
      .array(webhookEvent)
      .min(1)
      .max(EVENT_TYPES.length + 1),
    secret: webhookSecret.optional(),
    active: z.boolean().default(true),
    description: chars(0, 500).nullable().optional(),
  })
  .strict();

export const UpdateWebhook = z
  .object({
    url: uriField(WEB_URI_PATTERN, 'An http(s) URL without fragment (https only in production)').optional(),
    events: z
      .array(webhookEvent)
      .min(1)
      .max(EVENT_TYPES.length + 1)
      .optional(),
    active: z.boolean().optional(),
    description: chars(0, 500).nullable().optional(),
  })
  .strict();

export const WebhookEventPayload = named(
  'WebhookEvent',
  z.object({
    event: z.enum(EVENT_TYPES).describe('The event type'),
    type: z.enum(EVENT_TYPES).describe('The same as event (some receivers read this one)'),
    timestamp: timestamp.describe('When the event happened'),
    data: z.record(z.string(), z.unknown()).describe('The payload of the type (see each webhook entry)'),
    webhook_id: z.string().describe('The endpoint this delivery is for'),
  }),
  'The body of every webhook delivery',
);

export const WebhookDelivery = named(
  'WebhookDelivery',
  z.object({
    id: z.string().describe('The delivery id, sent as webhook-id on every attempt'),
    event_id: z.string(),
    event_type: z.string().nullable(),
    status: z.enum(['pending', 'failed', 'succeeded', 'dead']),
    attempts: z.number().int(),
    response_status: z.number().int().nullable().describe('HTTP status of the last attempt'),
    latency_ms: z.number().int().nullable(),
    next_attempt_at: timestamp.nullable(),
    last_error: z.string().nullable(),
    created_at: timestamp,
    updated_at: timestamp,
    finished_at: timestamp.nullable(),
  }),
  'One event for one endpoint, and how its attempts went',
);

/** The query of a list of outbox deliveries (a webhook's, the mail messages): newest first. */
export const deliveryListQuery = z.object({
  limit: pageQuery.limit,
  cursor: pageQuery.cursor,
  status: z
    .enum(['pending', 'failed', 'succeeded', 'dead'], { error: 'pending, failed, succeeded or dead' })
    .optional(),
});

export const MailMessage = named(
  'MailMessage',
  z.object({
    id: z.string(),
    to: z.string().nullable(),
    subject: z.string().nullable(),
    kind: z.string().nullable().describe('welcome, …'),
    status: z.enum(['pending', 'failed', 'succeeded', 'dead']),
    attempts: z.number().int(),
    last_error: z
      .string()
      .nullable()
      .describe('Why the last attempt failed (refused login, refused connection, timeout, an SMTP answer)'),
    smtp_status: z
      .number()
      .int()
      .nullable()
      .describe('The SMTP reply code of the last attempt, when there was one'),
    next_attempt_at: timestamp.nullable(),
    created_at: timestamp,
    updated_at: timestamp,
    sent_at: timestamp.nullable(),
  }),
  'One e-mail message and how sending it went (its body is never shown)',
);

/* --------------------------------------------------------------------------------------------- */
/* Policies (Cedar) and policy decisions                                                          */
/* --------------------------------------------------------------------------------------------- */

const POLICY_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
export const policyId = z
  .string()
  .min(1)
  .max(128)
  .regex(POLICY_ID, { error: '1 to 128 letters, digits, "_", ".", ":" or "-"' })
  .refine((id) => id !== 'schema', { error: '"schema" is reserved' });

export const Policy = named(
  'Policy',
  z.object({
    id: z.string().describe('Named in decisions’ diagnostics.reasons'),
    description: z.string().nullable(),
    policy: z.string().describe('Cedar text: one or more permit/forbid statements'),
    enabled: z.boolean(),
    version: z.number().int().describe('1 for the first write, one more for every write since'),
    created_at: timestamp,
    updated_at: timestamp.describe('When this version was written'),
  }),
  'A Cedar policy as it stands (or stood, with as_of)',
);

export const PolicyVersion = named(
  'PolicyVersion',
  z.object({
    version: z.number().int(),
    description: z.string().nullable(),
    policy: z.string(),
    enabled: z.boolean(),
    deleted: z.boolean().describe('This version records the deletion'),
    created_at: timestamp,
  }),
);

const policyText = chars(1, 65_536);

export const CreatePolicy = z
  .object({
    id: policyId.optional(),
    description: chars(0, 1000).nullable().optional(),
    policy: policyText,
    enabled: z.boolean().optional(),
  })
  .strict();

export const UpdatePolicy = z
  .object({
    description: chars(0, 1000).nullable().optional(),
    policy: policyText.optional(),
    enabled: z.boolean().optional(),
  })
  .strict();

export const PolicySchema = named(
  'PolicySchema',
  z.object({
    schema: z.string().nullable().describe('Cedar schema text (human-readable or JSON form); null: none'),
    version: z.number().int().describe('0 while no schema was ever set'),
    updated_at: timestamp.nullable(),
  }),
);

export const PutPolicySchema = z.object({ schema: chars(1, 262_144).nullable() }).strict();

/** A Cedar entity type name: identifiers joined by `::` (`User`, `Docs::Folder`). */
export const entityTypeName = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*$/, {
    error: 'a Cedar type name: identifiers joined by "::", such as User or Docs::Folder',
  });

export const EntityRef = named(
  'EntityRef',
  z.object({ type: entityTypeName, id: z.string().max(1024) }).strict(),
  'A Cedar entity uid: `{ "type": "User", "id": "alice" }`',
);

export const CedarEntityJson = z
  .object({
    uid: EntityRef,
    attrs: z.record(z.string(), z.unknown()).default({}),
    parents: z.array(EntityRef).max(100).default([]),
  })
  .strict();

export const PolicyEntity = named(
  'PolicyEntity',
  z.object({
    uid: EntityRef,
    attrs: z.record(z.string(), z.unknown()),
    parents: z.array(EntityRef),
    created_at: timestamp,
    updated_at: timestamp,
  }),
  'A registered entity (a resource, a group, an action group) in Cedar’s JSON form',
);

export const PutPolicyEntity = z
  .object({
    attrs: z.record(z.string(), z.unknown()).default({}),
    parents: z.array(EntityRef).max(100).default([]),
  })
  .strict();

export const AuthorizeRequest = named(
  'AuthorizeRequest',
  z
    .object({
      principal: EntityRef.describe('`User` by id or e-mail, `Client` by client_id, or any sent entity'),
      action: EntityRef,
      resource: EntityRef,
      context: z.record(z.string(), z.unknown()).optional(),
      entities: z.array(CedarEntityJson).max(1000).optional(),
    })
    .strict(),
);

export const AuthorizeBatchRequest = named(
  'AuthorizeBatchRequest',
  z.object({ requests: z.array(AuthorizeRequest).min(1).max(100, { error: 'At most 100 checks' }) }).strict(),
);

export const AuthorizeDecision = named(
  'AuthorizeDecision',
  z.object({
    decision: z.enum(['Allow', 'Deny']),
    diagnostics: z.object({
      reasons: z.array(z.string()).describe('Ids of the policies that determined the decision'),
      errors: z.array(z.object({ policy: z.string().nullable(), message: z.string() })),
    }),
  }),
);

export const AuthorizeBatchResponse = named(
  'AuthorizeBatchResponse',
  z.object({ results: z.array(AuthorizeDecision) }),
);
