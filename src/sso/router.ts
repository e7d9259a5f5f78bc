/**
 * The browser side of single sign-on: /sso/login/{connection} starts an upstream sign-in (for the
 * sign-in page's interaction, or, without one, for a sign-in to the account page), and
 * /sso/oidc/{connection}/callback finishes it: the interaction that was in progress gets the login
 * result (amr `fed`) and the browser continues the authorization there. SAML connections have
 * /sso/saml/{connection}/metadata (our SP metadata) and /sso/saml/{connection}/acs (the IdP posts
 * its response there). Failures get a page that says what went wrong, and an audit entry.
 */
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';

import { accountSignInUrl } from '../account/router.js';
import type { ProviderHost } from '../oidc/provider-host.js';
import type { AuthenticationService } from '../services/authentication.js';
import type { Views } from '../interactions/views.js';
import { protocolOf } from './connections.js';
import {
  FederationError,
  type FederatedSignIn,
  type Federation,
  type FederationFailure,
} from './federation.js';
import { MAX_SAML_RESPONSE_CHARS, type SamlServiceProvider } from './saml.js';

export interface SsoRouterDeps {
  host: ProviderHost;
  views: Views;
  auth: AuthenticationService;
  federation: Federation;
  saml: SamlServiceProvider;
  issuer: string;
}

const STATUS: Record<FederationFailure, number> = {
  unknown_connection: 404,
  disabled: 403,
  unsupported: 501,
  no_sign_in: 400,
  state: 400,
  upstream_error: 502,
  discovery: 502,
  validation: 401,
  no_email: 403,
  foreign_domain: 403,
  not_provisioned: 403,
  inactive: 403,
  idp_initiated: 400,
};

export function ssoRouter(deps: SsoRouterDeps): Router {
  const { host, views, auth, federation, saml } = deps;
  const router = new Router({ prefix: '/sso' });

  const requestOf = (ctx: Context) => ({
    request_id: String(ctx.state.requestId ?? '') || null,
    ip_address: ctx.ip || null,
    user_agent: ctx.get('User-Agent') || null,
  });

  function refuse(ctx: Context, err: FederationError): void {
    const t = views.translatorFor(ctx);
    ctx.set('Cache-Control', 'no-store');
    views.render(
      ctx,
      'error',
      {
        heading: t('sso.error.heading'),
        message: t(`sso.error.${err.reason}`),
        detail: err.reason,
        requestId: String(ctx.state.requestId ?? ''),
      },
      { status: STATUS[err.reason] },
    );
  }

  async function pendingLogin(uid: string) {
    const interaction = uid ? await host.current.Interaction.find(uid) : undefined;
    if (!interaction || interaction.prompt?.name !== 'login') {
      throw new FederationError('no_sign_in', 'no sign-in is in progress');
    }
    return interaction;
  }

  router.get('/login/:connection', async (ctx) => {
    try {
      const connection = await federation.find(ctx.params.connection!);
      const uid = typeof ctx.query.interaction === 'string' ? ctx.query.interaction : '';
      if (!uid) {
        // No authorization in progress (a link from a portal): sign in to the account page.
        const start = new URL(accountSignInUrl(deps.issuer));
        start.searchParams.set('idp_hint', connection.id);
        ctx.status = 303;
        return ctx.redirect(start.href);
      }
      const interaction = await pendingLogin(uid);
      const hint =
        typeof interaction.params.login_hint === 'string' ? interaction.params.login_hint : undefined;
      const emailHint = typeof ctx.query.login_hint === 'string' ? ctx.query.login_hint : hint;
      let target: string;
      try {
        target =
          protocolOf(connection) === 'saml'
            ? await saml.start(connection, interaction.uid, emailHint)
            : await federation.start(connection, interaction.uid, emailHint);
      } catch (err) {
        if (err instanceof FederationError) await federation.refusedAtStart(connection, err, requestOf(ctx));
        throw err;
      }
      ctx.set('Cache-Control', 'no-store');
      ctx.status = 303;
      ctx.redirect(target);
    } catch (err) {
      if (err instanceof FederationError) return refuse(ctx, err);
      throw err;
    }
  });

  /** The interaction that was in progress gets the login result; the browser resumes it. */
  async function continueInteraction(ctx: Context, signIn: FederatedSignIn): Promise<void> {
    const interaction = await pendingLogin(signIn.interactionUid);
    const clientId =
      typeof interaction.params.client_id === 'string' ? interaction.params.client_id : undefined;
    await auth.completeLogin(signIn.user, requestOf(ctx), clientId, 'sso');
    // What interactionResult does, for an interaction whose cookie is scoped to /interaction: the
    // provider's resume endpoint still checks the resume cookie, so only this browser continues.
    interaction.result = {
      login: { accountId: signIn.user.id, amr: ['fed'], remember: true },
      create: {},
    };
    await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 303;
    ctx.redirect(interaction.returnTo);
  }

  router.get('/oidc/:connection/callback', async (ctx) => {
    try {
      const signIn = await federation.callback(ctx.params.connection!, ctx.querystring, requestOf(ctx));
      await continueInteraction(ctx, signIn);
    } catch (err) {
      if (err instanceof FederationError) return refuse(ctx, err);
      throw err;
    }
  });

  router.get('/saml/:connection/metadata', async (ctx) => {
    try {
      const connection = await saml.find(ctx.params.connection!);
      ctx.set('Cache-Control', 'public, max-age=300');
      ctx.type = 'application/samlmetadata+xml';
      ctx.body = await saml.spMetadata(connection);
    } catch (err) {
      if (err instanceof FederationError) return refuse(ctx, err);
      throw err;
    }
  });

  // The IdP's auto-submitted form posts here from its own site. No cookie is needed here (the
  // request ID in the signed response leads to the stored request, and so to the interaction), and
  // none would come: our cookies are SameSite=Lax, which a cross-site POST does not carry, and the
  // interaction forms' CSRF check is not on this route. The answer is a 303, so the browser
  // continues with a top-level GET to the provider's resume endpoint, which Lax cookies do
  // accompany: the resume cookie there makes sure only the browser that started the sign-in
  // finishes it.
  const samlForm = bodyParser({
    enableTypes: ['form'],
    formLimit: `${MAX_SAML_RESPONSE_CHARS + 64 * 1024}b`,
  });
  router.post('/saml/:connection/acs', samlForm, async (ctx) => {
    try {
      const body = (ctx.request.body ?? {}) as Record<string, unknown>;
      const signIn = await saml.consume(ctx.params.connection!, body.SAMLResponse, requestOf(ctx));
      await continueInteraction(ctx, signIn);
    } catch (err) {
      if (err instanceof FederationError) return refuse(ctx, err);
      throw err;
    }
  });

  return router;
}
