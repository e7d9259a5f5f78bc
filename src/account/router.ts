/**
 * The built-in account page (/account): a first-party client of this very server that lets a person
 * sign in through the browser with no application set up, see who they are signed in as, and sign
 * out. It reads the provider's session directly and needs no token: it asks for an authorization code
 * with a PKCE challenge whose verifier it never keeps, so the code it gets back cannot be redeemed by
 * anyone and no token is ever issued for it. (A response_type=none request would do the same, but then
 * discovery would have to advertise a response type no registered client may use.)
 */
import { createHash, randomBytes } from 'node:crypto';

import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { ClientMetadata } from 'oidc-provider';

import type { Csrf } from '../interactions/csrf.js';
import type { Views } from '../interactions/views.js';
import { publicFactor, type MfaService } from '../services/mfa.js';
import { isActiveUser } from '../oidc/accounts.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { DurableStore, User } from '../store/ports.js';

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
  /** Second factors: the page lists them and lets the user add and remove them (unless MFA=off). */
  mfa?: MfaService;
  csrf?: Csrf;
}): Router {
  const { host, views, store, issuer, csrf } = deps;
  const mfa = deps.mfa?.enabled && csrf ? deps.mfa : undefined;
  const router = new Router({ prefix: '/account' });
  const forms = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '64kb' });

  /** The signed-in user and the session's secret for this page's CSRF tokens; null when signed out. */
  async function signedIn(ctx: Context): Promise<{ user: User; secret: string } | null> {
    const session = await host.current.Session.get(ctx as never);
    const user = session?.accountId ? await store.users.findById(session.accountId) : null;
    if (!isActiveUser(user)) return null;
    const id = (session as unknown as { jti?: string; uid?: string }).jti ?? session!.uid;
    return { user, secret: `${id}\n${user.id}` };
  }

  /** The signed-in user of a page other than the main one: signed out, back to /account. */
  async function requireUser(ctx: Context, post: boolean) {
    const who = mfa ? await signedIn(ctx) : null;
    if (!who) {
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect('/account');
      return null;
    }
    if (post) {
      const body = ctx.request.body as { csrf?: unknown } | undefined;
      if (!csrf!.verifyDerived('account', who.secret, body?.csrf)) {
        views.render(
          ctx,
          'error',
          {
            heading: views.translatorFor(ctx)('error.csrf.heading'),
            message: views.translatorFor(ctx)('account.csrf'),
            requestId: String(ctx.state.requestId ?? ''),
          },
          { status: 403 },
        );
        return null;
      }
    }
    return who;
  }

  const requestOf = (ctx: Context) => ({
    request_id: String(ctx.state.requestId ?? '') || null,
    ip_address: ctx.ip || null,
    user_agent: ctx.get('User-Agent') || null,
  });

  router.get('/', async (ctx) => {
    const who = await signedIn(ctx);
    if (!who) {
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect(accountSignInUrl(issuer));
      return;
    }
    const { user } = who;
    const factors = mfa ? (await mfa.factors(user.id)).map(publicFactor) : [];
    const roles = (await store.roles.listForUser(user.id)).map((r) => r.display_name);
    const signOut = new URL('/oauth/logout', issuer);
    signOut.search = new URLSearchParams({
      client_id: ACCOUNT_CLIENT_ID,
      post_logout_redirect_uri: `${issuer}/account`,
    }).toString();
    views.render(
      ctx,
      'account',
      {
        name: [user.first_name, user.last_name].filter(Boolean).join(' '),
        email: user.email,
        emailVerified: user.email_verified,
        roles: [...new Set([user.role, ...roles])].join(', '),
        memberSince: user.created_at.toISOString().slice(0, 10),
        lastLogin: user.last_login
          ? user.last_login.toISOString().replace('T', ' ').slice(0, 16) + ' UTC'
          : '',
        signOutUrl: signOut.toString(),
        mfa: mfa !== undefined,
        csrf: mfa ? csrf!.derive('account', who.secret) : '',
        factors: factors.map((f) => ({
          ...f,
          created: f.created_at.slice(0, 10),
          lastUsed: f.last_used_at ? f.last_used_at.slice(0, 10) : '',
        })),
        hasTotp: factors.some((f) => f.type === 'totp'),
        recoveryLeft: mfa && factors.length > 0 ? await mfa.recoveryCodesLeft(user.id) : 0,
      },
      { scripts: mfa !== undefined },
    );
  });

  const renderCodes = (ctx: Context, codes: string[]) =>
    views.render(ctx, 'mfa-codes', { codes, continueUrl: '/account' });

  async function renderTotp(
    ctx: Context,
    who: { user: User; secret: string },
    extra: { enrolment?: string; error?: string; status?: number } = {},
  ) {
    const enrolment =
      (extra.enrolment ? await mfa!.pendingTotp(who.user, extra.enrolment) : null) ??
      (await mfa!.beginTotp(who.user));
    views.render(
      ctx,
      'mfa-enrol',
      {
        required: false,
        error: extra.error,
        qrSvg: enrolment.qrSvg,
        secretGroups: enrolment.secret.replace(/(.{4})/g, '$1 ').trim(),
        enrolment: enrolment.id,
        action: '/account/mfa/totp',
        csrf: csrf!.derive('account', who.secret),
        passkeyOptions: null,
        cancelUrl: '/account',
        cancelLabel: 'account.back',
      },
      { status: extra.status },
    );
  }

  router.get('/mfa/totp', async (ctx) => {
    const who = await requireUser(ctx, false);
    if (who) await renderTotp(ctx, who);
  });

  router.post('/mfa/totp', forms, async (ctx) => {
    const who = await requireUser(ctx, true);
    if (!who) return;
    const body = ctx.request.body as Record<string, unknown>;
    const enrolment = typeof body.enrolment === 'string' ? body.enrolment : '';
    const code = typeof body.code === 'string' ? body.code : '';
    const done = await mfa!.confirmTotp(who.user, enrolment, code, requestOf(ctx));
    if (!done) {
      return renderTotp(ctx, who, {
        enrolment,
        error: views.translatorFor(ctx)('mfa.error.code'),
        status: 400,
      });
    }
    if (done.recoveryCodes) return renderCodes(ctx, done.recoveryCodes);
    ctx.status = 303;
    ctx.redirect('/account');
  });

  router.get('/mfa/passkey/options', async (ctx) => {
    const who = await requireUser(ctx, false);
    if (!who) return;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await mfa!.registrationOptions(who.user, `account:${who.user.id}`);
  });

  router.post('/mfa/passkey', json, async (ctx) => {
    const who = await requireUser(ctx, true);
    if (!who) return;
    const body = ctx.request.body as { name?: unknown; credential?: unknown };
    const done = await mfa!.finishRegistration(
      who.user,
      `account:${who.user.id}`,
      body.credential as never,
      typeof body.name === 'string' ? body.name : '',
      requestOf(ctx),
    );
    ctx.set('Cache-Control', 'no-store');
    if (!done) {
      ctx.status = 400;
      ctx.body = { error: views.translatorFor(ctx)('passkey.failed') };
      return;
    }
    if (done.recoveryCodes) await mfa!.keepCodesToShow(`account:${who.user.id}`, done.recoveryCodes);
    ctx.body = { location: done.recoveryCodes ? '/account/mfa/codes' : '/account' };
  });

  router.get('/mfa/codes', async (ctx) => {
    const who = await requireUser(ctx, false);
    if (!who) return;
    const codes = await mfa!.takeCodesToShow(`account:${who.user.id}`);
    if (!codes) {
      ctx.redirect('/account');
      return;
    }
    renderCodes(ctx, codes);
  });

  router.post('/mfa/recovery-codes', forms, async (ctx) => {
    const who = await requireUser(ctx, true);
    if (!who) return;
    if ((await mfa!.factors(who.user.id)).length === 0) {
      ctx.status = 303;
      ctx.redirect('/account');
      return;
    }
    renderCodes(ctx, await mfa!.regenerateRecoveryCodes(who.user, requestOf(ctx)));
  });

  router.post('/mfa/:factorId/remove', forms, async (ctx) => {
    const who = await requireUser(ctx, true);
    if (!who) return;
    await mfa!.remove(who.user.id, ctx.params.factorId!, {
      actor: { actor_type: 'user', actor_id: who.user.id, actor_client_id: null },
      request: requestOf(ctx),
      administrator: false,
    });
    ctx.status = 303;
    ctx.redirect('/account');
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
