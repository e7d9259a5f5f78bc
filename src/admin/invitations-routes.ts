/**
 * /v2/invitations: an administrator invites an address to sign up (REGISTRATION=invite, or open).
 * The invitee is mailed a single-use link (INVITATION_TTL_S) that opens the sign-up page with the
 * address fixed; the account it creates starts with a confirmed address.
 */
import type { Registration } from '../services/registration.js';
import type { ApiRouter } from './api-router.js';
import { CreateInvitation, Invitation } from './schemas.js';
import { contextOf } from './users-routes.js';

export function registerInvitationRoutes(api: ApiRouter, registration: Registration | undefined): void {
  api.add({
    method: 'post',
    path: '/invitations',
    operationId: 'inviteUser',
    summary: 'Invite an address to sign up',
    description:
      'Mails the address a single-use link, valid for INVITATION_TTL_S (7 days), to the sign-up page with the address fixed; `first_name` and `last_name` are filled in there. The account the invitee creates has `email_verified: true` and gets the welcome message; `user.created` is recorded as for any sign-up. The domain allow-list (REGISTRATION_DOMAINS) does not apply. Refused with `422 REGISTRATION_CLOSED` when REGISTRATION=closed, `422 EMAIL_NOT_CONFIGURED` when e-mail is off (production without SMTP_URL), and `409 USER_ALREADY_EXISTS` when the address has an account. Inviting again sends a new link; earlier ones keep working until used or expired.',
    tag: 'Users',
    scope: 'user:write',
    body: CreateInvitation,
    responses: { 202: { description: 'The invitation is in the mail outbox', schema: Invitation } },
    errors: ['USER_ALREADY_EXISTS', 'REGISTRATION_CLOSED', 'EMAIL_NOT_CONFIGURED'],
    async handler({ body, principal, ctx }) {
      const context = contextOf(ctx, principal);
      if (!registration) throw new Error('registration is not wired');
      const sent = await registration.invite(body, {
        actor: context.actor,
        request: context.request,
        locale: body.locale,
      });
      return {
        status: 202,
        body: { email: sent.email, expires_at: sent.expires_at.toISOString(), email_sent: true as const },
      };
    },
  });
}
