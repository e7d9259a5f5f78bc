import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { compactVerify, createLocalJWKSet, type JWK } from 'jose';
import { createSign } from 'node:crypto';

import { createKeyCipher, KeyDecryptionError } from '../../src/oidc/keys/key-cipher.js';
import { classifyKeys, SigningKeyService } from '../../src/oidc/keys/signing-keys.js';
import { EmbeddedDatabase } from '../../src/store/embedded/database.js';
import { EmbeddedDurableStore } from '../../src/store/embedded/durable-store.js';
import type { SigningKeyRecord } from '../../src/store/ports.js';
import { tempDir } from '../helpers/backends.js';

const SECRET = 'a-key-encryption-secret-of-at-least-32-chars';

function record(kid: string, alg: string, activatesAt: string): SigningKeyRecord {
  return {
    kid,
    alg,
    use: 'sig',
    status: 'next',
    public_jwk: {},
    private_jwk_encrypted: '',
    created_at: new Date(activatesAt),
    activates_at: new Date(activatesAt),
    retired_at: null,
    expires_at: null,
  };
}

describe('classifyKeys', () => {
  it('lets the most recently activated key of each algorithm sign, retires earlier ones and publishes future ones', () => {
    const keys = [
      record('r1', 'RS256', '2026-01-01T00:00:00Z'),
      record('r2', 'RS256', '2026-02-01T00:00:00Z'),
      record('r3', 'RS256', '2026-04-01T00:00:00Z'),
      record('e1', 'ES256', '2026-01-15T00:00:00Z'),
    ];
    const now = new Date('2026-03-01T00:00:00Z');
    const byKid = Object.fromEntries(classifyKeys(keys, now, 3600).map((k) => [k.record.kid, k]));
    expect(byKid.r1).toMatchObject({
      status: 'retired',
      retiredAt: new Date('2026-02-01T00:00:00Z'),
      expiresAt: new Date('2026-02-01T01:00:00Z'),
    });
    expect(byKid.r2).toMatchObject({ status: 'current', retiredAt: null, expiresAt: null });
    expect(byKid.r3).toMatchObject({ status: 'next' });
    expect(byKid.e1).toMatchObject({ status: 'current' });
  });

  it('breaks a tie between keys activated at the same moment by kid, the same way everywhere', () => {
    const keys = [record('b', 'RS256', '2026-01-01T00:00:00Z'), record('a', 'RS256', '2026-01-01T00:00:00Z')];
    const result = classifyKeys(keys, new Date('2026-01-02T00:00:00Z'), 60);
    expect(result.find((k) => k.status === 'current')!.record.kid).toBe('b');
    expect(
      classifyKeys([...keys].reverse(), new Date('2026-01-02T00:00:00Z'), 60).find(
        (k) => k.status === 'current',
      )!.record.kid,
    ).toBe('b');
  });
});

describe('key cipher', () => {
  it('round-trips, binds the ciphertext to its kid and refuses another secret', () => {
    const cipher = createKeyCipher(SECRET);
    const sealed = cipher.encrypt('{"d":"private"}', 'kid-1');
    expect(sealed).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(sealed).not.toContain('private');
    expect(cipher.decrypt(sealed, 'kid-1')).toBe('{"d":"private"}');
    expect(() => cipher.decrypt(sealed, 'kid-2')).toThrow(KeyDecryptionError);
    expect(() => createKeyCipher(`${SECRET}-other`).decrypt(sealed, 'kid-1')).toThrow(
      'cannot decrypt signing key kid-1: KEY_ENCRYPTION_SECRET is not the secret the key was encrypted with',
    );
  });
});

describe('SigningKeyService on a real store', () => {
  const dir = tempDir();
  let store: EmbeddedDurableStore;
  let now = new Date('2026-05-01T00:00:00Z');
  let service: SigningKeyService;

  beforeAll(() => {
    store = new EmbeddedDurableStore(EmbeddedDatabase.open(dir.path));
    service = new SigningKeyService(store.signingKeys, createKeyCipher(SECRET), {
      activationDelayS: 600,
      retentionS: 3600,
      now: () => now,
    });
  });
  afterAll(async () => {
    await store.close();
    dir.remove();
  });

  it('creates one RS256 and one ES256 key on first start, stored encrypted, and not twice', async () => {
    const created = await service.ensureKeys();
    expect(created.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);
    expect(await service.ensureKeys()).toEqual([]);
    for (const key of await store.signingKeys.list()) {
      expect(key.private_jwk_encrypted).toMatch(/^v1\./);
      expect(JSON.stringify(key)).not.toMatch(/"d":/);
      expect(key.public_jwk).toMatchObject({ kid: key.kid, alg: key.alg, use: 'sig' });
      expect(key.public_jwk).not.toHaveProperty('d');
    }
  });

  it('signs with a key whose private part decrypts and whose public part verifies', async () => {
    const set = await service.load();
    const rsKid = set.signing.RS256!;
    const privateJwk = set.providerJwks.find((k) => k.kid === rsKid)!;
    expect(privateJwk.key_ops).toBeUndefined();
    const signer = createSign('RSA-SHA256');
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: rsKid })).toString('base64url');
    const payload = Buffer.from('{"hello":"world"}').toString('base64url');
    signer.update(`${header}.${payload}`);
    const { createPrivateKey } = await import('node:crypto');
    const signature = signer
      .sign(createPrivateKey({ key: privateJwk as never, format: 'jwk' }))
      .toString('base64url');
    const publicKeys = (await store.signingKeys.list()).map((k) => k.public_jwk as JWK);
    const result = await compactVerify(
      `${header}.${payload}.${signature}`,
      createLocalJWKSet({ keys: publicKeys }),
    );
    expect(new TextDecoder().decode(result.payload)).toBe('{"hello":"world"}');
  });

  it('publishes a rotated key ahead of use, switches signing at activation, and drops the old key after retention', async () => {
    const before = await service.load();
    const rotated = await service.rotate();
    expect(rotated.every((k) => k.status === 'next')).toBe(true);

    const published = await service.load();
    expect(published.signing).toEqual(before.signing);
    const nextKid = rotated.find((k) => k.alg === 'RS256')!.kid;
    expect(published.providerJwks.find((k) => k.kid === nextKid)!.key_ops).toEqual(['verify']);
    expect(published.fingerprint).not.toBe(before.fingerprint);

    now = new Date(now.getTime() + 601_000);
    const activated = await service.load();
    expect(activated.signing.RS256).toBe(nextKid);
    const oldKid = before.signing.RS256!;
    expect(activated.providerJwks.find((k) => k.kid === oldKid)!.key_ops).toEqual(['verify']);
    const stored = (await store.signingKeys.list()).find((k) => k.kid === oldKid)!;
    expect(stored.status).toBe('retired');
    expect(stored.expires_at).toEqual(new Date(stored.retired_at!.getTime() + 3600_000));

    now = new Date(now.getTime() + 3601_000);
    const later = await service.load();
    expect(later.providerJwks.map((k) => k.kid)).not.toContain(oldKid);
    expect((await store.signingKeys.list()).map((k) => k.kid)).not.toContain(oldKid);
    expect(later.signing.RS256).toBe(nextKid);
  });
});
