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
import { ACR_MFA, acrOf, type MfaService } from '../services/mfa.js';
import type { PasswordResets } from '../services/password-resets.js';
import type { InvitationFacts } from '../mail/account-tokens.js';
import type { Registration } from '../services/registration.js';
import type { UserService } from '../services/users.js';
import type { SignInRedirects } from '../sso/hooks.js';
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
  /** Second factors; absent or off: sign-in is by password alone. */
  mfa?: MfaService;
  /** Where an invitation link sends the browser to sign up: an authorization request of the account page. */
  invitationSignIn?: () => string;
  /** Single sign-on: home-realm discovery (sso/hooks.ts). */
  sso?: SignInRedirects;
}

/** Carries "password verified, new one required" from the sign-in post to the change form. */
const PENDING_COOKIE = '_lk_pending';
const PENDING_TTL_S = 600;
/**
 * Carries "these factors were shown, this step is next" through the second-factor pages: the user
 * id, their amr so far, and the stage (verify: show a factor; enrol: add one; enrolled: added, the
 * recovery codes are being shown).
 */
const MFA_COOKIE = '_lk_mfa';
type MfaStage = 'verify' | 'enrol' | 'enrolled';
/** Login-prompt reasons a signed-in session is taken to the second-factor page for (step-up). */
const STEP_UP_REASONS = new Set(['mfa_step_up', 'essential_acr', 'essential_acrs']);
/** amr values of a second factor. */
const SECOND_FACTORS = new Set(['otp', 'hwk', 'swk']);
/** Carries a followed invitation link to the sign-up page of the sign-in it starts. */
const INVITE_COOKIE = '_lk_invite';
const INVITE_COOKIE_TTL_S = 3600;

type Details = Awaited<ReturnType<ProviderHost['current']['interactionDetails']>>;

const MAX_FIELD = 1024;

function redirect303(ctx: Context, to: string): void {
  ctx.set('Cache-Control', 'no-store');
  ctx.status = 303;
  ctx.redirect(to);
  ctx.status = 303;
}

function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value.slice(0, MAX_FIELD) : '';
}

