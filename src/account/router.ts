/**
 * The built-in account page (/account): a first-party client of this very server that lets a person
 * sign in through the browser with no application set up, see who they are signed in as, and sign
 * out. It reads the provider's session directly and needs no token: it asks for an authorization code
 * with a PKCE challenge whose verifier it never keeps, so the code it gets back cannot be redeemed by
 * anyone and no token is ever issued for it. (A response_type=none request would do the same, but then
 * discovery would have to advertise a response type no registered client may use.)
 */
import { createHash, randomBytes } from 'node:crypto';

import Router from '@koa/router';
import type { ClientMetadata } from 'oidc-provider';

import type { Views } from '../interactions/views.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { DurableStore } from '../store/ports.js';

export const ACCOUNT_CLIENT_ID = 'latchkey-account';

/** The account page's static client registration (see provider.ts). */
export function accountClient(issuer: string): ClientMetadata {
  return {
    client_id: ACCOUNT_CLIENT_ID,
    client_name: 'Your account',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    // A code flow is registered only so that sign-in can return here; see the comment above.
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [`${issuer}/account/callback`],
    post_logout_redirect_uris: [`${issuer}/account`],
    first_party: true,
  };
}

/**
 * An authorization request of the account page: sign-in returns to /account. `prompt=login` asks
 * for the sign-in page even with a session (an invitation link starts one this way).
 */
export function accountSignInUrl(issuer: string, options: { prompt?: 'login' } = {}): string {
  const authorize = new URL('/oauth/authorize', issuer);
  authorize.search = new URLSearchParams({
    client_id: ACCOUNT_CLIENT_ID,
    response_type: 'code',
    scope: 'openid',
    // S256 of a verifier that is discarded at once: the code is unredeemable by design.
    code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'),
    code_challenge_method: 'S256',
    redirect_uri: `${issuer}/account/callback`,
    state: randomBytes(16).toString('base64url'),
    ...(options.prompt ? { prompt: options.prompt } : {}),
  }).toString();
  return authorize.toString();
}

export function accountRouter(deps: {
  host: ProviderHost;
  views: Views;
  store: DurableStore;
  issuer: string;
}): Router {
  const { host, views, store, issuer } = deps;
  const router = new Router({ prefix: '/account' });

  router.get('/', async (ctx) => {
    const session = await host.current.Session.get(ctx as never);
    const user = session?.accountId ? await store.users.findById(session.accountId) : null;
    if (!isActiveUser(user)) {
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect(accountSignInUrl(issuer));
      return;
    }
    const roles = (await store.roles.listForUser(user.id)).map((r) => r.display_name);
    const signOut = new URL('/oauth/logout', issuer);
    signOut.search = new URLSearchParams({
      client_id: ACCOUNT_CLIENT_ID,
      post_logout_redirect_uri: `${issuer}/account`,
    }).toString();
    views.render(ctx, 'account', {
      name: [user.first_name, user.last_name].filter(Boolean).join(' '),
      email: user.email,
      emailVerified: user.email_verified,
      roles: [...new Set([user.role, ...roles])].join(', '),
      memberSince: user.created_at.toISOString().slice(0, 10),
      lastLogin: user.last_login ? user.last_login.toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '',
      signOutUrl: signOut.toString(),
    });
  });

  router.get('/callback', (ctx) => {
    // Only a fixed message per outcome is shown: query text from the redirect is never echoed.
    if (typeof ctx.query.error === 'string') {
      const t = views.translatorFor(ctx);
      views.render(
        ctx,
        'error',
        {
          heading: t('account.cancelled.heading'),
          message: t(ctx.query.error === 'access_denied' ? 'account.cancelled.body' : 'error.generic'),
          requestId: String(ctx.state.requestId ?? ''),
        },
        { status: 400 },
      );
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect('/account');
  });

  return router;
}
