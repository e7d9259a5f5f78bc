/**
 * /v2/policies (Cedar policies, their versions and schema) and /v2/policy-entities (entities
 * registered for decisions). Decisions themselves are asked at /v1/authorize (../gateway).
 */
import { z } from 'zod';

import type { PolicyService } from '../services/policies.js';
import type {
  PolicyEntityRecord,
  PolicyRecord,
  PolicyVersion as PolicyVersionRecord,
} from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import {
  CreatePolicy,
  entityTypeName,
  Pagination,
  pageQuery,
  Policy,
  PolicyEntity,
  policyId,
  PolicySchema,
  PolicyVersion,
  PutPolicyEntity,
  PutPolicySchema,
  UpdatePolicy,
  offsetPagination,
} from './schemas.js';
import { contextOf } from './users-routes.js';
import type { JsonObject } from '../store/ports.js';

export const toApiPolicy = (p: PolicyRecord) => ({
  id: p.id,
  description: p.description,
  policy: p.policy,
  enabled: p.enabled,
  version: p.version,
  created_at: p.created_at.toISOString(),
  updated_at: p.updated_at.toISOString(),
});

const toApiVersion = (v: PolicyVersionRecord) => ({
  version: v.version,
  description: v.description,
  policy: v.policy,
  enabled: v.enabled,
  deleted: v.deleted,
  created_at: v.created_at.toISOString(),
});

const toApiEntity = (e: PolicyEntityRecord) => ({
  uid: { type: e.type, id: e.id },
  attrs: e.attrs,
  parents: e.parents,
  created_at: e.created_at.toISOString(),
  updated_at: e.updated_at.toISOString(),
});

const idParam = z.object({ id: policyId });
const entityParams = z.object({ type: entityTypeName, id: z.string().min(1).max(1024) });
const SCOPE = 'policy:manage';

