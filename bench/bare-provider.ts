/**
 * The library's ceiling for the protocol benchmark: oidc-provider on its own, with its built-in
 * in-memory adapter and one static confidential client allowed client credentials, nothing of ours
 * in front of it. Run by bench/protocol.ts as a child process (`node bench/bare-provider.ts`) with
 * PORT and the client's credentials in its environment; prints "ready" once it listens.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const clientId = process.env.BARE_CLIENT_ID ?? 'bare-service';
const clientSecret = process.env.BARE_CLIENT_SECRET ?? '';
if (!port || !clientSecret) throw new Error('PORT and BARE_CLIENT_SECRET are required');

// One RS256 signing key, as our server has; without it the library would use its development keys.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bare-1', use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://localhost:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  // Our server's client-credentials token lifetime by default (CLIENT_CREDENTIALS_TTL_S).
  ttl: { ClientCredentials: 3600 },
  jwks: { keys: [jwk as never] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
});

const server = provider.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
