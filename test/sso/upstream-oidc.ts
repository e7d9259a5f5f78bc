/**
 * A real upstream OpenID provider for single sign-on tests: a bare oidc-provider (the same package
 * the server uses, someone else's code) with its development sign-in pages, on a loopback port.
 * Any login name signs in; the claims are those of `accounts[login]`, changeable between tests.
 */
import { createServer, type Server } from 'node:http';

import Provider from 'oidc-provider';

export interface UpstreamAccount {
  email?: string;
  email_verified?: boolean;
  given_name?: string;
  family_name?: string;
  department?: string;
}

export interface Upstream {
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Map<string, UpstreamAccount>;
  close(): Promise<void>;
}

export async function startUpstream(port: number, redirectUris: string[]): Promise<Upstream> {
  const issuer = `http://127.0.0.1:${port}`;
  const accounts = new Map<string, UpstreamAccount>();
  const clientId = 'latchkey-at-upstream';
  const clientSecret = 'upstream-client-secret-0123456789';
  // The upstream's start-up notices (development keys and pages) are not this test's output.
  const { warn, info } = console;
  console.warn = () => undefined;
  console.info = () => undefined;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['given_name', 'family_name', 'department'],
    },
    cookies: { keys: ['upstream-test-cookie-key-0123456789'] },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, sub) {
      const account = accounts.get(sub) ?? {};
      return {
        accountId: sub,
        async claims() {
          return { sub, ...account };
        },
      };
    },
  });
  console.warn = warn;
  console.info = info;
  const server: Server = createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    issuer,
    clientId,
    clientSecret,
    accounts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
