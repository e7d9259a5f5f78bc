/**
 * The SAML 2.0 service provider (Web Browser SSO profile) of SAML connections, on
 * `@node-saml/node-saml`: our SP metadata per connection, signed AuthnRequests sent with the
 * HTTP-Redirect binding, and the assertion consumer service (HTTP-POST binding). node-saml checks
 * the XML signatures against the IdP's certificates from its metadata (the assertion itself must be
 * signed, `wantAssertionsSigned`: a signed response around an unsigned assertion is refused), the issuer, the audience (our entity ID), NotBefore / NotOnOrAfter with
 * SSO_SAML_CLOCK_SKEW_S, and that InResponseTo names a request we stored. We add what it leaves
 * out: the bearer confirmation's Recipient and the response's Destination must be our ACS URL, and
 * the request is taken once (a counter whose first increment wins, as for the OIDC state), so a
 * replayed response fails on every instance. A response without InResponseTo is IdP-initiated
 * sign-on, which we refuse: nothing ties it to a sign-in that this browser started.
 * What follows a valid assertion (find, link or provision the user, audit) is federation.ts's.
 */
import {
  SAML,
  SamlStatusError,
  ValidateInResponseTo,
  type CacheProvider,
  type Profile,
} from '@node-saml/node-saml';

import type { RequestFacts } from '../services/audit.js';
import type { ArtifactStore, CounterStore, SsoConnection } from '../store/ports.js';
import { protocolOf } from './connections.js';
import {
  FederationError,
  type FederatedSignIn,
  type Federation,
  type FederationFailure,
} from './federation.js';
import type { SamlKeys } from './saml-keys.js';
import { MetadataError, parseXml, type IdpMetadata, type IdpMetadataSource } from './saml-metadata.js';

export const SAML_REQUEST_MODEL = 'SsoSamlRequest';
const REQUEST_TTL_S = 600;
const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
const UNSPECIFIED_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
/** A base64 SAMLResponse larger than this is refused before parsing. */
export const MAX_SAML_RESPONSE_CHARS = 512 * 1024;

interface StoredRequest {
  [key: string]: unknown;
  connection_id: string;
  interaction_uid: string;
  issued_at: string;
}

export interface SamlOptions {
  issuer: string;
  clockSkewS: number;
}

/** The attributes of an assertion as claims: one value stays a value, several stay a list. */
function claimsOf(profile: Profile): Record<string, unknown> {
  const attributes = (profile.attributes ?? {}) as Record<string, unknown>;
  const claims: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(attributes)) {
    claims[name] = Array.isArray(value) && value.length === 1 ? value[0] : value;
  }
  const email =
    profile.email ?? profile.mail ?? (profile.nameIDFormat === EMAIL_FORMAT ? profile.nameID : undefined);
  if (claims.email === undefined && email) claims.email = email;
  claims.sub = profile.nameID;
  return claims;
}

/** The Recipient of the assertion's bearer subject confirmations (node-saml does not check it). */
function recipientsOf(profile: Profile): string[] {
  const assertion = profile.getAssertion?.() as
    | {
        Assertion?: {
          Subject?: {
            SubjectConfirmation?: { SubjectConfirmationData?: { $?: { Recipient?: string } }[] }[];
          }[];
        };
      }
    | undefined;
  const confirmations = assertion?.Assertion?.Subject?.[0]?.SubjectConfirmation ?? [];
  return confirmations
    .map((c) => c.SubjectConfirmationData?.[0]?.$?.Recipient)
    .filter((r): r is string => typeof r === 'string');
}

/** Which refusal a node-saml validation error is. */
function reasonOf(err: unknown): FederationFailure {
  if (err instanceof SamlStatusError) return 'upstream_error';
  const message = err instanceof Error ? err.message : '';
  if (message === 'InResponseTo is missing from response') return 'idp_initiated';
  if (/InResponseTo is not valid|SubjectInResponseTo is not valid/.test(message)) return 'state';
  return 'validation';
}

