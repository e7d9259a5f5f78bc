/**
 * Home-realm discovery for the sign-in page: where an interaction's sign-in goes instead of the
 * password form. `idp_hint` (a connection id or domain) or a `login_hint` whose domain has a
 * connection goes straight to /sso/login/{connection}; so does an e-mail typed into the form.
 */
import type { SsoConnections } from './connections.js';
import type { SsoConnection } from '../store/ports.js';

export interface SignInRedirects {
  /** Whether any connection is enabled (the page then says company accounts need no password). */
  offered(): Promise<boolean>;
  /** Where the interaction goes at once for its authorization parameters, if anywhere. */
  hintFor(uid: string, params: Record<string, unknown>): Promise<string | undefined>;
  /** Where a typed e-mail address goes, if its domain has a connection. */
  forEmail(uid: string, email: string): Promise<string | undefined>;
}

const loginUrl = (c: SsoConnection, uid: string, email?: string) => {
  const q = new URLSearchParams({ interaction: uid, ...(email ? { login_hint: email } : {}) });
  return `/sso/login/${encodeURIComponent(c.id)}?${q.toString()}`;
};

const usable = (c: SsoConnection | null): c is SsoConnection => c !== null && c.enabled;

export function signInRedirects(connections: SsoConnections): SignInRedirects {
  return {
    offered: () => connections.anyEnabled(),
    async hintFor(uid, params) {
      const idp = typeof params.idp_hint === 'string' ? params.idp_hint.slice(0, 300) : '';
      if (idp) {
        const byId = await connections.get(idp).catch(() => null);
        const found = byId ?? (await connections.forEmail(`x@${idp}`));
        if (usable(found)) return loginUrl(found, uid);
      }
      const hint = typeof params.login_hint === 'string' ? params.login_hint.slice(0, 320) : '';
      if (hint.includes('@')) {
        const found = await connections.forEmail(hint);
        if (usable(found)) return loginUrl(found, uid, hint);
      }
      return undefined;
    },
    async forEmail(uid, email) {
      const found = await connections.forEmail(email);
      return usable(found) ? loginUrl(found, uid, email) : undefined;
    },
  };
}
