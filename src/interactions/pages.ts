/**
 * Pages oidc-provider renders through us (its error page, the logout confirmation and the signed-out
 * page), and the error boundary of the interaction routes: expired or missing interactions and
 * invalid forms get a friendly page with the request id; nothing internal is shown.
 */
import type { Context, Next } from 'koa';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';

import type { ProviderPages } from '../oidc/provider.js';
import { CsrfFailure } from './router.js';
import { outageFacts } from '../errors/error-middleware.js';
import { isStoreOutage } from '../store/errors.js';
import type { Views } from './views.js';

export function renderFailure(views: Views, ctx: Context, err: unknown, log: Logger): void {
  const t = views.translatorFor(ctx);
  const requestId = String(ctx.state.requestId ?? '');
  if (err instanceof errors.SessionNotFound || (err as { name?: string })?.name === 'SessionNotFound') {
    views.render(
      ctx,
      'error',
      {
        heading: t('error.expired.heading'),
        message: t('error.expired.body'),
        requestId,
      },
      { status: 400 },
    );
    return;
  }
  if (err instanceof CsrfFailure) {
    views.render(
      ctx,
      'error',
      { heading: t('error.csrf.heading'), message: t('error.csrf.body'), requestId },
      { status: 403 },
    );
    return;
  }
  const oauth = err as { expose?: boolean; error?: string; error_description?: string; status?: number };
  if (oauth.error === 'temporarily_unavailable' || isStoreOutage(err)) {
    (ctx.state.log ?? log).warn(outageFacts(err), 'a store did not answer');
    ctx.state.unavailableCause = 'store';
    ctx.set('Retry-After', '1');
    views.render(
      ctx,
      'error',
      { heading: t('error.unavailable.heading'), message: t('error.unavailable.body'), requestId },
      { status: 503 },
    );
    return;
  }
  if (oauth.expose && oauth.error && (oauth.status ?? 500) < 500) {
    views.render(
      ctx,
      'error',
      {
        heading: t('error.heading'),
        message: oauth.error_description ?? t('error.generic'),
        detail: oauth.error,
        requestId,
      },
      { status: oauth.status ?? 400 },
    );
    return;
  }
  log.error({ err }, 'interaction failed');
  views.render(
    ctx,
    'error',
    { heading: t('error.heading'), message: t('error.generic'), requestId },
    { status: 500 },
  );
}

/** Error boundary for the interaction routes. */
export function interactionErrors(views: Views, log: Logger) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      renderFailure(views, ctx, err, ctx.state.log ?? log);
    }
  };
}

/** The action of the provider's device form (its own route), and its CSRF token. */
const actionOf = (form: string) => /action="([^"]+)"/.exec(form)?.[1] ?? '/device';
const xsrfOf = (form: string) => /name="xsrf" value="([^"]*)"/.exec(form)?.[1] ?? '';

export function providerPages(views: Views): ProviderPages {
  return {
    async renderError(ctx: KoaContextWithOIDC, out) {
      const context = ctx as unknown as Context;
      const t = views.translatorFor(context);
      if (out.error === 'temporarily_unavailable') {
        views.render(
          context,
          'error',
          {
            heading: t('error.unavailable.heading'),
            message: t('error.unavailable.body'),
            requestId: String(context.state.requestId ?? ''),
          },
          { status: 503 },
        );
        return;
      }
      views.render(
        context,
        'error',
        {
          heading: t('error.heading'),
          message: out.error_description ?? t('error.generic'),
          detail: out.error,
          requestId: String(context.state.requestId ?? ''),
        },
        { status: ctx.status && ctx.status >= 400 ? ctx.status : 400 },
      );
    },
    async logoutSource(ctx: KoaContextWithOIDC, form: string) {
      views.render(
        ctx as unknown as Context,
        'logout',
        { form, host: ctx.host },
        {
          formTargets: [ctx.oidc.params?.post_logout_redirect_uri as string | undefined],
        },
      );
    },
    async postLogoutSuccessSource(ctx: KoaContextWithOIDC) {
      views.render(ctx as unknown as Context, 'logged-out', { clientName: ctx.oidc.client?.clientName });
    },
    async deviceCodeInput(ctx: KoaContextWithOIDC, form: string, err?: unknown) {
      // The provider's form carries its CSRF token and action; the page's form is ours (a label,
      // no inline handlers), posting the same fields.
      const context = ctx as unknown as Context;
      const t = views.translatorFor(context);
      const name = (err as { name?: string } | undefined)?.name;
      const error = !err
        ? undefined
        : name === 'AbortedError'
          ? t('device.error.aborted')
          : name === 'ExpiredError'
            ? t('device.error.expired')
            : name === 'AlreadyUsedError'
              ? t('device.error.used')
              : name === 'NoCodeError' || name === 'NotFoundError'
                ? t('device.error.wrong')
                : t('error.generic');
      views.render(
        context,
        'device',
        { action: actionOf(form), xsrf: xsrfOf(form), error },
        { status: err ? 400 : 200 },
      );
    },
    async deviceCodeConfirm(ctx: KoaContextWithOIDC, form: string, clientName: string, userCode: string) {
      views.render(ctx as unknown as Context, 'device-confirm', {
        action: actionOf(form),
        xsrf: xsrfOf(form),
        userCode,
        clientName,
      });
    },
    async deviceSuccess(ctx: KoaContextWithOIDC) {
      views.render(ctx as unknown as Context, 'device-done', {
        clientName: ctx.oidc.client?.clientName ?? '',
      });
    },
  };
}
