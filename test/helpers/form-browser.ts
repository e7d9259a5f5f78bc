/**
 * A minimal cookie-keeping HTTP "browser" for protocol tests: follows redirects on our own origin,
 * stops at the first redirect leaving it (the relying party's callback), and submits the login and
 * consent forms the way a person's browser would (including their CSRF token).
 */
export interface Page {
  url: string;
  status: number;
  html: string;
  headers: Headers;
}

export class FormBrowser {
  private readonly cookies = new Map<string, string>();
  /** Every request made, as `METHOD path` (same origin) in order, redirects included. */
  readonly visited: string[] = [];

  constructor(private readonly origin: string) {}

  private store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  hasCookie(name: string): boolean {
    return this.cookies.has(name);
  }

  /**
   * Requests `url` and follows same-origin redirects. Returns the final page, or the off-origin
   * redirect target (the client's redirect URI) as `url` with status 0 and no body.
   */
  async go(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Page> {
    let next = new URL(url, this.origin).toString();
    let method = init.method ?? (init.form ? 'POST' : 'GET');
    let body: string | undefined = init.form ? new URLSearchParams(init.form).toString() : undefined;
    for (let hops = 0; hops < 20; hops += 1) {
      this.visited.push(`${method} ${new URL(next).pathname}`);
      const res = await fetch(next, {
        method,
        redirect: 'manual',
        headers: {
          // What browsers send on navigation; oidc-provider answers errors as HTML only to this.
          accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
          cookie: this.cookieHeader(),
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
        body,
      });
      this.store(res);
      const location = res.headers.get('location');
      const redirected = res.status >= 300 && res.status < 400 && location;
      const html = redirected ? '' : await res.text();
      // A redirect, or a page that moves on by itself (<meta http-equiv="refresh" content="0;url=…">),
      // followed as browsers do.
      const refresh =
        res.status === 200
          ? /<meta http-equiv="refresh" content="0;url=([^"]+)">/i.exec(html)?.[1]
          : undefined;
      const onward = redirected ? location : refresh?.replaceAll('&amp;', '&');
      if (onward) {
        const target = new URL(onward, next);
        if (target.origin !== new URL(this.origin).origin) {
          return { url: target.toString(), status: 0, html: '', headers: res.headers };
        }
        next = target.toString();
        method = 'GET';
        body = undefined;
        continue;
      }
      return { url: next, status: res.status, html, headers: res.headers };
    }
    throw new Error('too many redirects');
  }

  /** The action and hidden fields of the first form on a page. */
  static form(html: string): { action: string; fields: Record<string, string> } {
    const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
    if (!form) throw new Error(`no form on page:\n${html.slice(0, 500)}`);
    const fields: Record<string, string> = {};
    for (const input of form[2]!.matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
      const name = /name="([^"]+)"/.exec(input[0])?.[1];
      const value = /value="([^"]*)"/.exec(input[0])?.[1];
      if (name) fields[name] = decodeEntities(value ?? '');
    }
    return { action: decodeEntities(form[1]!), fields };
  }
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}
