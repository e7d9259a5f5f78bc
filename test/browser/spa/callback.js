/* global document, sessionStorage, location, history, fetch, atob, URLSearchParams */
// The test SPA's redirect URI: checks state, issuer and nonce, exchanges the code at the token
// endpoint with fetch (a cross-origin request, so the provider's CORS must allow this origin), and
// writes the token response into the page.

const status = document.getElementById('status');
const output = document.getElementById('tokens');

function finish(state, text) {
  status.textContent = text;
  status.dataset.state = state;
}

function jwtPayload(jwt) {
  const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(atob(part));
}

async function exchange() {
  const params = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem('latchkey-spa') ?? 'null');
  sessionStorage.removeItem('latchkey-spa');
  // The code is single-use and should not linger in the address bar or history.
  history.replaceState(null, '', location.pathname);
  if (!pending) return finish('error', 'Error: no sign-in was started here');
  if (params.has('error')) {
    return finish('error', `Error: ${params.get('error')}: ${params.get('error_description') ?? ''}`);
  }
  if (params.get('state') !== pending.state) return finish('error', 'Error: state mismatch');
  if (params.get('iss') !== pending.issuer) return finish('error', 'Error: issuer mismatch');

  const response = await fetch(pending.tokenEndpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code') ?? '',
      redirect_uri: pending.redirectUri,
      client_id: pending.clientId,
      code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json();
  output.textContent = JSON.stringify(tokens, null, 2);
  if (!response.ok) return finish('error', `Error: token endpoint answered ${response.status}`);
  if (typeof tokens.id_token !== 'string' || jwtPayload(tokens.id_token).nonce !== pending.nonce) {
    return finish('error', 'Error: nonce mismatch');
  }
  return finish('done', 'Signed in');
}

exchange().catch((err) => finish('error', `Error: ${err}`));
