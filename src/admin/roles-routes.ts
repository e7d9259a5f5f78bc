/** /v2/roles: role management (a user's permissions are the union of their roles'). */
import { z } from 'zod';

import type { RoleService } from '../services/roles.js';
import type { Role as RoleRecord } from '../store/ports.js';
import type { ApiRouter } from './api-router.js';
import { CreateRole, Role, UpdateRole } from './schemas.js';
import { contextOf } from './users-routes.js';

export const toApiRole = (role: RoleRecord) => ({
  id: role.id,
  name: role.name,
  display_name: role.display_name,
  description: role.description,
  permissions: role.permissions,
  created_at: role.created_at.toISOString(),
  updated_at: role.updated_at.toISOString(),
});

const idParam = z.object({ id: z.string().min(1).max(64) });

export function registerRoleRoutes(api: ApiRouter, roles: RoleService): void {
  api.add({
    method: 'get',
    path: '/roles',
    operationId: 'listRoles',
    summary: 'List roles',
    tag: 'Roles',
    scope: 'role:manage',
    responses: { 200: { description: 'Every role, by name', schema: z.object({ data: z.array(Role) }) } },
    errors: [],
    async handler() {
      return { status: 200, body: { data: (await roles.list()).map(toApiRole) } };
    },
  });

  api.add({
    method: 'post',
    path: '/roles',
    operationId: 'createRole',
    summary: 'Create a role',
    description:
      'The name is the role’s identifier (users name their primary role by it) and cannot change later.',
    tag: 'Roles',
    scope: 'role:manage',
    body: CreateRole,
    responses: { 201: { description: 'The created role', schema: Role } },
    errors: ['VALIDATION_ERROR', 'MISSING_REQUIRED_FIELD', 'CONFLICT'],
    async handler({ body, principal, ctx }) {
      const role = await roles.create(body, contextOf(ctx, principal));
      return { status: 201, body: toApiRole(role), headers: { Location: `/v2/roles/${role.id}` } };
    },
  });

  api.add({
    method: 'get',
    path: '/roles/{id}',
    operationId: 'getRole',
    summary: 'Get a role',
    tag: 'Roles',
    scope: 'role:manage',
    params: idParam,
    responses: { 200: { description: 'The role', schema: Role } },
    errors: ['ROLE_NOT_FOUND'],
    async handler({ params }) {
      return { status: 200, body: toApiRole(await roles.get(params.id)) };
    },
  });

  api.add({
    method: 'put',
    path: '/roles/{id}',
    operationId: 'updateRole',
    summary: 'Update a role (partial)',
    tag: 'Roles',
    scope: 'role:manage',
    params: idParam,
    body: UpdateRole,
    responses: { 200: { description: 'The updated role', schema: Role } },
    errors: ['ROLE_NOT_FOUND', 'VALIDATION_ERROR'],
    async handler({ params, body, principal, ctx }) {
      return { status: 200, body: toApiRole(await roles.update(params.id, body, contextOf(ctx, principal))) };
    },
  });

  api.add({
    method: 'delete',
    path: '/roles/{id}',
    operationId: 'deleteRole',
    summary: 'Delete a role',
    description:
      'Refused with 422 while users hold the role, unless `force=true`: then it is unlinked and users whose primary role it was get the `user` role. The built-in `user` role cannot be deleted.',
    tag: 'Roles',
    scope: 'role:manage',
    params: idParam,
    query: z.object({
      force: z
        .enum(['true', 'false'], { error: 'true or false' })
        .optional()
        .transform((v) => v === 'true'),
    }),
    responses: {
      200: {
        description: 'Deleted',
        schema: z.object({ message: z.string(), reassigned_users: z.number().int() }),
      },
    },
    errors: ['ROLE_NOT_FOUND', 'BUSINESS_RULE_VIOLATION'],
    async handler({ params, query, principal, ctx }) {
      const result = await roles.remove(params.id, query.force, contextOf(ctx, principal));
      return { status: 200, body: { message: 'Role deleted', reassigned_users: result.reassigned_users } };
    },
  });
}
