/**
 * Our SAML service-provider key: one RSA key with a self-signed certificate, signing every
 * AuthnRequest and published in each connection's SP metadata. It lives in the signing-key
 * repository under its own algorithm name (`SAML-SP`, which the OIDC signing-key service ignores, so
 * it never appears in JWKS), its private half sealed with KEY_ENCRYPTION_SECRET like the others.
 * The first instance that needs it creates it; when two create one at once, every instance settles
 * on the older one (each reads the key again every few minutes), so all publish the same certificate. IdPs pin the certificate, so it is not rotated
 * with the OIDC keys (it is valid for 20 years; replacing it is an operator's step).
 */
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';

import { createPrivateKey, webcrypto, type JsonWebKey } from 'node:crypto';

import * as x509 from '@peculiar/x509';

import type { KeyCipher } from '../oidc/keys/key-cipher.js';
import type { JsonObject, SigningKeyRecord, SigningKeyRepository } from '../store/ports.js';

export const SAML_SP_KEY_ALG = 'SAML-SP';
const VALIDITY_YEARS = 20;

export interface SamlSpKey {
  /** PKCS#8 PEM of the private key (for node-saml's request signing). */
  privateKeyPem: string;
  /** PEM of the self-signed certificate. */
  certificatePem: string;
}

const byAge = (a: SigningKeyRecord, b: SigningKeyRecord) =>
  a.created_at.getTime() - b.created_at.getTime() || a.kid.localeCompare(b.kid);

/**
 * How long an instance keeps the key it read before reading again: two instances that created a
 * key at the same moment on first use agree on the older one within this time.
 */
const RELOAD_MS = 5 * 60_000;

export class SamlKeys {
  private loaded?: Promise<SamlSpKey>;
  private loadedAt = 0;

  constructor(
    private readonly repo: SigningKeyRepository,
    private readonly cipher: KeyCipher,
    private readonly commonName: string,
  ) {}

  /** The key, created on first use; a failed load is retried on the next call. */
  get(): Promise<SamlSpKey> {
    if (!this.loaded || Date.now() - this.loadedAt >= RELOAD_MS) {
      this.loadedAt = Date.now();
      this.loaded = this.load().catch((err: unknown) => {
        this.loaded = undefined;
        throw err;
      });
    }
    return this.loaded;
  }

  private async oldest(): Promise<SigningKeyRecord | undefined> {
    return (await this.repo.list()).filter((r) => r.alg === SAML_SP_KEY_ALG).sort(byAge)[0];
  }

  private async load(): Promise<SamlSpKey> {
    const record = (await this.oldest()) ?? (await this.create(), await this.oldest());
    if (!record) throw new Error('the SAML service-provider key could not be stored');
    const privateJwk = JSON.parse(
      this.cipher.decrypt(record.private_jwk_encrypted, record.kid),
    ) as JsonObject;
    const x5c = (record.public_jwk.x5c as string[] | undefined)?.[0];
    if (!x5c) throw new Error(`the SAML service-provider key ${record.kid} has no certificate`);
    return {
      privateKeyPem: createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' })
        .export({ type: 'pkcs8', format: 'pem' })
        .toString(),
      certificatePem: new x509.X509Certificate(Buffer.from(x5c, 'base64')).toString('pem'),
    };
  }

  private async create(): Promise<void> {
    const algorithm = {
      name: 'RSASSA-PKCS1-v1_5',
      hash: 'SHA-256',
      publicExponent: new Uint8Array([1, 0, 1]),
      modulusLength: 2048,
    };
    // @peculiar/x509 declares the DOM's WebCrypto types; node's are the same objects.
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as Parameters<
      typeof x509.X509CertificateGenerator.createSelfSigned
    >[0]['keys'];
    const now = new Date();
    const notAfter = new Date(now);
    notAfter.setUTCFullYear(now.getUTCFullYear() + VALIDITY_YEARS);
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
          .toString('hex')
          .replace(/^[89a-f]/, '1'),
        name: [{ CN: [this.commonName] }],
        notBefore: now,
        notAfter,
        signingAlgorithm: algorithm,
        keys,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        ],
      },
      webcrypto as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1],
    );
    const publicJwk = await webcrypto.subtle.exportKey('jwk', keys.publicKey as webcrypto.CryptoKey);
    const privateJwk = await webcrypto.subtle.exportKey('jwk', keys.privateKey as webcrypto.CryptoKey);
    const kid = `saml-sp-${cert.serialNumber}`;
    await this.repo.create({
      kid,
      alg: SAML_SP_KEY_ALG,
      use: 'sig',
      status: 'current',
      public_jwk: {
        kty: publicJwk.kty!,
        n: publicJwk.n!,
        e: publicJwk.e!,
        kid,
        x5c: [Buffer.from(cert.rawData).toString('base64')],
      },
      private_jwk_encrypted: this.cipher.encrypt(JSON.stringify(privateJwk), kid),
      created_at: now,
      activates_at: now,
    });
  }
}
