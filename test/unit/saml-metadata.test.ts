/**
 * SAML IdP metadata (src/sso/saml-metadata.ts): what we take from it (entity ID, HTTP-Redirect
 * sign-in URL, every signing certificate, not encryption ones), the refusals that name what is
 * missing, and the refresh of fetched metadata: kept for SSO_SAML_METADATA_REFRESH_S, fetched again
 * after it (new certificates picked up), the previous metadata kept when a refresh fails, refetched
 * at once when the connection changes; through the guarded client, so loopback needs the opt-in.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { IdpMetadataSource, parseIdpMetadata } from '../../src/sso/saml-metadata.js';
import type { SsoConnection } from '../../src/store/ports.js';

const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';

const keyDescriptor = (cert: string, use?: string) =>
  `<md:KeyDescriptor${use ? ` use="${use}"` : ''}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`;

function metadata(certs: string[], options: { redirect?: boolean; encryption?: string } = {}) {
  return `<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example/entity">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    ${certs.map((c, i) => keyDescriptor(c, i === 0 ? 'signing' : undefined)).join('')}
    ${options.encryption ? keyDescriptor(options.encryption, 'encryption') : ''}
    <md:SingleSignOnService Binding="${POST}" Location="https://idp.example/post"/>
    ${options.redirect === false ? '' : `<md:SingleSignOnService Binding="${REDIRECT}" Location="https://idp.example/redirect"/>`}
  </md:IDPSSODescriptor>
</md:EntityDescriptor>`;
}

const body = (pem: string) => pem.split('\n').slice(1, -1).join('');

describe('parseIdpMetadata', () => {
  it('takes the entity ID, the HTTP-Redirect location and every signing certificate', async () => {
    const parsed = await parseIdpMetadata(metadata(['QUFBQQ==', 'QkJCQg=='], { encryption: 'Q0NDQw==' }));
    expect(parsed.entityId).toBe('https://idp.example/entity');
    expect(parsed.ssoRedirectUrl).toBe('https://idp.example/redirect');
    expect(parsed.signingCerts.map(body)).toEqual(['QUFBQQ==', 'QkJCQg==']);
    expect(parsed.signingCerts[0]).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
  });

  it('finds the IdP inside an EntitiesDescriptor', async () => {
    const inner = metadata(['QUFBQQ==']).replace('<?xml version="1.0"?>', '');
    const parsed = await parseIdpMetadata(
      `<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">${inner}</md:EntitiesDescriptor>`,
    );
    expect(parsed.entityId).toBe('https://idp.example/entity');
  });

  it('names what is missing or broken', async () => {
    await expect(parseIdpMetadata('<md:EntityDescriptor')).rejects.toThrow(/not well-formed XML/);
    await expect(parseIdpMetadata('<EntityDescriptor/>')).rejects.toThrow(/describes no identity provider/);
    await expect(parseIdpMetadata(metadata(['QUFBQQ=='], { redirect: false }))).rejects.toThrow(
      /no SingleSignOnService with the HTTP-Redirect binding/,
    );
    await expect(parseIdpMetadata(metadata([], { encryption: 'Q0NDQw==' }))).rejects.toThrow(
      /lists no signing certificate/,
    );
  });
});

describe('IdpMetadataSource', () => {
  let server: Server;
  let url: string;
  let served: { status: number; xml: string };
  let fetches = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches += 1;
      res.writeHead(served.status, { 'content-type': 'application/samlmetadata+xml' }).end(served.xml);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metadata`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const connection = (updatedAt = new Date(0)): SsoConnection =>
    ({ id: 'sso_test', metadata_url: url, metadata_xml: null, updated_at: updatedAt }) as SsoConnection;

  it('refreshes after the interval, keeps the previous metadata when a refresh fails', async () => {
    let now = 1_000_000;
    const source = new IdpMetadataSource({
      http: { allowHttp: true, allowPrivateNetworks: true, timeoutMs: 2000 },
      refreshS: 60,
      now: () => now,
    });
    served = { status: 200, xml: metadata(['QUFBQQ==']) };
    fetches = 0;
    expect((await source.get(connection())).signingCerts.map(body)).toEqual(['QUFBQQ==']);
    // The IdP adds a certificate: not seen until the interval has passed.
    served = { status: 200, xml: metadata(['QUFBQQ==', 'QkJCQg==']) };
    now += 59_000;
    expect((await source.get(connection())).signingCerts).toHaveLength(1);
    expect(fetches).toBe(1);
    now += 1_000;
    expect((await source.get(connection())).signingCerts.map(body)).toEqual(['QUFBQQ==', 'QkJCQg==']);
    expect(fetches).toBe(2);
    // The IdP is down at the next refresh: the metadata we had keeps serving.
    served = { status: 503, xml: '' };
    now += 60_000;
    expect((await source.get(connection())).signingCerts).toHaveLength(2);
    expect(fetches).toBe(3);
    // A changed connection fetches at once, and without earlier metadata a failure is an error.
    await expect(source.get(connection(new Date(1)))).rejects.toThrow('the metadata URL answered 503');
    expect(fetches).toBe(4);
  });

  it('goes through the SSRF guard: loopback is refused without the opt-in', async () => {
    const source = new IdpMetadataSource({
      http: { allowHttp: true, allowPrivateNetworks: false, timeoutMs: 2000 },
      refreshS: 60,
    });
    fetches = 0;
    await expect(source.get(connection())).rejects.toThrow(
      /could not be fetched: .*(loopback|blocked|private)/i,
    );
    expect(fetches).toBe(0);
  });
});
