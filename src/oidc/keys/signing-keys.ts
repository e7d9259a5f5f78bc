/**
 * Signing keys shared by every instance through the durable store. A key's role follows from time
 * alone, so instances agree without coordinating: per algorithm, the key activated most recently
 * signs; keys activated earlier are retired and stay published (verify-only) until every token they
 * may have signed has expired; keys activating in the future are published ahead of use so relying
 * parties can refresh their JWKS caches. Private parts are stored encrypted (key-cipher.ts).
 */
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';

import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Logger } from 'pino';

import type {
  JsonObject,
  SigningKeyRecord,
  SigningKeyRepository,
  SigningKeyStatus,
} from '../../store/ports.js';
import type { KeyCipher } from './key-cipher.js';

/** RS256 is the default for ID tokens and JWT access tokens; ES256 is offered to clients that ask. */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

export interface ClassifiedKey {
  record: SigningKeyRecord;
  status: SigningKeyStatus;
  retiredAt: Date | null;
  expiresAt: Date | null;
}

export interface KeySet {
  /** Private JWKs for oidc-provider: each algorithm's signing key, then the others marked verify-only. */
  providerJwks: JWK[];
  /** The kid that signs, per algorithm. */
  signing: Partial<Record<SigningAlgorithm, string>>;
  /** Changes whenever a key is added, activated, retired or dropped. */
  fingerprint: string;
  keys: ClassifiedKey[];
}

export interface SigningKeyServiceOptions {
  /** Default delay between publishing a rotated key and signing with it. */
  activationDelayS: number;
  /** How long a retired key stays published: at least the longest lifetime of a signed token. */
  retentionS: number;
  now?: () => Date;
  log?: Logger;
}

function generate(alg: SigningAlgorithm): { publicJwk: JsonWebKey; privateJwk: JsonWebKey } {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicJwk: pair.publicKey.export({ format: 'jwk' }),
    privateJwk: pair.privateKey.export({ format: 'jwk' }),
  };
}

/**
 * Classifies keys by time (see the module comment); pure, so every instance computes the same. Only
 * the OIDC algorithms count: the repository also keeps the SAML service-provider key (sso/saml-keys.ts).
 */
export function classifyKeys(records: SigningKeyRecord[], now: Date, retentionS: number): ClassifiedKey[] {
  const out: ClassifiedKey[] = [];
  const ours = records.filter((r) => (SIGNING_ALGORITHMS as readonly string[]).includes(r.alg));
  for (const alg of new Set(ours.map((r) => r.alg))) {
    const ofAlg = ours
      .filter((r) => r.alg === alg)
      .sort((a, b) => a.activates_at.getTime() - b.activates_at.getTime() || a.kid.localeCompare(b.kid));
    const active = ofAlg.filter((r) => r.activates_at.getTime() <= now.getTime());
    active.forEach((record, i) => {
      const successor = active[i + 1];
      if (!successor) {
        out.push({ record, status: 'current', retiredAt: null, expiresAt: null });
      } else {
        const retiredAt = successor.activates_at;
        out.push({
          record,
          status: 'retired',
          retiredAt,
          expiresAt: new Date(retiredAt.getTime() + retentionS * 1000),
        });
      }
    });
    for (const record of ofAlg.filter((r) => r.activates_at.getTime() > now.getTime())) {
      out.push({ record, status: 'next', retiredAt: null, expiresAt: null });
    }
  }
  return out;
}

export class SigningKeyService {
  private readonly now: () => Date;

  constructor(
    private readonly repo: SigningKeyRepository,
    private readonly cipher: KeyCipher,
    private readonly options: SigningKeyServiceOptions,
  ) {
    this.now = options.now ?? (() => new Date());
  }

