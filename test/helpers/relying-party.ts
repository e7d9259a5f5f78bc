/**
 * A relying party for protocol tests, built on openid-client v6 the way an application would use
 * it: discover the server, send the browser (FormBrowser) to the authorization endpoint, sign in and
 * consent through our HTML forms, and exchange the code. Also turns the errors openid-client throws
 * into the plain OAuth error fields the tests assert.
 */
import * as oidc from 'openid-client';

import type { TestClient } from './fixtures.js';
import { FormBrowser, type Page } from './form-browser.js';

export type ClientAuthKind = 'none' | 'client_secret_basic' | 'client_secret_post';

/** openid-client configured for `client` against the server at `issuer` (plain http on loopback). */
export async function discover(
  issuer: string,
  client: Pick<TestClient, 'clientId' | 'clientSecret'>,
  auth: ClientAuthKind = client.clientSecret ? 'client_secret_basic' : 'none',
  secret = client.clientSecret,
): Promise<oidc.Configuration> {
  const clientAuth =
    auth === 'none'
      ? oidc.None()
      : auth === 'client_secret_post'
        ? oidc.ClientSecretPost(secret)
        : oidc.ClientSecretBasic(secret);
  return oidc.discovery(new URL(issuer), client.clientId, undefined, clientAuth, {
    execute: [oidc.allowInsecureRequests],
  });
}

export interface AuthorizationRequest {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
}

/** An authorization URL with PKCE S256, state and nonce; `params` overrides or removes (undefined) any. */
export async function authorizationRequest(
  config: oidc.Configuration,
  redirectUri: string,
  scope: string,
  params: Record<string, string | undefined> = {},
): Promise<AuthorizationRequest> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const all: Record<string, string | undefined> = {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...params,
  };
  const defined = Object.fromEntries(
    Object.entries(all).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  return { url: oidc.buildAuthorizationUrl(config, defined), verifier, state, nonce };
}

/** Posts the first form of `page` with its hidden fields (CSRF token included) plus `fields`. */
export function submit(browser: FormBrowser, page: Page, fields: Record<string, string>): Promise<Page> {
  const form = FormBrowser.form(page.html);
  return browser.go(form.action, { form: { ...form.fields, ...fields } });
}

export function isLoginPage(page: Page): boolean {
  return page.status === 200 && /action="\/interaction\/[^"]+\/login"/.test(page.html);
}

export function isConsentPage(page: Page): boolean {
  return page.status === 200 && /action="\/interaction\/[^"]+\/consent"/.test(page.html);
}

/**
 * Drives the browser from the authorization URL to the client's redirect URI: the login form when
 * asked (email and password), then the consent form when shown (approved). Returns the redirect
 * (status 0, `url` = where the browser was sent) or the page where the flow stopped.
 */
export async function signIn(
  browser: FormBrowser,
  url: URL | string,
  credentials: { email: string; password: string },
  expect: { consent?: boolean } = {},
): Promise<Page> {
  let page = await browser.go(url.toString());
  if (isLoginPage(page)) page = await submit(browser, page, credentials);
  if (isConsentPage(page)) {
    if (expect.consent === false) throw new Error('the consent page was shown but not expected');
    page = await submit(browser, page, { decision: 'approve' });
  } else if (expect.consent === true && page.status !== 0) {
    throw new Error(`expected the consent page, got ${page.status} at ${page.url}`);
  }
  return page;
}

export type Tokens = Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;

/** The whole code flow: authorize, sign in, consent, exchange; the ID token is checked by openid-client. */
export async function codeFlow(
  config: oidc.Configuration,
  client: Pick<TestClient, 'redirectUri'>,
  user: { email: string; password: string },
  options: { scope?: string; browser?: FormBrowser; params?: Record<string, string | undefined> } = {},
): Promise<{ tokens: Tokens; request: AuthorizationRequest; callback: URL; browser: FormBrowser }> {
  const browser = options.browser ?? new FormBrowser(new URL(config.serverMetadata().issuer).origin);
  const request = await authorizationRequest(
    config,
    client.redirectUri,
    options.scope ?? 'openid',
    options.params,
  );
  const page = await signIn(browser, request.url, user);
  if (page.status !== 0) throw new Error(`sign-in stopped at ${page.url} (${page.status}):\n${page.html}`);
  const callback = new URL(page.url);
  const tokens = await oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
    idTokenExpected: (options.scope ?? 'openid').split(' ').includes('openid'),
  });
  return { tokens, request, callback, browser };
}

export interface OAuthFailure {
  /** The HTTP status, or 0 for an error delivered on the redirect URI. */
  status: number;
  error: string | undefined;
  error_description: string | undefined;
}

/** The OAuth error a rejected openid-client call carries (token-endpoint body, redirect, or WWW-Authenticate). */
export async function oauthFailure(promise: Promise<unknown>): Promise<OAuthFailure> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof oidc.ResponseBodyError) {
      return { status: err.status, error: err.error, error_description: err.error_description };
    }
    if (err instanceof oidc.AuthorizationResponseError) {
      return { status: 0, error: err.error, error_description: err.error_description };
    }
    if (err instanceof oidc.WWWAuthenticateChallengeError) {
      const challenge = err.cause[0];
      return {
        status: err.status,
        error: challenge?.parameters.error,
        error_description: challenge?.parameters.error_description,
      };
    }
    throw err;
  }
  throw new Error('expected the request to fail, but it succeeded');
}
