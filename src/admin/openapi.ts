/**
 * The OpenAPI 3.1 document of the management API, generated from the same route declarations and
 * zod schemas that validate requests (api-router.ts), so the document cannot drift from the code.
 */
import { maxHeaderSize } from 'node:http';

import { z } from 'zod';

import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.js';
import type { RouteSpec } from './api-router.js';
import { EVENT_DATA, EVENT_TYPES } from '../events/catalog.js';
import {
  apiSchemas,
  ErrorEnvelope,
  WebhookEventPayload,
  JSON_PARAMETER,
  schemaExtras,
  wireComponents,
} from './schemas.js';

type Json = Record<string, unknown>;

const ALWAYS_ON_SCOPED: ErrorCode[] = [
  'AUTH_TOKEN_MISSING',
  'AUTH_TOKEN_INVALID',
  'AUTH_TOKEN_EXPIRED',
  'AUTH_INSUFFICIENT_SCOPE',
  'RATE_LIMIT_EXCEEDED',
];

export interface OpenApiInfo {
  issuer: string;
  version: string;
  scopes: Record<string, string>;
}

export function buildOpenApi(routes: RouteSpec[], info: OpenApiInfo): Json {
  const components: Record<string, Json> = {};

  /** A JSON Schema for `schema`, with named schemas moved to components and refs pointing there. */
  const jsonSchema = (schema: z.ZodType, io: 'input' | 'output'): Json => {
    const generated = z.toJSONSchema(schema, {
      target: 'draft-2020-12',
      io,
      metadata: apiSchemas,
      unrepresentable: 'any',
      override: ({ zodSchema, jsonSchema: s }) => {
        const target = s as Json;
        // zod adds its own regexes to formats; the format says it better to readers and tools. A
        // wired schema (schemas.ts `wire`) states its own pattern, which the validator uses.
        if (typeof target.format === 'string' && target.pattern && !zodSchema._zod.toJSONSchema) {
          delete target.pattern;
        }
        const extras = schemaExtras.get(zodSchema as unknown as z.ZodType);
        if (extras) Object.assign(target, structuredClone(extras));
        const description = z.globalRegistry.get(zodSchema)?.description;
        if (description && target.description === undefined) target.description = description;
      },
    }) as Json;
    const { $defs, $schema, ...rest } = generated;
    void $schema;
    const rewrite = (value: Json): Json =>
      JSON.parse(JSON.stringify(value).replace(/"#\/\$defs\/([^"]+)"/g, '"#/components/schemas/$1"')) as Json;
    for (const [name, def] of Object.entries(($defs ?? {}) as Record<string, Json>)) {
      const { $schema: _s, $id: _i, ...clean } = def;
      components[name] ??= rewrite(clean);
    }
    const { $id: _id, ...body } = rest;
    const id = apiSchemas.get(schema)?.id;
    if (id) {
      components[id] ??= rewrite(body);
      return { $ref: `#/components/schemas/${id}` };
    }
    return rewrite(body);
  };

  const errorResponses = (codes: ErrorCode[]) => {
    const byStatus = new Map<number, ErrorCode[]>();
    for (const code of new Set(codes)) {
      const status = ERROR_CATALOG[code].status;
      byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
    }
    return Object.fromEntries(
      [...byStatus].map(([status, list]) => [
        String(status),
        {
          description: list.map((c) => `\`${c}\`: ${ERROR_CATALOG[c].message}`).join('; '),
          content: { 'application/json': { schema: jsonSchema(ErrorEnvelope, 'output') } },
        },
      ]),
    );
  };

  const paths: Record<string, Record<string, Json>> = {};
  for (const route of routes) {
    const parameters: Json[] = [];
    for (const [where, schema] of [
      ['path', route.params],
      ['query', route.query],
    ] as const) {
      if (!schema) continue;
      const object = jsonSchema(schema, 'input') as {
        properties?: Record<string, Json>;
        required?: string[];
      };
      for (const [name, property] of Object.entries(object.properties ?? {})) {
        const { description, [JSON_PARAMETER]: json, ...propertySchema } = property;
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (object.required ?? []).includes(name),
          ...(description ? { description } : {}),
          // A parameter whose value is JSON text is described by the schema of the parsed value.
          ...(json
            ? { content: { 'application/json': { schema: propertySchema } } }
            : { schema: propertySchema }),
        });
      }
    }
    const errors = [
      ...route.errors,
      ...(route.scope ? ALWAYS_ON_SCOPED : ['RATE_LIMIT_EXCEEDED' as const]),
      ...(route.params || route.query || route.body ? (['VALIDATION_ERROR'] as const) : []),
      ...(route.query instanceof z.ZodObject && 'cursor' in route.query.shape
        ? (['INVALID_CURSOR'] as const)
        : []),
      ...(route.body ? (['MALFORMED_JSON', 'UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE'] as const) : []),
      'REQUEST_HEADERS_TOO_LARGE' as const,
      'INTERNAL_ERROR' as const,
    ];
    const operation: Json = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      tags: [route.tag],
      security: route.scope ? [{ oauth2: [route.scope] }] : [],
      ...(parameters.length ? { parameters } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: route.bodyOptional !== true,
              content: { 'application/json': { schema: jsonSchema(route.body, 'input') } },
            },
          }
        : {}),
      responses: {
        ...Object.fromEntries(
          Object.entries(route.responses).map(([status, response]) => [
            status,
            {
              description: response.description,
              ...(response.schema
                ? { content: { 'application/json': { schema: jsonSchema(response.schema, 'output') } } }
                : {}),
            },
          ]),
        ),
        ...errorResponses(errors),
      },
      ...(route.scope ? { 'x-required-scope': route.scope } : {}),
    };
    const path = `${route.prefix ?? '/v2'}${route.path}`;
    paths[path] ??= {};
    paths[path][route.method] = operation;
  }

  // What receivers get: one entry per event type (OpenAPI 3.1 `webhooks`).
  const payload = jsonSchema(WebhookEventPayload, 'output');
  const webhooks = Object.fromEntries(
    EVENT_TYPES.map((type) => [
      type,
      {
        post: {
          summary: type,
          description: `${EVENT_DATA[type]}. Signed with webhook-id, webhook-timestamp, webhook-signature (Standard Webhooks) and X-Signature (hex HMAC-SHA256 of the raw body); X-Event-Type names the type.`,
          requestBody: { required: true, content: { 'application/json': { schema: payload } } },
          responses: {
            '200': {
              description:
                'Any 2xx within the timeout: delivered; 410: the endpoint is disabled; anything else is retried',
            },
          },
        },
      },
    ]),
  );

  return {
    openapi: '3.1.0',
    info: {
      title: 'Latchkey management API',
      version: info.version,
      description: `Users, roles, OAuth clients and APIs of a Latchkey server. Authenticate with an access token from this server (client credentials) holding the scope each operation names; some fields need a scope of their own (role: role:manage and the role's management scopes; reactivation, email_verified and protected metadata keys: user:security; plan: plan:manage), nobody grants a management scope they lack, and changing a user or client needs every management scope it holds (403 AUTH_INSUFFICIENT_SCOPE). Every response carries X-Request-Id and the X-RateLimit-* headers; requests are counted before their body is read. Bodies are UTF-8 JSON of at most 1 MiB (400 INVALID_ENCODING, 400 MALFORMED_JSON, 413, 415). The request line and headers together (the query string included) may be at most ${maxHeaderSize} bytes (431 REQUEST_HEADERS_TOO_LARGE). Query parameters an operation does not declare are refused (400 naming them); integers in queries are decimal digits only.`,
    },
    servers: [{ url: info.issuer }],
    paths,
    webhooks,
    components: {
      schemas: { ...structuredClone(wireComponents), ...components },
      securitySchemes: {
        oauth2: {
          type: 'oauth2',
          flows: { clientCredentials: { tokenUrl: `${info.issuer}/oauth/token`, scopes: info.scopes } },
        },
      },
    },
  };
}