export class SamlServiceProvider {
  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly counters: CounterStore,
    private readonly keys: SamlKeys,
    private readonly metadata: IdpMetadataSource,
    private readonly federation: Federation,
    private readonly options: SamlOptions,
  ) {}

  entityId(connection: SsoConnection): string {
    return `${this.options.issuer}/sso/saml/${connection.id}/metadata`;
  }

  acsUrl(connection: SsoConnection): string {
    return `${this.options.issuer}/sso/saml/${connection.id}/acs`;
  }

  /** The connection named in a URL, which must be a SAML one. */
  async find(ref: string): Promise<SsoConnection> {
    const connection = await this.federation.find(ref);
    if (protocolOf(connection) !== 'saml') {
      throw new FederationError('unsupported', 'this is not a SAML connection', connection.id);
    }
    return connection;
  }

  private async client(
    connection: SsoConnection,
    idp: IdpMetadata | null,
    cache: CacheProvider,
  ): Promise<SAML> {
    const key = await this.keys.get();
    return new SAML({
      issuer: this.entityId(connection),
      audience: this.entityId(connection),
      callbackUrl: this.acsUrl(connection),
      ...(idp
        ? { entryPoint: idp.ssoRedirectUrl, idpIssuer: idp.entityId, idpCert: idp.signingCerts }
        : { idpCert: (done) => done(new Error('no IdP certificates for this use')) }),
      privateKey: key.privateKeyPem,
      publicCert: key.certificatePem,
      signatureAlgorithm: 'sha256',
      digestAlgorithm: 'sha256',
      authnRequestBinding: 'HTTP-Redirect',
      // The assertion itself must carry a valid signature; a signed envelope alone is not enough
      // (IdPs such as Entra ID sign only the assertion by default, so the response's is optional).
      wantAssertionsSigned: true,
      wantAuthnResponseSigned: false,
      acceptedClockSkewMs: this.options.clockSkewS * 1000,
      validateInResponseTo: ValidateInResponseTo.always,
      requestIdExpirationPeriodMs: REQUEST_TTL_S * 1000,
      cacheProvider: cache,
      identifierFormat: UNSPECIFIED_FORMAT,
      // Asking for a password class would refuse users who sign in at the IdP with a passkey or MFA.
      disableRequestedAuthnContext: true,
    });
  }

  /** Our SP metadata for the connection: entity ID, ACS URL (HTTP-POST), signing certificate. */
  async spMetadata(connection: SsoConnection): Promise<string> {
    const key = await this.keys.get();
    const unused: CacheProvider = {
      saveAsync: () => Promise.resolve(null),
      getAsync: () => Promise.resolve(null),
      removeAsync: () => Promise.resolve(null),
    };
    const client = await this.client(connection, null, unused);
    return client.generateServiceProviderMetadata(null, key.certificatePem);
  }

  private async idpOf(connection: SsoConnection): Promise<IdpMetadata> {
    try {
      return await this.metadata.get(connection);
    } catch (err) {
      if (err instanceof MetadataError) throw new FederationError('discovery', err.message, connection.id);
      throw err;
    }
  }

  /** The IdP URL carrying our signed AuthnRequest for the interaction; stores the request's ID. */
  async start(connection: SsoConnection, interactionUid: string, loginHint?: string): Promise<string> {
    const idp = await this.idpOf(connection);
    const adapter = this.artifacts.adapterFor(SAML_REQUEST_MODEL);
    const cache: CacheProvider = {
      saveAsync: async (id, instant) => {
        const stored: StoredRequest = {
          connection_id: connection.id,
          interaction_uid: interactionUid,
          issued_at: instant,
        };
        await adapter.upsert(id, stored, REQUEST_TTL_S);
        return { value: instant, createdAt: Date.now() };
      },
      getAsync: () => Promise.resolve(null),
      removeAsync: () => Promise.resolve(null),
    };
    const client = await this.client(connection, idp, cache);
    // Entra ID and others prefill their sign-in form from a login_hint query parameter. It is not
    // covered by the redirect binding's signature (SAMLRequest, SigAlg), and only prefills a form.
    return client.getAuthorizeUrlAsync('', undefined, {
      ...(loginHint ? { additionalParams: { login_hint: loginHint } } : {}),
    });
  }

  /**
   * The ACS: validates the posted SAMLResponse for the connection `ref` and signs the user in
   * through federation.ts. Every refusal of a known connection is audited.
   */
  async consume(ref: string, samlResponse: unknown, request: RequestFacts): Promise<FederatedSignIn> {
    const connection = await this.find(ref);
    const fail = async (reason: FederationFailure, message: string): Promise<never> => {
      await this.federation.recordFailure(connection, reason, message, request);
      throw new FederationError(reason, message, connection.id);
    };
    if (typeof samlResponse !== 'string' || !samlResponse || samlResponse.length > MAX_SAML_RESPONSE_CHARS) {
      return fail('validation', 'no SAMLResponse, or one too large');
    }
    let idp: IdpMetadata;
    try {
      idp = await this.idpOf(connection);
    } catch (err) {
      if (err instanceof FederationError) return fail(err.reason, err.message);
      throw err;
    }
    const adapter = this.artifacts.adapterFor(SAML_REQUEST_MODEL);
    const cache: CacheProvider = {
      // Only requests we sent for this connection count; node-saml compares the issue instant.
      getAsync: async (id) => {
        const stored = (await adapter.find(id)) as StoredRequest | undefined;
        return stored?.connection_id === connection.id ? stored.issued_at : null;
      },
      // The request is taken below, atomically, once the response is valid.
      removeAsync: () => Promise.resolve(null),
      saveAsync: () => Promise.resolve(null),
    };
    const client = await this.client(connection, idp, cache);
    let profile: Profile | null;
    try {
      ({ profile } = await client.validatePostResponseAsync({ SAMLResponse: samlResponse }));
    } catch (err) {
      const reason = reasonOf(err);
      const detail = err instanceof Error ? err.message : String(err);
      return fail(
        reason,
        reason === 'idp_initiated'
          ? 'IdP-initiated sign-on (a response to no request of ours) is not accepted'
          : `the SAML response was refused: ${detail}`,
      );
    }
    if (!profile?.nameID) return fail('validation', 'the SAML response carries no assertion with a NameID');
    const recipients = recipientsOf(profile);
    if (recipients.length === 0 || recipients.some((r) => r !== this.acsUrl(connection))) {
      return fail(
        'validation',
        'the assertion is not addressed to our ACS URL (SubjectConfirmationData Recipient)',
      );
    }
    const parsed = await parseXml(Buffer.from(samlResponse, 'base64').toString('utf8')).catch(() => ({}));
    const destination = (parsed as { Response?: { $?: { Destination?: string } } }).Response?.$?.Destination;
    if (destination && destination !== this.acsUrl(connection)) {
      return fail('validation', 'the response is not addressed to our ACS URL (Destination)');
    }
    const stored = await this.take(String(profile.inResponseTo ?? ''));
    if (!stored || stored.connection_id !== connection.id) {
      return fail('state', 'the request this responds to is unknown, expired or was answered already');
    }
    return this.federation.complete(connection, claimsOf(profile), stored.interaction_uid, request);
  }

  /** Takes a stored request once, on any instance: a second take (a replay) finds nothing. */
  private async take(id: string): Promise<StoredRequest | null> {
    if (!id || id.length > 200) return null;
    const adapter = this.artifacts.adapterFor(SAML_REQUEST_MODEL);
    const stored = (await adapter.find(id)) as StoredRequest | undefined;
    if (!stored || typeof stored.interaction_uid !== 'string') return null;
    const taken = await this.counters.increment(`sso-saml-request-used:${id}`, REQUEST_TTL_S);
    if (taken.value !== 1) return null;
    await adapter.destroy(id);
    return stored;
  }
}