export function registerPolicyRoutes(api: ApiRouter, policies: PolicyService): void {
  api.add({
    method: 'get',
    path: '/policies',
    operationId: 'listPolicies',
    summary: 'List policies',
    description:
      'Every policy by id; with `as_of`, the policies as they stood at that moment (deleted ones that existed then included, ones created later left out).',
    tag: 'Policies',
    scope: SCOPE,
    query: z.object({ as_of: z.iso.datetime({ offset: true, error: 'An RFC 3339 timestamp' }).optional() }),
    responses: { 200: { description: 'The policies', schema: z.object({ data: z.array(Policy) }) } },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const list = await policies.list(query.as_of ? new Date(query.as_of) : undefined);
      return { status: 200, body: { data: list.map(toApiPolicy) } };
    },
  });

  api.add({
    method: 'post',
    path: '/policies',
    operationId: 'createPolicy',
    summary: 'Create a policy',
    description:
      'The text is parsed by Cedar and, when a schema is set, validated against it; Cedar’s messages are in the error’s details. Without an id one is generated.',
    tag: 'Policies',
    scope: SCOPE,
    body: CreatePolicy,
    responses: { 201: { description: 'The created policy (version 1)', schema: Policy } },
    errors: [
      'VALIDATION_ERROR',
      'MISSING_REQUIRED_FIELD',
      'INVALID_POLICY',
      'POLICY_SCHEMA_VIOLATION',
      'CONFLICT',
    ],
    async handler({ body, principal, ctx }) {
      const created = await policies.create(body, contextOf(ctx, principal));
      return { status: 201, body: toApiPolicy(created), headers: { Location: `/v2/policies/${created.id}` } };
    },
  });

  api.add({
    method: 'get',
    path: '/policies/schema',
    operationId: 'getPolicySchema',
    summary: 'Get the policy schema',
    tag: 'Policies',
    scope: SCOPE,
    responses: { 200: { description: 'The schema (null when none is set)', schema: PolicySchema } },
    errors: [],
    async handler() {
      const s = await policies.getSchema();
      return {
        status: 200,
        body: {
          schema: s.schema,
          version: s.version,
          updated_at: s.version === 0 ? null : s.updated_at.toISOString(),
        },
      };
    },
  });

  api.add({
    method: 'put',
    path: '/policies/schema',
    operationId: 'putPolicySchema',
    summary: 'Set or remove the policy schema',
    description:
      'Refused while a stored policy does not meet the new schema (422, one detail per failing policy). `null` removes the schema.',
    tag: 'Policies',
    scope: SCOPE,
    body: PutPolicySchema,
    responses: { 200: { description: 'The schema now in force', schema: PolicySchema } },
    errors: ['VALIDATION_ERROR', 'INVALID_POLICY_SCHEMA', 'POLICY_SCHEMA_VIOLATION', 'CONFLICT'],
    async handler({ body, principal, ctx }) {
      const s = await policies.putSchema(body.schema, contextOf(ctx, principal));
      return {
        status: 200,
        body: { schema: s.schema, version: s.version, updated_at: s.updated_at.toISOString() },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/policies/{id}',
    operationId: 'getPolicy',
    summary: 'Get a policy',
    tag: 'Policies',
    scope: SCOPE,
    params: idParam,
    responses: { 200: { description: 'The policy', schema: Policy } },
    errors: ['POLICY_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiPolicy(await policies.get(params.id)) };
    },
  });

  api.add({
    method: 'put',
    path: '/policies/{id}',
    operationId: 'updatePolicy',
    summary: 'Update a policy (partial): writes its next version',
    tag: 'Policies',
    scope: SCOPE,
    params: idParam,
    body: UpdatePolicy,
    responses: { 200: { description: 'The policy’s new version', schema: Policy } },
    errors: ['POLICY_NOT_FOUND', 'VALIDATION_ERROR', 'INVALID_POLICY', 'POLICY_SCHEMA_VIOLATION', 'CONFLICT'],
    async handler({ params, body, principal, ctx }) {
      return {
        status: 200,
        body: toApiPolicy(await policies.update(params.id, body, contextOf(ctx, principal))),
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/policies/{id}',
    operationId: 'deletePolicy',
    summary: 'Delete a policy',
    description: 'Its versions are kept (a rollback restores it); the id may be used again.',
    tag: 'Policies',
    scope: SCOPE,
    params: idParam,
    responses: { 204: { description: 'Deleted' } },
    errors: ['POLICY_NOT_FOUND', 'CONFLICT'],
    async handler({ params, principal, ctx }) {
      await policies.remove(params.id, contextOf(ctx, principal));
      return { status: 204 };
    },
  });

  api.add({
    method: 'get',
    path: '/policies/{id}/versions',
    operationId: 'listPolicyVersions',
    summary: 'List a policy’s versions',
    tag: 'Policies',
    scope: SCOPE,
    params: idParam,
    responses: {
      200: { description: 'Every version, oldest first', schema: z.object({ data: z.array(PolicyVersion) }) },
    },
    errors: ['POLICY_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: { data: (await policies.versions(params.id)).map(toApiVersion) } };
    },
  });

  api.add({
    method: 'post',
    path: '/policies/{id}/rollback',
    operationId: 'rollbackPolicy',
    summary: 'Roll a policy back to an earlier version',
    description:
      'Writes the text, description and enabled state of `version` as the newest version (also restores a deleted policy). The text must meet the current schema.',
    tag: 'Policies',
    scope: SCOPE,
    params: idParam,
    body: z.object({ version: z.number().int().min(1) }).strict(),
    responses: { 200: { description: 'The policy’s new version', schema: Policy } },
    errors: ['POLICY_NOT_FOUND', 'VALIDATION_ERROR', 'POLICY_SCHEMA_VIOLATION', 'CONFLICT'],
    async handler({ params, body, principal, ctx }) {
      const after = await policies.rollback(params.id, body.version, contextOf(ctx, principal));
      return { status: 200, body: toApiPolicy(after) };
    },
  });

  api.add({
    method: 'get',
    path: '/policy-entities',
    operationId: 'listPolicyEntities',
    summary: 'List registered policy entities',
    tag: 'Policies',
    scope: SCOPE,
    query: z.object({
      type: z.string().min(1).max(256).optional(),
      limit: pageQuery.limit,
      offset: pageQuery.offset,
    }),
    responses: {
      200: {
        description: 'A page of entities, by type and id',
        schema: z.object({ data: z.array(PolicyEntity), pagination: Pagination }),
      },
    },
    errors: ['VALIDATION_ERROR'],
    async handler({ query }) {
      const [items, total] = await policies.listEntities(query);
      return {
        status: 200,
        body: {
          data: items.map(toApiEntity),
          pagination: offsetPagination(total, query.limit, query.offset, items.length),
        },
      };
    },
  });

  api.add({
    method: 'get',
    path: '/policy-entities/{type}/{id}',
    operationId: 'getPolicyEntity',
    summary: 'Get a registered policy entity',
    tag: 'Policies',
    scope: SCOPE,
    params: entityParams,
    responses: { 200: { description: 'The entity', schema: PolicyEntity } },
    errors: ['POLICY_ENTITY_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiEntity(await policies.getEntity(params.type, params.id)) };
    },
  });

  api.add({
    method: 'put',
    path: '/policy-entities/{type}/{id}',
    operationId: 'putPolicyEntity',
    summary: 'Register (or replace) a policy entity',
    description:
      'Attributes in Cedar’s JSON form (`{"__entity": {...}}` for entity references, `{"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}}` for extension values); checked against the schema when one is set. Decisions use registered entities for the resource, the action and every parent they lead to.',
    tag: 'Policies',
    scope: SCOPE,
    params: entityParams,
    body: PutPolicyEntity,
    responses: { 200: { description: 'The entity as stored', schema: PolicyEntity } },
    errors: ['VALIDATION_ERROR', 'INVALID_POLICY_ENTITY'],
    async handler({ params, body, principal, ctx }) {
      const stored = await policies.putEntity(
        { type: params.type, id: params.id, attrs: body.attrs as JsonObject, parents: body.parents },
        contextOf(ctx, principal),
      );
      return { status: 200, body: toApiEntity(stored) };
    },
  });

  api.add({
    method: 'delete',
    path: '/policy-entities/{type}/{id}',
    operationId: 'deletePolicyEntity',
    summary: 'Remove a registered policy entity',
    tag: 'Policies',
    scope: SCOPE,
    params: entityParams,
    responses: { 204: { description: 'Removed' } },
    errors: ['POLICY_ENTITY_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      await policies.removeEntity(params.type, params.id, contextOf(ctx, principal));
      return { status: 204 };
    },
  });
}
