/**
 * The sign-in and consent pages oidc-provider sends browsers to (/interaction/:uid): render the page
 * the current prompt needs, check the CSRF token on every post, and hand the outcome back to the
 * provider. First-party clients skip the consent page. An expired or missing interaction gets a
 * friendly page, never a stack trace.
 */
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import { errors, type InteractionResults } from 'oidc-provider';

import type { ProviderHost } from '../oidc/provider-host.js';
import { AppError } from '../errors/app-error.js';
import type { AuthenticationService } from '../services/authentication.js';
import type { PasswordResets } from '../services/password-resets.js';
import type { InvitationFacts } from '../mail/account-tokens.js';
import type { Registration } from '../services/registration.js';
import type { UserService } from '../services/users.js';
import type { Csrf } from './csrf.js';
import type { Views } from './views.js';

export interface InteractionDeps {
  host: ProviderHost;
  views: Views;
  csrf: Csrf;
  auth: AuthenticationService;
  users: UserService;
  /** Self-service password reset; the "Forgot password?" link shows only when mail can be sent. */
  resets?: PasswordResets;
  /** Sign-up and address confirmation. */
  registration?: Registration;
  /** Where an invitation link sends the browser to sign up: an authorization request of the account page. */
  invitationSignIn?: () => string;
}

/** Carries "password verified, new one required" from the sign-in post to the change form. */
const PENDING_COOKIE = '_lk_pending';
const PENDING_TTL_S = 600;
/** Carries a followed invitation link to the sign-up page of the sign-in it starts. */
const INVITE_COOKIE = '_lk_invite';
const INVITE_COOKIE_TTL_S = 3600;

type Details = Awaited<ReturnType<ProviderHost['current']['interactionDetails']>>;

const MAX_FIELD = 1024;

function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value.slice(0, MAX_FIELD) : '';
}

