// Passkey ceremonies for the sign-in and account pages. Each control names where to fetch the
// options (JSON from the server) and where to post the result; the server answers { location } to go
// on to, or { error } to show. No third-party code; served from our origin (CSP script-src 'self').
(function () {
  'use strict';
  if (!window.PublicKeyCredential) return;

  function toBytes(value) {
    var base64 = value.replace(/-/g, '+').replace(/_/g, '/');
    var padded = base64 + '==='.slice((base64.length + 3) % 4);
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = '';
    for (var i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function creationOptions(json) {
    var options = Object.assign({}, json, {
      challenge: toBytes(json.challenge),
      user: Object.assign({}, json.user, { id: toBytes(json.user.id) }),
      excludeCredentials: (json.excludeCredentials || []).map(function (c) {
        return Object.assign({}, c, { id: toBytes(c.id) });
      }),
    });
    return options;
  }

  function requestOptions(json) {
    return Object.assign({}, json, {
      challenge: toBytes(json.challenge),
      allowCredentials: (json.allowCredentials || []).map(function (c) {
        return Object.assign({}, c, { id: toBytes(c.id) });
      }),
    });
  }

  function credentialJson(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults
        ? credential.getClientExtensionResults()
        : {},
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) out.response.userHandle = toText(response.userHandle);
    }
    return out;
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(Object.assign({ csrf: csrf }, body)),
    }).then(function (res) {
      return res.json().catch(function () {
        return { error: res.statusText };
      });
    });
  }

  function options(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(
      function (res) {
        if (!res.ok) throw new Error('options ' + res.status);
        return res.json();
      },
    );
  }

  function status(text) {
    var el = document.getElementById('passkey-status');
    if (el) el.textContent = text;
  }

  function finish(result, control) {
    if (result && result.location) {
      window.location.assign(result.location);
      return;
    }
    status((result && result.error) || control.getAttribute('data-failed') || 'Failed');
  }

  function authenticate(control, mediation, signal) {
    return options(control.getAttribute('data-options'))
      .then(function (json) {
        var request = { publicKey: requestOptions(json) };
        if (mediation) request.mediation = mediation;
        if (signal) request.signal = signal;
        return navigator.credentials.get(request);
      })
      .then(function (credential) {
        if (!credential) return null;
        return post(control.getAttribute('data-submit'), control.getAttribute('data-csrf'), {
          credential: credentialJson(credential),
        });
      });
  }

  function register(control) {
    var nameField = document.getElementById(control.getAttribute('data-name-field') || '');
    return options(control.getAttribute('data-options'))
      .then(function (json) {
        return navigator.credentials.create({ publicKey: creationOptions(json) });
      })
      .then(function (credential) {
        return post(control.getAttribute('data-submit'), control.getAttribute('data-csrf'), {
          name: nameField ? nameField.value : '',
          credential: credentialJson(credential),
        });
      });
  }

  var conditional = null;
  document.querySelectorAll('[data-passkey]').forEach(function (control) {
    var kind = control.getAttribute('data-passkey');
    if (kind === 'conditional') {
      conditional = control;
      return;
    }
    control.addEventListener('click', function () {
      control.disabled = true;
      status('');
      if (conditional && conditional.abort) conditional.abort.abort();
      var run = kind === 'register' ? register(control) : authenticate(control);
      run
        .then(function (result) {
          if (result) finish(result, control);
        })
        .catch(function () {
          status(control.getAttribute('data-failed') || 'Failed');
        })
        .then(function () {
          control.disabled = false;
        });
    });
  });

  // Conditional UI: the browser offers this site's passkeys in the email field's autofill.
  if (conditional && PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      conditional.abort = new AbortController();
      authenticate(conditional, 'conditional', conditional.abort.signal)
        .then(function (result) {
          if (result) finish(result, conditional);
        })
        .catch(function () {});
    });
  }
})();
