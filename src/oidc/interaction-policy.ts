/**
 * The provider's interaction policy: its default login and consent prompts, plus one login check.
 * A browser session outlives the account it was made for: once a user is suspended, deactivated or
 * deleted, findAccount no longer returns them, yet the session still names them. oidc-provider's
 * own checks then skip the login prompt (there is a session) and fail in the consent prompt (there
 * is no account, so no grant), answering 500. This check asks for a fresh sign-in instead, which
 * such a user cannot complete, and which prompt=none turns into login_required for the client.
 */
import { interactionPolicy } from 'oidc-provider';

export function createInteractionPolicy(): interactionPolicy.Prompt[] {
  const policy = interactionPolicy.base();
  const login = policy.get('login');
  if (!login) throw new Error('oidc-provider has no login prompt');
  login.checks.add(
    new interactionPolicy.Check(
      'account_unavailable',
      'End-User authentication is required',
      'login_required',
      (ctx) => Boolean(ctx.oidc.session?.accountId && !ctx.oidc.account),
    ),
    0,
  );
  return policy;
}