export function interactionsRouter(deps: InteractionDeps): Router {
  const { host, views, csrf, auth, users, resets, registration, invitationSignIn } = deps;
  const mfa = deps.mfa?.enabled ? deps.mfa : undefined;

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
    login: { accountId, amr: ['pwd'], ...(deps.mfa?.enabled ? { acr: acrOf(['pwd']) } : {}), remember: true },
  });
  /** Sign-in forms are served while the login prompt, or the create prompt before it, is pending. */
  const signingIn = (details: Details) => details.prompt.name === 'login' || details.prompt.name === 'create';

  async function finish(ctx: Context, result: InteractionResults, json = false): Promise<void> {
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
    if (json) {
      // The passkey script navigates there itself (a fetch would follow the redirect invisibly).
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { location: redirectTo };
      return;
    }
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
      sso?: boolean;
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
        passkeys: mfa !== undefined,
        sso: extra.sso === true,
      },
      {
        status: extra.status,
        headers: extra.headers,
        formTargets: [details.params.redirect_uri as string | undefined],
        scripts: mfa !== undefined,
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

  /* Second factors ----------------------------------------------------------------------------- */

  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '64kb' });
  const mfaPath = (uid: string) => `/interaction/${uid}`;

  function setMfaState(ctx: Context, uid: string, userId: string, amr: string[], stage: MfaStage) {
    ctx.cookies.set(MFA_COOKIE, csrf.seal(uid, `${userId}:${amr.join('+')}:${stage}`, PENDING_TTL_S), {
      httpOnly: true,
      sameSite: 'lax',
      secure: ctx.secure,
      path: mfaPath(uid),
      maxAge: PENDING_TTL_S * 1000,
      overwrite: true,
    });
  }

  /** The pending second-factor step of this interaction, if it is at one of `stages`. */
  async function mfaState(ctx: Context, details: Details, stages: MfaStage[]) {
    if (!mfa || !signingIn(details)) throw new errors.SessionNotFound('no second factor pending');
    const value = csrf.unseal(details.uid, ctx.cookies.get(MFA_COOKIE));
    const [userId, amr, stage] = value?.split(':') ?? [];
    if (!userId || !amr || !stages.includes(stage as MfaStage)) {
      throw new errors.SessionNotFound('second factor step expired');
    }
    const user = await users.get(userId).catch(() => null);
    if (!user || user.status !== 'active') throw new errors.SessionNotFound('account not active');
    return { user, amr: amr.split('+').filter(Boolean) };
  }

  /** Whether the client asked for a multi-factor sign-in (acr_values, or an essential acr claim). */
  function wantsMfa(details: Details): boolean {
    const { acr_values: acrValues, claims } = details.params as { acr_values?: unknown; claims?: unknown };
    if (typeof acrValues === 'string' && acrValues.split(' ').includes(ACR_MFA)) return true;
    if (typeof claims !== 'string') return false;
    try {
      const acr = (JSON.parse(claims) as { id_token?: { acr?: { value?: unknown; values?: unknown } } })
        .id_token?.acr;
      return acr?.value === ACR_MFA || (Array.isArray(acr?.values) && acr.values.includes(ACR_MFA));
    } catch {
      return false;
    }
  }

  /** A signed-in session asked for more than it showed: only the second factor is missing. */
  function stepUpPending(details: Details): boolean {
    const reasons = (details.prompt.reasons ?? []) as string[];
    return (
      mfa !== undefined &&
      details.prompt.name === 'login' &&
      typeof details.session?.accountId === 'string' &&
      reasons.length > 0 &&
      reasons.every((r) => STEP_UP_REASONS.has(r))
    );
  }

  /** amr as shown: each method once, with `mfa` once a password or passkey met a second factor. */
  function amrOf(methods: string[]): string[] {
    const unique = [...new Set(methods.filter((m) => m !== 'mfa'))];
    // A federated sign-in (fed) is one factor, as a password is.
    const factors = unique.filter((m) => m === 'pwd' || m === 'fed' || SECOND_FACTORS.has(m)).length;
    return factors >= 2 || methods.includes('mfa') ? [...unique, 'mfa'] : unique;
  }

  /** Records the sign-in and hands the account, with what it showed, to the provider. */
  async function completeSignIn(
    ctx: Context,
    details: Details,
    user: { id: string },
    methods: string[],
    asJson = false,
  ): Promise<void> {
    const amr = amrOf(methods);
    const record = await users.get(user.id);
    // user.login's method: password, password+otp, password+passkey, passkey (sso+otp after a
    // federated sign-in stepped up).
    const method = [
      ...new Set(
        amr
          .filter((m) => m !== 'mfa')
          .map((m) => (m === 'pwd' ? 'password' : m === 'fed' ? 'sso' : m === 'otp' ? 'otp' : 'passkey')),
      ),
    ].join('+');
    await auth.completeLogin(record, requestOf(ctx), details.params.client_id as string, method);
    ctx.cookies.set(MFA_COOKIE, null, { path: mfaPath(details.uid) });
    return finish(ctx, { login: { accountId: user.id, amr, acr: acrOf(amr), remember: true } }, asJson);
  }

  async function renderSecondFactor(
    ctx: Context,
    details: Details,
    userId: string,
    extra: { error?: string; status?: number; recoveryOpen?: boolean; headers?: Record<string, string> } = {},
  ) {
    const factors = await mfa!.factors(userId);
    const hasPasskey = factors.some((f) => f.type === 'webauthn');
    views.render(
      ctx,
      'mfa',
      {
        uid: details.uid,
        csrf: csrf.issue(ctx, details.uid),
        hasTotp: factors.some((f) => f.type === 'totp'),
        hasPasskey,
        error: extra.error,
        recoveryOpen: extra.recoveryOpen === true,
      },
      {
        status: extra.status,
        headers: extra.headers,
        scripts: hasPasskey,
        formTargets: [details.params.redirect_uri as string | undefined],
      },
    );
  }

  /** Groups a base32 secret in fours for reading aloud or typing. */
  const groups = (secret: string) => secret.replace(/(.{4})/g, '$1 ').trim();

  async function renderEnrolment(
    ctx: Context,
    details: Details,
    user: Parameters<MfaService['beginTotp']>[0],
    extra: { enrolment?: string; error?: string; status?: number } = {},
  ) {
    const enrolment =
      (extra.enrolment ? await mfa!.pendingTotp(user, extra.enrolment) : null) ??
      (await mfa!.beginTotp(user));
    views.render(
      ctx,
      'mfa-enrol',
      {
        required: await mfa!.requiredFor(user),
        error: extra.error,
        qrSvg: enrolment.qrSvg,
        secretGroups: groups(enrolment.secret),
        enrolment: enrolment.id,
        action: `/interaction/${details.uid}/mfa/enrol/totp`,
        csrf: csrf.issue(ctx, details.uid),
        passkeyOptions: `/interaction/${details.uid}/mfa/enrol/passkey/options`,
        passkeySubmit: `/interaction/${details.uid}/mfa/enrol/passkey`,
        cancelUrl: `/interaction/${details.uid}/abort`,
      },
      {
        status: extra.status,
        scripts: true,
        formTargets: [details.params.redirect_uri as string | undefined],
      },
    );
  }

  /**
   * After the first factor (`methods`): completes the sign-in, or takes the user to the second
   * factor, or to enrolling one when they must have one (MFA=required, a required role, a client
   * asking for ACR_MFA).
   */
  async function afterFirstFactor(
    ctx: Context,
    details: Details,
    user: Parameters<MfaService['beginTotp']>[0],
    methods: string[],
  ): Promise<void> {
    const step = mfa ? await mfa.nextStep(user, wantsMfa(details)) : 'done';
    if (step === 'done') return completeSignIn(ctx, details, user, methods);
    setMfaState(ctx, details.uid, user.id, methods, step);
    if (step === 'verify') return renderSecondFactor(ctx, details, user.id);
    return renderEnrolment(ctx, details, user);
  }

  /** Renders the outcome of a refused second-factor attempt. */
  function refused(
    ctx: Context,
    details: Details,
    userId: string,
    outcome: { kind: 'invalid' } | { kind: 'locked'; retryAfterS: number },
    recoveryOpen = false,
  ) {
    const t = views.translatorFor(ctx);
    if (outcome.kind === 'locked') {
      return renderSecondFactor(ctx, details, userId, {
        error: t('login.error.locked', { minutes: Math.ceil(outcome.retryAfterS / 60) }),
        status: 429,
        headers: { 'Retry-After': String(outcome.retryAfterS) },
        recoveryOpen,
      });
    }
    return renderSecondFactor(ctx, details, userId, {
      error: t(recoveryOpen ? 'mfa.error.recovery' : 'mfa.error.code'),
      status: 401,
      recoveryOpen,
    });
  }

  const attemptFacts = (ctx: Context) => ({ ...requestOf(ctx), ip_address: ctx.ip });

  router.post('/:uid/mfa/totp', forms, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['verify']);
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const code = field(ctx.request.body, 'code');
    const outcome = await auth.secondFactor(
      user,
      attemptFacts(ctx),
      async () => (await mfa!.verifyTotp(user.id, code)) !== null,
      details.params.client_id as string,
    );
    if (outcome.kind !== 'ok') return refused(ctx, details, user.id, outcome);
    return completeSignIn(ctx, details, user, [...amr, 'otp']);
  });

  router.post('/:uid/mfa/recovery', forms, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['verify']);
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const code = field(ctx.request.body, 'code');
    const outcome = await auth.secondFactor(
      user,
      attemptFacts(ctx),
      () => mfa!.useRecoveryCode(user.id, code),
      details.params.client_id as string,
    );
    if (outcome.kind !== 'ok') return refused(ctx, details, user.id, outcome, true);
    return completeSignIn(ctx, details, user, [...amr, 'otp']);
  });

  /** A JSON answer for the passkey script: an error it shows, with a status. */
  function jsonError(ctx: Context, status: number, message: string) {
    ctx.status = status;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error: message };
  }

  const credentialOf = (body: unknown) => (body as { credential?: unknown } | undefined)?.credential as never;
  const jsonCsrf = (ctx: Context, uid: string) =>
    csrf.verify(ctx, uid, (ctx.request.body as { csrf?: unknown } | undefined)?.csrf);

  router.get('/:uid/mfa/passkey/options', async (ctx) => {
    const details = await load(ctx);
    const { user } = await mfaState(ctx, details, ['verify']);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await mfa!.authenticationOptions(`mfa:${details.uid}`, user);
  });

  router.post('/:uid/mfa/passkey', json, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['verify']);
    if (!jsonCsrf(ctx, details.uid)) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    let method: string | undefined;
    const outcome = await auth.secondFactor(
      user,
      attemptFacts(ctx),
      async () => {
        const assertion = await mfa!.finishAuthentication(
          `mfa:${details.uid}`,
          credentialOf(ctx.request.body),
          (id) => users.get(id).catch(() => null),
        );
        method = assertion?.method;
        return assertion?.user.id === user.id;
      },
      details.params.client_id as string,
    );
    if (outcome.kind === 'locked') {
      return jsonError(ctx, 429, t('login.error.locked', { minutes: Math.ceil(outcome.retryAfterS / 60) }));
    }
    if (outcome.kind !== 'ok' || !method) return jsonError(ctx, 401, t('passkey.failed'));
    return completeSignIn(ctx, details, user, [...amr, method], true);
  });

  /* Enrolment during sign-in (a user who must have a second factor and has none) */

  router.post('/:uid/mfa/enrol/totp', forms, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['enrol']);
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    const enrolment = field(ctx.request.body, 'enrolment');
    let codes: string[] | null = null;
    const outcome = await auth.secondFactor(
      user,
      attemptFacts(ctx),
      async () => {
        const done = await mfa!.confirmTotp(user, enrolment, field(ctx.request.body, 'code'), requestOf(ctx));
        codes = done?.recoveryCodes ?? null;
        return done !== null;
      },
      details.params.client_id as string,
    );
    const t = views.translatorFor(ctx);
    if (outcome.kind === 'locked') {
      return renderEnrolment(ctx, details, user, {
        enrolment,
        error: t('login.error.locked', { minutes: Math.ceil(outcome.retryAfterS / 60) }),
        status: 429,
      });
    }
    if (outcome.kind !== 'ok') {
      return renderEnrolment(ctx, details, user, { enrolment, error: t('mfa.error.code'), status: 400 });
    }
    return enrolled(ctx, details, user.id, [...amr, 'otp'], codes);
  });

  /** A factor was added during sign-in: show the new recovery codes once, then go on. */
  async function enrolled(
    ctx: Context,
    details: Details,
    userId: string,
    methods: string[],
    codes: string[] | null,
    asJson = false,
  ) {
    if (!codes) return completeSignIn(ctx, details, { id: userId }, methods, asJson);
    setMfaState(ctx, details.uid, userId, methods, 'enrolled');
    if (asJson) {
      await mfa!.keepCodesToShow(`interaction:${details.uid}`, codes);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { location: `/interaction/${details.uid}/mfa/codes` };
      return;
    }
    return renderCodes(ctx, details, codes);
  }

  function renderCodes(ctx: Context, details: Details, codes: string[]) {
    views.render(
      ctx,
      'mfa-codes',
      {
        codes,
        continueAction: `/interaction/${details.uid}/mfa/continue`,
        csrf: csrf.issue(ctx, details.uid),
      },
      { formTargets: [details.params.redirect_uri as string | undefined] },
    );
  }

  router.get('/:uid/mfa/enrol/passkey/options', async (ctx) => {
    const details = await load(ctx);
    const { user } = await mfaState(ctx, details, ['enrol']);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await mfa!.registrationOptions(user, `enrol:${details.uid}`);
  });

  router.post('/:uid/mfa/enrol/passkey', json, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['enrol']);
    if (!jsonCsrf(ctx, details.uid)) throw new CsrfFailure();
    const body = ctx.request.body as { name?: unknown } | undefined;
    const done = await mfa!.finishRegistration(
      user,
      `enrol:${details.uid}`,
      credentialOf(ctx.request.body),
      typeof body?.name === 'string' ? body.name : '',
      requestOf(ctx),
    );
    if (!done) return jsonError(ctx, 400, views.translatorFor(ctx)('passkey.failed'));
    const method = done.factor.device_type === 'multiDevice' ? 'swk' : 'hwk';
    return enrolled(ctx, details, user.id, [...amr, method], done.recoveryCodes, true);
  });

  router.get('/:uid/mfa/codes', async (ctx) => {
    const details = await load(ctx);
    await mfaState(ctx, details, ['enrolled']);
    const codes = await mfa!.takeCodesToShow(`interaction:${details.uid}`);
    // Shown once: a reload shows the way on without them.
    renderCodes(ctx, details, codes ?? []);
  });

  router.post('/:uid/mfa/continue', forms, async (ctx) => {
    const details = await load(ctx);
    const { user, amr } = await mfaState(ctx, details, ['enrolled']);
    if (!csrf.verify(ctx, details.uid, field(ctx.request.body, 'csrf'))) throw new CsrfFailure();
    return completeSignIn(ctx, details, user, amr);
  });

  /* Passwordless sign-in with a passkey (discoverable credential, user verification required) */

  router.get('/:uid/passkey/options', async (ctx) => {
    const details = await load(ctx);
    if (!mfa || !signingIn(details)) throw new errors.SessionNotFound('no sign-in pending');
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await mfa.authenticationOptions(`login:${details.uid}`, null);
  });

  router.post('/:uid/passkey', json, async (ctx) => {
    const details = await load(ctx);
    if (!mfa || !signingIn(details)) throw new errors.SessionNotFound('no sign-in pending');
    if (!jsonCsrf(ctx, details.uid)) throw new CsrfFailure();
    const t = views.translatorFor(ctx);
    const assertion = await mfa.finishAuthentication(
      `login:${details.uid}`,
      credentialOf(ctx.request.body),
      (id) => users.get(id).catch(() => null),
    );
    if (!assertion || !assertion.userVerified) return jsonError(ctx, 401, t('passkey.failed'));
    if (registration?.requireVerified && !assertion.user.email_verified) {
      return jsonError(ctx, 403, t('login.error.unverified'));
    }
    // A passkey with user verification is two factors in one (the device, and its PIN or biometric).
    return completeSignIn(ctx, details, assertion.user, [assertion.method, 'mfa'], true);
  });

  router.get('/:uid', async (ctx) => {
    const details = await load(ctx);
    const client = await host.current.Client.find(details.params.client_id as string);
    const name = client?.clientName ?? (details.params.client_id as string);
    // A followed invitation link: this sign-in is for creating the invited account.
    const invitation = signingIn(details) ? await invitationOf(ctx) : null;
    if (invitation) return renderRegister(ctx, details, name, { invitation });
    if (details.prompt.name === 'create' && registration?.open) return renderRegister(ctx, details, name);
    if (details.prompt.name === 'login' && stepUpPending(details)) {
      // Signed in already, with fewer factors than the client asks for: only the second is missing.
      const user = await users.get(details.session!.accountId).catch(() => null);
      if (user && user.status === 'active') {
        const shown = (details.session as { amr?: unknown }).amr;
        return afterFirstFactor(ctx, details, user, Array.isArray(shown) ? (shown as string[]) : ['pwd']);
      }
    }
    if (details.prompt.name === 'login' && deps.sso) {
      const upstream = await deps.sso.hintFor(details.uid, details.params);
      if (upstream) return redirect303(ctx, upstream);
      return renderLogin(ctx, details, name, { sso: await deps.sso.offered() });
    }
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
    // Home-realm discovery: an address whose domain has a connection signs in at its IdP.
    const upstream = email && deps.sso ? await deps.sso.forEmail(details.uid, email) : undefined;
    // Not a redirect: browsers hold the redirects after a form post to the page's form-action, which
    // names only us and the client, never the company's IdP. A page that moves on by itself (a
    // navigation, not a form submission) reaches it.
    if (upstream) return views.render(ctx, 'sso-continue', { refreshTo: upstream });
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
      ...(mfa
        ? { needsSecondFactor: async (user) => (await mfa.nextStep(user, wantsMfa(details))) !== 'done' }
        : {}),
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
        if (result.secondFactor) return afterFirstFactor(ctx, details, result.user, ['pwd']);
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
    if (mfa && (await mfa.nextStep(user, wantsMfa(details))) !== 'done') {
      return afterFirstFactor(ctx, details, user, ['pwd']);
    }
    await auth.completeLogin(user, requestOf(ctx), details.params.client_id as string);
    return finish(ctx, signedIn(userId));
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