export function interactionsRouter(deps: InteractionDeps): Router {
  const { host, views, csrf, auth, users, resets, registration, invitationSignIn } = deps;

  const requestOf = (ctx: Context) => ({
    request_id: String(ctx.state.requestId ?? '') || null,
    ip_address: ctx.ip || null,
    user_agent: ctx.get('User-Agent') || null,
  });

  function renderPasswordChange(
    ctx: Context,
    details: Details,
    extra: { error?: string; status?: number } = {},
  ) {
    const t = views.translatorFor(ctx);
    views.render(
      ctx,
      'password-change',
      {
        uid: details.uid,
        csrf: csrf.issue(ctx, details.uid),
        error: extra.error,
        hint: t('password-change.hint'),
      },
      { status: extra.status, formTargets: [details.params.redirect_uri as string | undefined] },
    );
  }
  const router = new Router({ prefix: '/interaction' });
  const forms = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });

  /** Loads the interaction named in the URL; a different or missing one counts as expired. */
  async function load(ctx: Context): Promise<Details> {
    const details = await host.current.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw new errors.SessionNotFound('interaction mismatch');
    return details;
  }

  async function clientName(clientId: unknown): Promise<string> {
    const client = typeof clientId === 'string' ? await host.current.Client.find(clientId) : undefined;
    return client?.clientName ?? (typeof clientId === 'string' ? clientId : '');
  }

  const signedIn = (accountId: string): InteractionResults => ({
    login: { accountId, amr: ['pwd'], remember: true },
  });
  /** Sign-in forms are served while the login prompt, or the create prompt before it, is pending. */
  const signingIn = (details: Details) => details.prompt.name === 'login' || details.prompt.name === 'create';

  async function finish(ctx: Context, result: InteractionResults): Promise<void> {
    // Every result resolves `prompt=create` too (the person signed up, or signed in instead): a
    // later step of the same authorization (consent) must not bring the sign-up page back.
    const redirectTo = await host.current.interactionResult(
      ctx.req,
      ctx.res,
      { ...result, create: {} },
      {
        mergeWithLastSubmission: false,
      },
    );
    ctx.status = 303;
    ctx.redirect(redirectTo);
    ctx.status = 303;
  }

  function renderLogin(
    ctx: Context,
    details: Details,
    name: string,
    extra: {
      error?: string;
      email?: string;
      status?: number;
      headers?: Record<string, string>;
      resend?: boolean;
    } = {},
  ) {
    views.render(
      ctx,
      'login',
      {
        uid: details.uid,
        clientName: name,
        csrf: csrf.issue(ctx, details.uid),
        email:
          extra.email ?? (typeof details.params.login_hint === 'string' ? details.params.login_hint : ''),
        error: extra.error,
        forgot: resets?.available === true,
        // Production without SMTP_URL: say so, rather than leave people looking for the link.
        resetUnavailable: resets !== undefined && !resets.available,
        register: registration?.open === true,
        resend: extra.resend === true,
      },
      {
        status: extra.status,
        headers: extra.headers,
        formTargets: [details.params.redirect_uri as string | undefined],
      },
    );
  }

  /** Grants what the consent prompt is missing and tells the provider. */
  async function grantConsent(ctx: Context, details: Details): Promise<void> {
    const { prompt, params, session } = details;
    const missing = prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    const grant = details.grantId
      ? await host.current.Grant.find(details.grantId)
      : new host.current.Grant({ accountId: session!.accountId, clientId: params.client_id as string });
    if (!grant) throw new errors.SessionNotFound('grant not found');
    if (missing.missingOIDCScope?.length) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims?.length) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await finish(ctx, { consent: details.grantId ? {} : { grantId } });
  }

  /* Password reset by e-mail. Registered before /:uid, which would take /password-reset as a uid. */

  const resetBinding = (digest: string) => `password-reset:${digest}`;
  const renderReset = (
    ctx: Context,
    data: { token?: string; digest?: string; error?: string; invalid?: boolean },
    status = 200,
  ) =>
    views.render(
      ctx,
      'reset',
      {
        token: data.token ?? '',
        csrf: data.digest ? csrf.issue(ctx, resetBinding(data.digest)) : '',
        error: data.error,
        invalid: data.invalid === true,
        hint: views.translatorFor(ctx)('password.hint'),
      },
      { status },
    );

  router.get('/password-reset', async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const facts = resets && token ? await resets.check(token) : null;
    if (!facts) return renderReset(ctx, { invalid: true }, 400);
    return renderReset(ctx, { token, digest: facts.digest });
  });

  router.post('/password-reset', forms, async (ctx) => {
    const token = field(ctx.request.body, 'token');
    const facts = resets && token ? await resets.check(token) : null;
    if (!facts) return renderReset(ctx, { invalid: true }, 400);
    if (!csrf.verify(ctx, resetBinding(facts.digest), field(ctx.request.body, 'csrf')))
      throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const password = field(ctx.request.body, 'password');
    if (password !== field(ctx.request.body, 'confirm')) {
      return renderReset(ctx, { token, digest: facts.digest, error: t('reset.mismatch') }, 400);
    }
    try {
      if (!(await resets!.complete(facts, password, requestOf(ctx)))) {
        return renderReset(ctx, { invalid: true }, 400);
      }
    } catch (err) {
      if (
        err instanceof AppError &&
        (err.code === 'VALIDATION_ERROR' || err.code === 'BUSINESS_RULE_VIOLATION')
      ) {
        const issues = err.details?.map((d) => d.issue).join(' ') ?? err.message;
        return renderReset(ctx, { token, digest: facts.digest, error: issues }, 400);
      }
      throw err;
    }
    // Back to the sign-in the request came from, when there was one (ours: never another site).
    views.render(ctx, 'reset-done', { continueUrl: facts.uid ? `/interaction/${facts.uid}` : null });
  });

  router.get('/verify-email', async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const facts = registration && token ? await registration.confirm(token, requestOf(ctx)) : null;
    const t = views.translatorFor(ctx);
    if (!facts) {
      return views.render(
        ctx,
        'verify',
        { heading: 'verify.invalid.heading', error: t('verify.invalid') },
        { status: 400 },
      );
    }
    // Back to the sign-in the sign-up came from, when there was one (ours: never another site).
    views.render(ctx, 'verify', {
      heading: 'verify.done.heading',
      message: t('verify.done'),
      // To the sign-in form (not back to the sign-up form a prompt=create request would show).
      continueUrl: facts.uid ? `/interaction/${facts.uid}/signin` : null,
    });
  });

  /** The invitation whose link this browser followed, while it is still good. */
  async function invitationOf(ctx: Context): Promise<InvitationFacts | null> {
    const token = csrf.unseal('invitation', ctx.cookies.get(INVITE_COOKIE));
    return token && registration ? registration.invitation(token) : null;
  }

  // An invitation link: remembered in a cookie, then a sign-in whose page is the sign-up form.
  router.get('/invitation', async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const facts = registration && token ? await registration.invitation(token) : null;
    if (!facts || !invitationSignIn) {
      const t = views.translatorFor(ctx);
      return views.render(
        ctx,
        'verify',
        { title: t('invite.title'), heading: 'invite.invalid.heading', error: t('invite.invalid') },
        { status: 400 },
      );
    }
    ctx.cookies.set(INVITE_COOKIE, csrf.seal('invitation', token, INVITE_COOKIE_TTL_S), {
      httpOnly: true,
      sameSite: 'lax',
      secure: ctx.secure,
      path: '/interaction',
      maxAge: INVITE_COOKIE_TTL_S * 1000,
      overwrite: true,
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(invitationSignIn());
  });

  const renderRegister = (
    ctx: Context,
    details: Details,
    name: string,
    extra: {
      error?: string;
      status?: number;
      email?: string;
      firstName?: string;
      lastName?: string;
      invitation?: InvitationFacts | null;
    } = {},
  ) =>
    views.render(
      ctx,
      'register',
      {
        uid: details.uid,
        clientName: name,
        csrf: csrf.issue(ctx, details.uid),
        email: extra.invitation?.email ?? extra.email ?? '',
        invited: Boolean(extra.invitation),
        // REQUIRE_VERIFIED_EMAIL with e-mail off: the account could never be confirmed.
        unavailable: !extra.invitation && registration?.signUpNeedsMissingMail === true,
        firstName: extra.firstName ?? extra.invitation?.first_name ?? '',
        lastName: extra.lastName ?? extra.invitation?.last_name ?? '',
        error: extra.error,
        hint: views.translatorFor(ctx)('password.hint'),
        signInUrl: `/interaction/${details.uid}${details.prompt.name === 'create' || extra.invitation ? '/signin' : ''}`,
      },
      { status: extra.status, formTargets: [details.params.redirect_uri as string | undefined] },
    );

  // prompt=create shows the sign-up page first; this is its "I have an account" way to sign in.
  router.get('/:uid/signin', async (ctx) => {
    const details = await load(ctx);
    if (!signingIn(details)) throw new errors.SessionNotFound('no sign-in pending');
    renderLogin(ctx, details, await clientName(details.params.client_id));
  });

  router.get('/:uid/register', async (ctx) => {
    const details = await load(ctx);
    const invitation = await invitationOf(ctx);
    if (!(registration?.open || invitation) || !signingIn(details)) {
      throw new errors.SessionNotFound('sign-up is not available');
    }
    renderRegister(ctx, details, await clientName(details.params.client_id), { invitation });
  });

  router.post('/:uid/register', forms, async (ctx) => {
    const details = await load(ctx);
    const invitation = await invitationOf(ctx);
    if (!registration || !(registration.open || invitation) || !signingIn(details)) {
      throw new errors.SessionNotFound('sign-up is not available');
    }
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const name = await clientName(details.params.client_id);
    const input = {
      email: field(ctx.request.body, 'email').trim(),
      password: field(ctx.request.body, 'password'),
      first_name: field(ctx.request.body, 'first_name'),
      last_name: field(ctx.request.body, 'last_name'),
    };
    const again = (error: string, status: number) =>
      renderRegister(ctx, details, name, {
        error,
        status,
        email: input.email,
        firstName: input.first_name,
        lastName: input.last_name,
        invitation,
      });
    const locale = ctx.get('Accept-Language') || undefined;
    const outcome = await registration.signUp(
      input,
      { uid: details.uid, locale, request: requestOf(ctx) },
      invitation ?? undefined,
    );
    switch (outcome.kind) {
      case 'invalid':
        return again(outcome.field === 'email' ? t('register.error.email') : outcome.message, 400);
      case 'exists':
        return again(t('register.error.exists'), 409);
      case 'domain':
        return again(t('register.error.domain'), 400);
      case 'unavailable':
        return again(t('register.unavailable.mail'), 503);
      case 'created':
        break;
    }
    if (invitation) ctx.cookies.set(INVITE_COOKIE, null, { path: '/interaction' });
    if (registration.requireVerified && !outcome.user.email_verified) {
      return views.render(ctx, 'verify', {
        heading: 'verify.sent.heading',
        message: t('verify.sent', { email: outcome.user.email }),
        resend: true,
        codeForm: true,
        uid: details.uid,
        csrf: csrf.issue(ctx, details.uid),
        email: outcome.user.email,
      });
    }
    await auth.completeLogin(outcome.user, requestOf(ctx), details.params.client_id as string);
    return finish(ctx, signedIn(outcome.user.id));
  });

  router.post('/:uid/verify-code', forms, async (ctx) => {
    const details = await load(ctx);
    if (!registration) throw new errors.SessionNotFound('e-mail confirmation is not available');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const email = field(ctx.request.body, 'email').trim();
    const facts = await registration.confirmCode(email, field(ctx.request.body, 'code'), requestOf(ctx));
    if (!facts) {
      return views.render(
        ctx,
        'verify',
        {
          heading: 'verify.sent.heading',
          error: t('verify.code.invalid'),
          resend: true,
          codeForm: true,
          uid: details.uid,
          csrf: csrf.issue(ctx, details.uid),
          email,
        },
        { status: 400 },
      );
    }
    views.render(ctx, 'verify', {
      heading: 'verify.done.heading',
      message: t('verify.done'),
      continueUrl: `/interaction/${details.uid}/signin`,
    });
  });

  router.post('/:uid/verify-resend', forms, async (ctx) => {
    const details = await load(ctx);
    if (!registration) throw new errors.SessionNotFound('e-mail confirmation is not available');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    if (!registration.mailAvailable) {
      const error = t('verify.unavailable.mail');
      return views.render(ctx, 'verify', { heading: 'verify.sent.heading', error }, { status: 503 });
    }
    const email = field(ctx.request.body, 'email').trim();
    const outcome = await registration.resend(email, details.uid, ctx.get('Accept-Language') || undefined);
    views.render(
      ctx,
      'verify',
      {
        heading: 'verify.sent.heading',
        ...(outcome === 'limited' ? { error: t('verify.limited') } : { message: t('verify.resent') }),
      },
      { status: outcome === 'limited' ? 429 : 200 },
    );
  });

  router.get('/:uid/forgot', async (ctx) => {
    const details = await load(ctx);
    if (!resets?.available) throw new errors.SessionNotFound('password reset is not available');
    views.render(ctx, 'forgot', { uid: details.uid, csrf: csrf.issue(ctx, details.uid), email: '' });
  });

  router.post('/:uid/forgot', forms, async (ctx) => {
    const details = await load(ctx);
    if (!resets?.available) throw new errors.SessionNotFound('password reset is not available');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const email = field(ctx.request.body, 'email').trim();
    const again = (error: string, status: number) =>
      views.render(
        ctx,
        'forgot',
        { uid: details.uid, csrf: csrf.issue(ctx, details.uid), email, error },
        { status },
      );
    if (!email) return again(t('forgot.error.missing'), 400);
    const outcome = await resets.request(email, {
      ip: ctx.ip,
      uid: details.uid,
      locale: ctx.get('Accept-Language') || undefined,
      request: requestOf(ctx),
    });
    if (outcome === 'limited') return again(t('forgot.error.limited'), 429);
    views.render(ctx, 'forgot', { uid: details.uid, sent: true });
  });

  router.get('/:uid', async (ctx) => {
    const details = await load(ctx);
    const client = await host.current.Client.find(details.params.client_id as string);
    const name = client?.clientName ?? (details.params.client_id as string);
    // A followed invitation link: this sign-in is for creating the invited account.
    const invitation = signingIn(details) ? await invitationOf(ctx) : null;
    if (invitation) return renderRegister(ctx, details, name, { invitation });
    if (details.prompt.name === 'create' && registration?.open) return renderRegister(ctx, details, name);
    if (details.prompt.name === 'login') return renderLogin(ctx, details, name);
    if (details.prompt.name === 'consent') {
      if (client?.['first_party'] === true) return grantConsent(ctx, details);
      const t = views.translatorFor(ctx);
      const missing = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      const requests = [
        ...(missing.missingOIDCScope ?? []).map((scope) =>
          ['openid', 'profile', 'email', 'roles', 'offline_access'].includes(scope)
            ? t(`consent.scope.${scope}`)
            : t('consent.scope.other', { scope }),
        ),
        ...(missing.missingOIDCClaims?.length
          ? [t('consent.claims', { claims: missing.missingOIDCClaims.join(', ') })]
          : []),
        ...Object.entries(missing.missingResourceScopes ?? {}).map(([resource, scopes]) =>
          t('consent.resource', { resource, scopes: scopes.join(', ') }),
        ),
      ];
      const account = details.session?.accountId ? await auth.describeAccount(details.session.accountId) : '';
      return views.render(
        ctx,
        'consent',
        {
          uid: details.uid,
          clientName: name,
          csrf: csrf.issue(ctx, details.uid),
          requests,
          accountEmail: account,
        },
        { formTargets: [details.params.redirect_uri as string | undefined] },
      );
    }
    throw new errors.InvalidRequest(`unsupported prompt ${details.prompt.name}`);
  });

  router.post('/:uid/login', forms, async (ctx) => {
    const details = await load(ctx);
    if (!signingIn(details)) throw new errors.SessionNotFound('no sign-in pending');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const name = await clientName(details.params.client_id);
    const email = field(ctx.request.body, 'email').trim();
    const password = field(ctx.request.body, 'password');
    if (!email || !password) {
      return renderLogin(ctx, details, name, { email, error: t('login.error.missing'), status: 400 });
    }
    const result = await auth.authenticate({
      email,
      password,
      ip: ctx.ip,
      userAgent: ctx.get('User-Agent'),
      requestId: ctx.state.requestId,
      clientId: details.params.client_id as string,
    });
    switch (result.kind) {
      case 'ok':
        if (registration?.requireVerified && !result.user.email_verified) {
          const mail = registration.mailAvailable;
          return renderLogin(ctx, details, name, {
            email,
            error: t(mail ? 'login.error.unverified' : 'login.error.unverified.mail'),
            status: 403,
            resend: mail,
          });
        }
        if (result.mustChangePassword) {
          ctx.cookies.set(PENDING_COOKIE, csrf.seal(details.uid, result.user.id, PENDING_TTL_S), {
            httpOnly: true,
            sameSite: 'lax',
            secure: ctx.secure,
            path: `/interaction/${details.uid}`,
            maxAge: PENDING_TTL_S * 1000,
            overwrite: true,
          });
          return renderPasswordChange(ctx, details);
        }
        return finish(ctx, signedIn(result.user.id));
      case 'invalid':
        return renderLogin(ctx, details, name, { email, error: t('login.error.invalid'), status: 401 });
      case 'inactive':
        return renderLogin(ctx, details, name, { email, error: t('login.error.inactive'), status: 403 });
      case 'locked':
        return renderLogin(ctx, details, name, {
          email,
          error: t('login.error.locked', { minutes: Math.ceil(result.retryAfterS / 60) }),
          status: 429,
          headers: { 'Retry-After': String(result.retryAfterS) },
        });
    }
  });

  router.post('/:uid/password', forms, async (ctx) => {
    const details = await load(ctx);
    if (details.prompt.name !== 'login') throw new errors.SessionNotFound('no sign-in pending');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const userId = csrf.unseal(details.uid, ctx.cookies.get(PENDING_COOKIE));
    if (!userId) throw new errors.SessionNotFound('password change expired');
    const t = views.translatorFor(ctx);
    const password = field(ctx.request.body, 'password');
    if (password !== field(ctx.request.body, 'confirm')) {
      return renderPasswordChange(ctx, details, { error: t('password-change.mismatch'), status: 400 });
    }
    if (await auth.isCurrentPassword(userId, password)) {
      return renderPasswordChange(ctx, details, { error: t('password-change.reused'), status: 400 });
    }
    const actor = { actor_type: 'user' as const, actor_id: userId, actor_client_id: null };
    try {
      // The user acting on themselves (their password was just verified): no management scopes.
      await users.setPassword(userId, password, { actor, request: requestOf(ctx), grants: new Set() });
    } catch (err) {
      if (
        err instanceof AppError &&
        (err.code === 'VALIDATION_ERROR' || err.code === 'BUSINESS_RULE_VIOLATION')
      ) {
        const issues = err.details?.map((d) => d.issue).join(' ') ?? err.message;
        return renderPasswordChange(ctx, details, { error: issues, status: 400 });
      }
      if (err instanceof AppError && err.code === 'USER_NOT_FOUND')
        throw new errors.SessionNotFound('account gone');
      throw err;
    }
    ctx.cookies.set(PENDING_COOKIE, null, { path: `/interaction/${details.uid}` });
    const user = await users.get(userId);
    if (user.status !== 'active') throw new errors.SessionNotFound('account not active');
    await auth.completeLogin(user, requestOf(ctx), details.params.client_id as string);
    return finish(ctx, { login: { accountId: userId, amr: ['pwd'], remember: true } });
  });

  router.post('/:uid/consent', forms, async (ctx) => {
    const details = await load(ctx);
    if (details.prompt.name !== 'consent') throw new errors.SessionNotFound('no consent pending');
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    if (field(ctx.request.body, 'decision') !== 'approve') {
      return finish(ctx, {
        error: 'access_denied',
        error_description: 'End-User denied the authorization request',
      });
    }
    return grantConsent(ctx, details);
  });

  router.get('/:uid/abort', async (ctx) => {
    await load(ctx);
    return finish(ctx, { error: 'access_denied', error_description: 'End-User aborted interaction' });
  });

  return router;
}

/** A form posted without a valid CSRF token. */
export class CsrfFailure extends Error {
  constructor() {
    super('invalid or missing CSRF token');
    this.name = 'CsrfFailure';
  }
}