  private async create(
    alg: SigningAlgorithm,
    activatesAt: Date,
    status: SigningKeyStatus,
  ): Promise<SigningKeyRecord> {
    const { publicJwk, privateJwk } = generate(alg);
    const kid = await calculateJwkThumbprint(publicJwk as JWK);
    return this.repo.create({
      kid,
      alg,
      use: 'sig',
      status,
      public_jwk: { ...publicJwk, kid, alg, use: 'sig' } as JsonObject,
      private_jwk_encrypted: this.cipher.encrypt(JSON.stringify(privateJwk), kid),
      created_at: this.now(),
      activates_at: activatesAt,
    });
  }

  /**
   * Makes sure every algorithm has a signing key, creating what is missing (first start). Two
   * instances starting together may both create one; the later activation then signs everywhere.
   */
  async ensureKeys(): Promise<SigningKeyRecord[]> {
    const classified = classifyKeys(await this.repo.list(), this.now(), this.options.retentionS);
    const created: SigningKeyRecord[] = [];
    for (const alg of SIGNING_ALGORITHMS) {
      if (!classified.some((k) => k.record.alg === alg && k.status === 'current')) {
        created.push(await this.create(alg, this.now(), 'current'));
        this.options.log?.info({ alg, kid: created.at(-1)!.kid }, 'created signing key');
      }
    }
    return created;
  }

  /** Publishes a new key per algorithm that starts signing after `delayS` (default: the configured delay). */
  async rotate(delayS = this.options.activationDelayS): Promise<SigningKeyRecord[]> {
    const activatesAt = new Date(this.now().getTime() + delayS * 1000);
    const created: SigningKeyRecord[] = [];
    for (const alg of SIGNING_ALGORITHMS) {
      created.push(await this.create(alg, activatesAt, delayS === 0 ? 'current' : 'next'));
    }
    return created;
  }

  /** Every stored key with its role now (for operators). */
  async describe(): Promise<ClassifiedKey[]> {
    return classifyKeys(await this.repo.list(), this.now(), this.options.retentionS);
  }

  /**
   * Reads and decrypts the keys to serve now. Also tidies the store: records each key's derived
   * status for operators, and deletes retired keys whose retention has ended. Both writes are
   * idempotent, so any number of instances may do them at once.
   */
  async load(): Promise<KeySet> {
    const now = this.now();
    const keys = classifyKeys(await this.repo.list(), now, this.options.retentionS);
    const live: ClassifiedKey[] = [];
    for (const key of keys) {
      if (key.expiresAt && key.expiresAt.getTime() <= now.getTime()) {
        await this.repo.remove(key.record.kid);
        this.options.log?.info({ kid: key.record.kid }, 'removed expired signing key');
        continue;
      }
      const { record } = key;
      if (
        record.status !== key.status ||
        record.retired_at?.getTime() !== key.retiredAt?.getTime() ||
        record.expires_at?.getTime() !== key.expiresAt?.getTime()
      ) {
        await this.repo.update(record.kid, {
          status: key.status,
          retired_at: key.retiredAt,
          expires_at: key.expiresAt,
        });
      }
      live.push(key);
    }

    const rank = { current: 0, next: 1, retired: 2 } as const;
    live.sort((a, b) => rank[a.status] - rank[b.status] || a.record.kid.localeCompare(b.record.kid));
    const signing: KeySet['signing'] = {};
    const providerJwks = live.map(({ record, status }) => {
      const privateJwk = JSON.parse(this.cipher.decrypt(record.private_jwk_encrypted, record.kid)) as JWK;
      const jwk: JWK = { ...privateJwk, kid: record.kid, alg: record.alg, use: 'sig' };
      if (status === 'current') signing[record.alg as SigningAlgorithm] = record.kid;
      // oidc-provider never picks a key whose key_ops lack "sign" for signing, yet still publishes it.
      else jwk.key_ops = ['verify'];
      return jwk;
    });
    return {
      providerJwks,
      signing,
      keys: live,
      fingerprint: live.map((k) => `${k.record.kid}:${k.status}`).join(','),
    };
  }
}
