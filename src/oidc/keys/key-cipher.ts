/**
 * Encryption of private signing keys at rest: AES-256-GCM under a key derived (HKDF-SHA256) from
 * KEY_ENCRYPTION_SECRET, with the key id as associated data so a ciphertext cannot be moved to
 * another key's record. Format: `v1.<iv>.<ciphertext>.<tag>`, base64url parts.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export interface KeyCipher {
  encrypt(plaintext: string, kid: string): string;
  decrypt(sealed: string, kid: string): string;
}

export class KeyDecryptionError extends Error {
  constructor(kid: string) {
    super(
      `cannot decrypt signing key ${kid}: KEY_ENCRYPTION_SECRET is not the secret the key was encrypted with`,
    );
    this.name = 'KeyDecryptionError';
  }
}

export function createKeyCipher(secret: string): KeyCipher {
  const key = Buffer.from(hkdfSync('sha256', secret, 'latchkey/signing-keys', 'aes-256-gcm v1', 32));
  return {
    encrypt(plaintext, kid) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(kid));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return ['v1', iv, body, cipher.getAuthTag()]
        .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
        .join('.');
    },
    decrypt(sealed, kid) {
      const [version, iv, body, tag] = sealed.split('.');
      if (version !== 'v1' || !iv || !body || !tag) throw new KeyDecryptionError(kid);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(kid));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
          'utf8',
        );
      } catch {
        throw new KeyDecryptionError(kid);
      }
    },
  };
}
