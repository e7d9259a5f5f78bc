/** A user's second factors in the management API: list them, and reset them (remove one, or all). */
import { z } from 'zod';

import { AppError } from '../errors/app-error.js';
import { publicFactor, type MfaService } from '../services/mfa.js';
import type { UserService } from '../services/users.js';
import type { ApiRouter } from './api-router.js';
import { named, timestamp } from './schemas.js';
import { contextOf } from './users-routes.js';

const MfaFactor = named(
  'MfaFactor',
  z.object({
    id: z.string(),
    type: z
      .enum(['totp', 'webauthn'])
      .describe('totp: an authenticator app; webauthn: a passkey or security key'),
    name: z.string(),
    created_at: timestamp,
    last_used_at: timestamp.nullable(),
    device_type: z
      .enum(['singleDevice', 'multiDevice'])
      .nullable()
      .optional()
      .describe(
        'Passkeys: singleDevice (bound to one authenticator, amr hwk) or multiDevice (synced, amr swk)',
      ),
    backed_up: z.boolean().optional().describe('Passkeys: whether the authenticator reports it backed up'),
    transports: z.array(z.string()).optional().describe('Passkeys: transports the authenticator reported'),
  }),
);

const MfaSummary = named(
  'MfaSummary',
  z.object({
    mfa_enabled: z.boolean(),
    data: z.array(MfaFactor),
    recovery_codes_remaining: z.number().int().describe('Unused recovery codes (never the codes themselves)'),
  }),
);

const idParam = z.object({ id: z.string().min(1).max(64) });
const factorParams = z.object({ id: z.string().min(1).max(64), factor_id: z.string().min(1).max(64) });

export function registerMfaRoutes(api: ApiRouter, users: UserService, mfa: MfaService): void {
  api.add({
    method: 'get',
    path: '/users/{id}/mfa',
    operationId: 'listUserMfaFactors',
    summary: 'List a user’s second factors',
    description:
      'Authenticator apps and passkeys the user added, without secrets or keys, and how many recovery codes are left.',
    tag: 'Users',
    scope: 'user:read',
    params: idParam,
    responses: { 200: { description: 'The user’s second factors', schema: MfaSummary } },
    errors: ['USER_NOT_FOUND'],
    async handler({ params }) {
      const user = await users.get(params.id);
      const factors = await mfa.factors(user.id);
      return {
        status: 200,
        body: {
          mfa_enabled: factors.length > 0,
          data: factors.map(publicFactor),
          recovery_codes_remaining: factors.length > 0 ? await mfa.recoveryCodesLeft(user.id) : 0,
        },
      };
    },
  });

  api.add({
    method: 'delete',
    path: '/users/{id}/mfa/{factor_id}',
    operationId: 'resetUserMfaFactor',
    summary: 'Remove one of a user’s second factors',
    description:
      'For a user who lost an authenticator. Audited as `user.mfa_reset` and recorded as the `user.mfa_reset` event. Removing the last factor also removes the recovery codes (`mfa_enabled` becomes false); under MFA=required the user then enrols again at the next sign-in.',
    tag: 'Users',
    scope: 'user:security',
    params: factorParams,
    responses: { 204: { description: 'Removed' } },
    errors: ['USER_NOT_FOUND', 'MFA_FACTOR_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const context = contextOf(ctx, principal);
      await users.manageable(params.id, context);
      const removed = await mfa.remove(params.id, params.factor_id, { ...context, administrator: true });
      if (!removed) throw new AppError('MFA_FACTOR_NOT_FOUND');
      return { status: 204 };
    },
  });

  api.add({
    method: 'delete',
    path: '/users/{id}/mfa',
    operationId: 'resetUserMfa',
    summary: 'Remove all of a user’s second factors',
    description:
      'Every authenticator app, passkey and recovery code of the user. Audited and recorded as `user.mfa_reset` when there was something to remove; a user without factors answers 204 too.',
    tag: 'Users',
    scope: 'user:security',
    params: idParam,
    responses: { 204: { description: 'Removed' } },
    errors: ['USER_NOT_FOUND'],
    async handler({ params, principal, ctx }) {
      const context = contextOf(ctx, principal);
      await users.manageable(params.id, context);
      await mfa.remove(params.id, null, { ...context, administrator: true });
      return { status: 204 };
    },
  });
}
