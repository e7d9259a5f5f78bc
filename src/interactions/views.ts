/**
 * Renders the server-side pages (views/*.eta in one shared layout) with the headers every such page
 * needs: no caching, and a strict Content-Security-Policy — no scripts but our own passkey script on
 * the pages that offer passkeys, styles only from our own stylesheet, no framing, and forms allowed to
 * post only to us and to where the flow continues (browsers apply form-action to the redirects that
 * follow a post).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Eta } from 'eta';
import type { Context } from 'koa';

import { loadMessages, type Translate } from './messages.js';

export const VIEWS_DIR = fileURLToPath(new URL('../../views', import.meta.url));

export interface PageOptions {
  status?: number;
  /** Where forms on the page may lead after posting (redirect URIs of the flow), besides ourselves. */
  formTargets?: (string | undefined)[];
  headers?: Record<string, string>;
  /** The page runs /static/passkeys.js (script-src and connect-src 'self'). */
  scripts?: boolean;
}

export interface Views {
  render(ctx: Context, template: string, data: Record<string, unknown>, options?: PageOptions): void;
  translatorFor(ctx: Context): Translate;
  stylesheet: string;
  /** /static/passkeys.js */
  passkeyScript: string;
}

/** A CSP source for a URL a form may end up at: its origin, or its scheme for app URLs (RFC 8252). */
export function formActionSource(url: string | undefined): string | undefined {
  if (!url) return undefined;
  const parsed = URL.parse(url);
  if (!parsed) return undefined;
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return parsed.origin;
  return /^[a-z][a-z0-9+.-]*:$/i.test(parsed.protocol) ? parsed.protocol : undefined;
}

export function createViews(options: { brand: string; dir?: string }): Views {
  const dir = options.dir ?? VIEWS_DIR;
  const eta = new Eta({ views: dir, autoEscape: true, cache: true });
  const messages = loadMessages(join(dir, 'locales'));
  const stylesheet = readFileSync(join(dir, 'static', 'styles.css'), 'utf8');
  const passkeyScript = readFileSync(join(dir, 'static', 'passkeys.js'), 'utf8');

  const translatorFor = (ctx: Context) => messages.forRequest(ctx.get('Accept-Language')).t;

  return {
    stylesheet,
    passkeyScript,
    translatorFor,
    render(ctx, template, data, pageOptions = {}) {
      const { lang, t } = messages.forRequest(ctx.get('Accept-Language'));
      const formAction = [
        "'self'",
        ...new Set(pageOptions.formTargets?.map(formActionSource).filter(Boolean)),
      ];
      ctx.status = pageOptions.status ?? 200;
      ctx.type = 'text/html; charset=utf-8';
      ctx.set('Cache-Control', 'no-store');
      ctx.set('Pragma', 'no-cache');
      ctx.set(
        'Content-Security-Policy',
        [
          "default-src 'none'",
          ...(pageOptions.scripts ? ["script-src 'self'", "connect-src 'self'"] : []),
          "style-src 'self'",
          "img-src 'self' data:",
          `form-action ${formAction.join(' ')}`,
          "frame-ancestors 'none'",
          "base-uri 'none'",
        ].join('; '),
      );
      for (const [name, value] of Object.entries(pageOptions.headers ?? {})) ctx.set(name, value);
      ctx.body = eta.render(template, {
        brand: options.brand,
        lang,
        t,
        title: t(`${template}.title`),
        ...data,
      });
    },
  };
}
