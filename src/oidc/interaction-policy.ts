/**
 * The provider's interaction policy: its default login and consent prompts, plus one login check.
 * A browser session outlives the account it was made for: once a user is suspended, deactivated or
 * deleted, findAccount no longer returns them, yet the session still names them. oidc-provider's
 * own checks then skip the login prompt (there is a session) and fail in the consent prompt (there
 * is no account, so no grant), answering 500. This check asks for a fresh sign-in instead, which
 * such a user cannot complete, and which prompt=none turns into login_required for the client.
 */
import { interactionPolicy } from 'oidc-provider';

import { ACR_MFA } from '../services/mfa.js';

/**
 * With sign-up open, `prompt=create` (OpenID Connect Prompt Create) is a prompt of its own, before
 * login: the interaction shows the sign-up page first. It is resolved by an interaction result
 * holding `create` (sign-up, or signing in instead).
 */
export function createInteractionPolicy(
  options: { signUp?: boolean; stepUp?: boolean } = {},
): interactionPolicy.Prompt[] {
  const policy = interactionPolicy.base();
  if (options.signUp) {
    // A requestable prompt is requested while `prompt` names it and no interaction result holds it
    // (oidc-provider adds that check itself); every result of ours holds `create` (see finish).
    policy.add(new interactionPolicy.Prompt({ name: 'create', requestable: true }), 0);
  }
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
  if (options.stepUp) {
    // Step-up: a session that showed one factor, asked (acr_values) for a multi-factor sign-in. The
    // sign-in page then asks for the second factor only (interactions/router.ts, stepUpPending).
    login.checks.add(
      new interactionPolicy.Check(
        'mfa_step_up',
        'Multi-factor authentication is required',
        'login_required',
        (ctx) => {
          const requested = ctx.oidc.params?.acr_values;
          return (
            typeof requested === 'string' &&
            requested.split(' ').includes(ACR_MFA) &&
            Boolean(ctx.oidc.session?.accountId) &&
            ctx.oidc.session?.acr !== ACR_MFA
          );
        },
      ),
    );
  }
  return policy;
}
