/* global document, sessionStorage, crypto, location, fetch, TextEncoder, btoa, URLSearchParams */
// The test SPA's start page: discovers the provider, then sends the browser to the authorization
// endpoint with a fresh PKCE verifier (S256), state and nonce kept in sessionStorage for /callback.

const button = document.getElementById('sign-in');
const status = document.getElementById('status');

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

const randomString = () => base64url(crypto.getRandomValues(new Uint8Array(32)));

try {
  const config = await (await fetch('/config.json')).json();
  const discovery = await (await fetch(new URL('/.well-known/openid-configuration', config.issuer))).json();

  button.addEventListener('click', async () => {
    button.disabled = true;
    const verifier = randomString();
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
    const pending = {
      issuer: discovery.issuer,
      tokenEndpoint: discovery.token_endpoint,
      clientId: config.clientId,
      redirectUri: config.redirectUri,
      verifier,
      state: randomString(),
      nonce: randomString(),
    };
    sessionStorage.setItem('latchkey-spa', JSON.stringify(pending));
    const url = new URL(discovery.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: pending.clientId,
      redirect_uri: pending.redirectUri,
      scope: config.scope,
      prompt: 'consent',
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: base64url(new Uint8Array(digest)),
      code_challenge_method: 'S256',
    }).toString();
    location.assign(url.toString());
  });
  button.disabled = false;
} catch (err) {
  status.textContent = `Error: ${err}`;
  status.dataset.state = 'error';
}
