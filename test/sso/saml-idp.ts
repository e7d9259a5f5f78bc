/**
 * A real SAML 2.0 identity provider for the tests: samlify's IdP with its own generated key and
 * self-signed certificate, its metadata served over HTTP. The test plays the person at the IdP:
 * `receive` parses and checks (our signature included) the AuthnRequest the browser carried, and
 * `respond` has samlify build and sign the login response to it, from a template the test may alter
 * (expiry, audience, InResponseTo) the way a misbehaving or hostile IdP would.
 */
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';

import { webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';

import * as x509 from '@peculiar/x509';

/** The part of samlify the tests use (its own types pull the DOM library into the whole project). */
interface SamlifyEntity {
  entityMeta: { getEntityID(): string };
}
interface Samlify {
  setSchemaValidator(validator: { validate(xml: string): Promise<string> }): void;
  Constants: { namespace: { binding: { redirect: string } } };
  IdentityProvider(options: Record<string, unknown>): SamlifyEntity & {
    getMetadata(): string;
    parseLoginRequest(
      sp: SamlifyEntity,
      binding: 'redirect',
      request: { query: Record<string, string>; octetString: string },
    ): Promise<{ extract: { request: { id: string }; issuer: string } }>;
    createLoginResponse(
      sp: SamlifyEntity,
      requestInfo: null,
      binding: 'post',
      user: { email: string },
      options: { customTagReplacement(template: string): { id: string; context: string } },
    ): Promise<{ context: string }>;
  };
  ServiceProvider(options: Record<string, unknown>): SamlifyEntity;
}
const samlify = createRequire(import.meta.url)('samlify') as Samlify;

// samlify wants an XML schema validator before it parses messages; the IdP side of the test
// trusts the AuthnRequest's shape (node-saml builds it) and checks its signature.
samlify.setSchemaValidator({ validate: () => Promise.resolve('skipped') });

const REDIRECT = samlify.Constants.namespace.binding.redirect;
const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';

export interface SamlUser {
  nameId: string;
  attributes: Record<string, string>;
}

export interface ResponseOptions {
  /** Changes the response template before the values go in (a missing InResponseTo, say). */
  template?: (xml: string) => string;
  /** Overrides of the template values (Audience, ConditionsNotOnOrAfter, InResponseTo, ...). */
  values?: Record<string, string>;
  /** Sign only the response, not the assertion (our metadata asks for signed assertions). */
  unsignedAssertion?: boolean;
}

export interface SamlIdp {
  entityId: string;
  metadataUrl: string;
  metadataXml: string;
  /** The AuthnRequest at the IdP's sign-in URL: its ID, after samlify verified our signature. */
  receive(url: string, spMetadata: string): Promise<{ id: string; issuer: string }>;
  /** A base64 SAMLResponse for the request `requestId` (signed as options say). */
  respond(spMetadata: string, requestId: string, user: SamlUser, options?: ResponseOptions): Promise<string>;
  /** Who signs in when a browser brings a request to the IdP's sign-in URL (for that SP). */
  signInAs(spMetadata: string, user: SamlUser): void;
  close(): Promise<void>;
}

export async function keyAndCertificate(): Promise<{ privateKey: string; cert: string }> {
  const algorithm = {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-256',
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '0a1b2c',
      name: [{ CN: ['Test SAML IdP'] }],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      signingAlgorithm: algorithm,
      keys,
    },
    webcrypto as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1],
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return {
    privateKey: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`,
    cert: cert.toString('pem'),
  };
}

const attributeStatement = (attributes: Record<string, string>) =>
  `<saml:AttributeStatement>${Object.entries(attributes)
    .map(
      ([name, value]) =>
        `<saml:Attribute Name="${name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">${value}</saml:AttributeValue></saml:Attribute>`,
    )
    .join('')}</saml:AttributeStatement>`;

/**
 * `host` is the name in the IdP's URLs (it listens on 127.0.0.1): a browser test maps another name
 * there, so that the IdP is another site than ours and its form post to our ACS is cross-site.
 */
export async function startSamlIdp(port: number, host = '127.0.0.1'): Promise<SamlIdp> {
  const origin = `http://${host}:${port}`;
  const entityId = `${origin}/metadata`;
  const { privateKey, cert } = await keyAndCertificate();
  const idp = samlify.IdentityProvider({
    entityID: entityId,
    privateKey,
    signingCert: cert,
    wantAuthnRequestsSigned: true,
    nameIDFormat: [EMAIL_FORMAT],
    singleSignOnService: [{ Binding: REDIRECT, Location: `${origin}/sso` }],
  });
  const metadataXml = idp.getMetadata();
  let signIn: { spMetadata: string; user: SamlUser } | undefined;
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/sso?') && signIn) {
      // The person's step at the IdP, for a browser: the request checked, the response in a form
      // that posts itself to the ACS (the HTTP-POST binding as IdPs implement it).
      const { spMetadata, user } = signIn;
      void (async () => {
        const { id } = await api.receive(`${origin}${req.url}`, spMetadata);
        const response = await api.respond(spMetadata, id, user);
        const acs = /<(?:\w+:)?AssertionConsumerService[^>]*Location="([^"]+)"/.exec(spMetadata)![1]!;
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(
          `<!doctype html><title>IdP</title><form method="post" action="${acs}"><input type="hidden" name="SAMLResponse" value="${response}"></form><script>document.forms[0].submit()</script>`,
        );
      })().catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
      });
      return;
    }
    if (req.url === '/metadata') {
      res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' });
      res.end(metadataXml);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));

  const spOf = (metadata: string, unsignedAssertion = false) =>
    samlify.ServiceProvider({
      metadata: unsignedAssertion
        ? metadata.replace('WantAssertionsSigned="true"', 'WantAssertionsSigned="false"')
        : metadata,
      ...(unsignedAssertion ? { wantMessageSigned: true } : {}),
    });

  const api: SamlIdp = {
    entityId,
    metadataUrl: entityId,
    metadataXml,
    async receive(url, spMetadata) {
      const target = new URL(url);
      // What the signature of the HTTP-Redirect binding covers: the parameters as sent, in order.
      const octetString = target.search
        .slice(1)
        .split('&')
        .filter((p) => /^(SAMLRequest|RelayState|SigAlg)=/.test(p))
        .join('&');
      const parsed = await idp.parseLoginRequest(spOf(spMetadata), 'redirect', {
        query: Object.fromEntries(target.searchParams),
        octetString,
      });
      return { id: parsed.extract.request.id, issuer: parsed.extract.issuer };
    },
    async respond(spMetadata, requestId, user, options = {}) {
      const sp = spOf(spMetadata, options.unsignedAssertion);
      // Where our metadata says to post (one HTTP-POST consumer service).
      const acs = /<(?:\w+:)?AssertionConsumerService[^>]*Location="([^"]+)"/.exec(spMetadata)![1]!;
      const now = new Date();
      const later = new Date(now.getTime() + 5 * 60_000);
      const values: Record<string, string> = {
        ID: `_${webcrypto.randomUUID()}`,
        AssertionID: `_${webcrypto.randomUUID()}`,
        Destination: acs,
        Audience: sp.entityMeta.getEntityID(),
        SubjectRecipient: acs,
        Issuer: entityId,
        IssueInstant: now.toISOString(),
        StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
        ConditionsNotBefore: now.toISOString(),
        ConditionsNotOnOrAfter: later.toISOString(),
        SubjectConfirmationDataNotOnOrAfter: later.toISOString(),
        NameIDFormat: EMAIL_FORMAT,
        NameID: user.nameId,
        InResponseTo: requestId,
        AuthnStatement: `<saml:AuthnStatement AuthnInstant="${now.toISOString()}" SessionIndex="_s${Date.now()}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`,
        AttributeStatement: attributeStatement(user.attributes),
        ...options.values,
      };
      const { context } = await idp.createLoginResponse(
        sp,
        null,
        'post',
        { email: user.nameId },
        {
          customTagReplacement: (template: string) => {
            const xml = (options.template ?? ((t: string) => t))(template).replace(
              /\{(\w+)\}/g,
              (_, tag: string) => values[tag] ?? '',
            );
            return { id: values.ID!, context: xml };
          },
        },
      );
      return context;
    },
    signInAs(spMetadata, user) {
      signIn = { spMetadata, user };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return api;
}
