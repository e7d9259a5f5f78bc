/**
 * The IdP side of a SAML connection, read from its metadata (`metadata_xml`, or `metadata_url`
 * fetched through the guarded outbound client): the IdP's entity ID, its HTTP-Redirect sign-in
 * location, and every signing certificate it lists (several during a certificate rollover, all
 * accepted). Fetched metadata is kept per connection and fetched again once it is older than
 * SSO_SAML_METADATA_REFRESH_S; when a refresh fails, the previous metadata keeps serving (and the
 * failure is logged) so an IdP's short outage does not stop sign-ins.
 */
import type { Logger } from 'pino';
import { parseStringPromise, processors } from 'xml2js';

import { outboundRequest } from '../http/outbound.js';
import type { SsoConnection } from '../store/ports.js';
import type { UpstreamHttpOptions } from './upstream-fetch.js';

const REDIRECT_BINDING = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const MAX_METADATA_BYTES = 1024 * 1024;

export interface IdpMetadata {
  entityId: string;
  ssoRedirectUrl: string;
  /** PEM certificates the IdP signs with. */
  signingCerts: string[];
}

export class MetadataError extends Error {
  override readonly name = 'MetadataError';
}

/** An element as xml2js gives it (prefixes stripped): attributes under `$`, children as lists. */
interface Element {
  $?: Record<string, string>;
  _?: string;
  [child: string]: unknown;
}

const children = (e: Element | undefined, name: string): Element[] =>
  Array.isArray(e?.[name])
    ? (e[name] as (Element | string)[]).map((c) => (typeof c === 'string' ? { _: c } : c))
    : [];

const pem = (base64: string) =>
  `-----BEGIN CERTIFICATE-----\n${(base64.replace(/\s+/g, '').match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----`;

/** Parses XML with namespace prefixes stripped from element names; throws MetadataError. */
export async function parseXml(xml: string): Promise<Record<string, Element>> {
  try {
    return (await parseStringPromise(xml, {
      tagNameProcessors: [processors.stripPrefix],
      explicitRoot: true,
      explicitArray: true,
    })) as Record<string, Element>;
  } catch (err) {
    throw new MetadataError(`the metadata is not well-formed XML: ${(err as Error).message}`);
  }
}

/** Reads the parts of an IdP's metadata we use; throws MetadataError naming what is missing. */
export async function parseIdpMetadata(xml: string): Promise<IdpMetadata> {
  const doc = await parseXml(xml);
  const entities = doc.EntityDescriptor
    ? [doc.EntityDescriptor]
    : children(doc.EntitiesDescriptor, 'EntityDescriptor');
  for (const entity of entities) {
    const idp = children(entity, 'IDPSSODescriptor')[0];
    if (!idp) continue;
    const entityId = entity.$?.entityID ?? '';
    const redirect = children(idp, 'SingleSignOnService').find((s) => s.$?.Binding === REDIRECT_BINDING);
    const signingCerts = children(idp, 'KeyDescriptor')
      .filter((k) => !k.$?.use || k.$.use === 'signing')
      .flatMap((k) => children(k, 'KeyInfo'))
      .flatMap((i) => children(i, 'X509Data'))
      .flatMap((d) => children(d, 'X509Certificate'))
      .map((c) => (c._ ?? '').trim())
      .filter((c) => c.length > 0)
      .map(pem);
    if (!entityId) throw new MetadataError('the IdP metadata has no entityID');
    if (!redirect?.$?.Location)
      throw new MetadataError('the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding');
    if (signingCerts.length === 0) throw new MetadataError('the IdP metadata lists no signing certificate');
    return { entityId, ssoRedirectUrl: redirect.$.Location, signingCerts: [...new Set(signingCerts)] };
  }
  throw new MetadataError('the metadata describes no identity provider (IDPSSODescriptor)');
}

interface Cached {
  key: string;
  fetchedAt: number;
  metadata: Promise<IdpMetadata>;
  settled?: IdpMetadata;
}

export class IdpMetadataSource {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly options: {
      http: UpstreamHttpOptions;
      refreshS: number;
      log?: Logger;
      /** Milliseconds since the epoch (tests move it). */
      now?: () => number;
    },
  ) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** The connection's IdP metadata, fetched or refreshed when due. */
  get(connection: SsoConnection): Promise<IdpMetadata> {
    if (connection.metadata_xml) {
      // Inline metadata changes only with the connection; parsing it is cheap.
      return parseIdpMetadata(connection.metadata_xml);
    }
    const key = `${connection.metadata_url}|${connection.updated_at.getTime()}`;
    const cached = this.cache.get(connection.id);
    const due =
      !cached || cached.key !== key || this.now() - cached.fetchedAt >= this.options.refreshS * 1000;
    if (!due) return cached.metadata;
    const previous = cached?.key === key ? cached.settled : undefined;
    const entry: Cached = {
      key,
      fetchedAt: this.now(),
      metadata: this.fetch(connection.metadata_url!).then(
        (metadata) => {
          entry.settled = metadata;
          return metadata;
        },
        (err: unknown) => {
          if (previous) {
            this.options.log?.warn(
              { connection: connection.id, err: (err as Error).message },
              'SAML metadata refresh failed; the previous metadata stays in use',
            );
            entry.settled = previous;
            return previous;
          }
          this.cache.delete(connection.id);
          throw err;
        },
      ),
    };
    this.cache.set(connection.id, entry);
    return entry.metadata;
  }

  private async fetch(url: string): Promise<IdpMetadata> {
    const res = await outboundRequest(url, {
      method: 'GET',
      headers: { accept: 'application/samlmetadata+xml, application/xml, text/xml' },
      allowHttp: this.options.http.allowHttp,
      allowPrivateNetworks: this.options.http.allowPrivateNetworks,
      timeoutMs: this.options.http.timeoutMs,
      maxBodyBytes: MAX_METADATA_BYTES,
      ...(this.options.http.lookup ? { lookup: this.options.http.lookup } : {}),
    }).catch((err: unknown) => {
      throw new MetadataError(`the metadata could not be fetched: ${(err as Error).message}`);
    });
    if (res.status !== 200) throw new MetadataError(`the metadata URL answered ${res.status}`);
    return parseIdpMetadata(res.body.toString('utf8'));
  }
}
