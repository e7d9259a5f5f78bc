/**
 * Second factors: authenticator apps (TOTP, RFC 6238), single-use recovery codes and passkeys
 * (WebAuthn), and the policy deciding who must use one.
 *
 * - TOTP: 30 s steps, one step of tolerance either way; a code counts once (a counter per factor and
 *   step in the counter store, so a replay is refused on every instance); the secret is encrypted
 *   at rest with KEY_ENCRYPTION_SECRET, bound to the factor id. Enrolment keeps the new secret in the
 *   artifact store (10 minutes) until a first code confirms it.
 * - Recovery codes: 10 per user, shown once, stored as HMACs under a key derived from
 *   KEY_ENCRYPTION_SECRET, each taken atomically by the durable store.
 * - Passkeys: @simplewebauthn/server, challenges kept in the artifact store and taken once, the
 *   signature counter only moving forward, user verification required for passwordless sign-in.
 *
 * What a sign-in proved becomes `amr` (RFC 8176) and `acr` in the ID token: `pwd`; `otp` for a TOTP
 * or recovery code; `hwk` for a device-bound passkey and `swk` for a synced one; `mfa` once two
 * factors (or a passkey with user verification) were shown. The acr is ACR_MFA when `mfa` is there,
 * ACR_PASSWORD otherwise.
 */
import { createHmac, hkdfSync, randomBytes, randomInt } from 'node:crypto';

import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { generateSecret, generateURI, verify as verifyTotp } from 'otplib';
import QRCode from 'qrcode';

import { newEvent, publicUser, type EventMfaFactor } from '../events/catalog.js';
import type { EventRecorder } from '../events/recorder.js';
import type { KeyCipher } from '../oidc/keys/key-cipher.js';
import { StoreConflictError } from '../store/errors.js';
import type { ArtifactStore, CounterStore, DurableStore, MfaFactor, User } from '../store/ports.js';
import type { Actor, AuditService, RequestFacts } from './audit.js';

export type MfaMode = 'off' | 'optional' | 'required';

/** One factor was shown (a password, or a passkey without user verification). */
export const ACR_PASSWORD = 'urn:latchkey:acr:pwd';
/** Two factors were shown: password and a code or a passkey, or a passkey with user verification. */
export const ACR_MFA = 'urn:latchkey:acr:mfa';
export const ACR_VALUES = [ACR_PASSWORD, ACR_MFA] as const;

export const RECOVERY_CODE_COUNT = 10;
const TOTP_PERIOD_S = 30;
const ENROLMENT_TTL_S = 600;
const CHALLENGE_TTL_S = 300;
const CHALLENGE_MODEL = 'MfaChallenge';
const ENROLMENT_MODEL = 'MfaEnrolment';
const CODES_MODEL = 'MfaCodes';
/** Recovery codes: 10 characters from an alphabet without look-alikes (50 bits), shown as xxxxx-xxxxx. */
const CODE_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

export interface MfaOptions {
  mode: MfaMode;
  /** Holders of these roles (primary or linked) must use a second factor unless the mode is off. */
  requiredRoles: readonly string[];
  /** Shown in authenticator apps and passkey prompts. */
  brand: string;
  rpId: string;
  origins: readonly string[];
}

/** A factor as the user and administrators see it: never a secret or a key. */
export function publicFactor(factor: MfaFactor): EventMfaFactor & {
  device_type?: MfaFactor['device_type'];
  backed_up?: boolean;
  transports?: string[];
} {
  return {
    id: factor.id,
    type: factor.type,
    name: factor.name,
    created_at: factor.created_at.toISOString(),
    last_used_at: factor.last_used_at ? factor.last_used_at.toISOString() : null,
    ...(factor.type === 'webauthn'
      ? { device_type: factor.device_type, backed_up: factor.backed_up, transports: factor.transports }
      : {}),
  };
}

/** The amr of a second factor. */
export type SecondFactorMethod = 'otp' | 'hwk' | 'swk';

export interface TotpEnrolment {
  /** Names the pending enrolment (kept 10 minutes). */
  id: string;
  /** Base32, for manual entry. */
  secret: string;
  uri: string;
  /** The otpauth URI as an inline SVG QR code. */
  qrSvg: string;
}

export interface PasskeyAssertion {
  user: User;
  factor: MfaFactor;
  method: 'hwk' | 'swk';
  userVerified: boolean;
}

const methodOf = (factor: Pick<MfaFactor, 'device_type'>): 'hwk' | 'swk' =>
  factor.device_type === 'multiDevice' ? 'swk' : 'hwk';

/** The acr of what was shown. */
export const acrOf = (amr: readonly string[]) => (amr.includes('mfa') ? ACR_MFA : ACR_PASSWORD);

export class MfaService {
  private readonly codeKey: Buffer;

  constructor(
    private readonly store: DurableStore,
    private readonly artifacts: ArtifactStore,
    private readonly counters: CounterStore,
    private readonly cipher: KeyCipher,
    keyEncryptionSecret: string,
    readonly options: MfaOptions,
    private readonly events?: EventRecorder,
    private readonly audit?: AuditService,
  ) {
    this.codeKey = Buffer.from(
      hkdfSync('sha256', keyEncryptionSecret, 'latchkey/recovery-codes', 'hmac v1', 32),
    );
  }

  get enabled(): boolean {
    return this.options.mode !== 'off';
  }

  /* Policy ------------------------------------------------------------------------------------ */

  async factors(userId: string): Promise<MfaFactor[]> {
    return this.store.mfa.listFactors(userId);
  }

  /** Whether the user must use a second factor: MFA=required, or a role named in MFA_REQUIRED_ROLES. */
  async requiredFor(user: User): Promise<boolean> {
    if (this.options.mode === 'off') return false;
    if (this.options.mode === 'required') return true;
    if (this.options.requiredRoles.length === 0) return false;
    if (this.options.requiredRoles.includes(user.role)) return true;
    const roles = await this.store.roles.listForUser(user.id);
    return roles.some((r) => this.options.requiredRoles.includes(r.name));
  }

  /**
   * What a sign-in that has shown a password must do next: nothing, show a second factor, or
   * enrol one first. `stepUp`: the client asked for ACR_MFA.
   */
  async nextStep(user: User, stepUp = false): Promise<'done' | 'verify' | 'enrol'> {
    if (!this.enabled) return 'done';
    const factors = await this.factors(user.id);
    if (factors.length > 0) return 'verify';
    return stepUp || (await this.requiredFor(user)) ? 'enrol' : 'done';
  }

  /* TOTP ------------------------------------------------------------------------------------- */

  async beginTotp(user: User): Promise<TotpEnrolment> {
    const secret = generateSecret();
    const id = randomBytes(24).toString('base64url');
    await this.artifacts
      .adapterFor(ENROLMENT_MODEL)
      .upsert(
        id,
        { accountId: user.id, secret: this.cipher.encrypt(secret, `mfa-enrolment:${id}`) },
        ENROLMENT_TTL_S,
      );
    const uri = generateURI({ issuer: this.options.brand, label: user.email, secret });
    const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    return { id, secret, uri, qrSvg };
  }

  /** The enrolment `id` of `user`, if it is still pending: the same secret to show again. */
  async pendingTotp(user: User, id: string): Promise<TotpEnrolment | null> {
    const secret = await this.enrolmentSecret(user, id);
    if (!secret) return null;
    const uri = generateURI({ issuer: this.options.brand, label: user.email, secret });
    const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    return { id, secret, uri, qrSvg };
  }

  private async enrolmentSecret(user: User, id: string): Promise<string | null> {
    if (!/^[A-Za-z0-9_-]{32}$/.test(id)) return null;
    const stored = await this.artifacts.adapterFor(ENROLMENT_MODEL).find(id);
    if (!stored || stored.consumed || stored.accountId !== user.id || typeof stored.secret !== 'string') {
      return null;
    }
    try {
      return this.cipher.decrypt(stored.secret, `mfa-enrolment:${id}`);
    } catch {
      return null;
    }
  }

  /**
   * Confirms a pending enrolment with a first code: the factor is stored, and when the user had no
   * recovery codes, 10 are made (returned once, never again).
   */
  async confirmTotp(
    user: User,
    id: string,
    code: string,
    request: RequestFacts,
    name = 'Authenticator app',
  ): Promise<{ factor: MfaFactor; recoveryCodes: string[] | null } | null> {
    const secret = await this.enrolmentSecret(user, id);
    if (!secret) return null;
    const step = await this.checkTotp(secret, code);
    if (step === null) return null;
    const taken = await this.counters.increment(`mfa:enrolment-used:${id}`, ENROLMENT_TTL_S);
    if (taken.value !== 1) return null;
    await this.artifacts.adapterFor(ENROLMENT_MODEL).consume(id);
    const factorId = `mfa_${randomBytes(16).toString('hex')}`;
    const factor = await this.store.mfa.createFactor({
      id: factorId,
      user_id: user.id,
      type: 'totp',
      name,
      secret: this.cipher.encrypt(secret, `mfa:${factorId}`),
    });
    // The confirming code must not be accepted again at sign-in.
    await this.counters.increment(`mfa:totp-used:${factor.id}:${step}`, TOTP_PERIOD_S * 4);
    return { factor, recoveryCodes: await this.added(user, factor, request) };
  }

  /** The time step `code` is valid for (±1 step), or null. */
  private async checkTotp(secret: string, code: string): Promise<number | null> {
    const token = code.replace(/\s+/g, '');
    if (!/^\d{6}$/.test(token)) return null;
    const result = await verifyTotp({ secret, token, epochTolerance: TOTP_PERIOD_S });
    return result.valid ? (result as { timeStep: number }).timeStep : null;
  }

  /** The TOTP factor `code` is a fresh code of, or null (wrong, or used before on any instance). */
  async verifyTotp(userId: string, code: string): Promise<MfaFactor | null> {
    const factors = (await this.factors(userId)).filter((f) => f.type === 'totp' && f.secret);
    for (const factor of factors) {
      let secret: string;
      try {
        secret = this.cipher.decrypt(factor.secret!, `mfa:${factor.id}`);
      } catch {
        continue;
      }
      const step = await this.checkTotp(secret, code);
      if (step === null) continue;
      const use = await this.counters.increment(`mfa:totp-used:${factor.id}:${step}`, TOTP_PERIOD_S * 4);
      if (use.value !== 1) return null;
      await this.store.mfa.recordUse(factor.id, new Date());
      return factor;
    }
    return null;
  }

  /* Recovery codes ----------------------------------------------------------------------------- */

  private hashCode(userId: string, code: string): string {
    const normal = code.toLowerCase().replace(/[\s-]+/g, '');
    return createHmac('sha256', this.codeKey).update(`${userId}\n${normal}`).digest('base64url');
  }

  /** Makes a new set of 10 codes (the old ones stop working) and returns them, to be shown once. */
  async regenerateRecoveryCodes(user: User, request?: RequestFacts): Promise<string[]> {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => {
      let raw = '';
      for (let i = 0; i < 10; i += 1) raw += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
      return `${raw.slice(0, 5)}-${raw.slice(5)}`;
    });
    await this.store.mfa.replaceRecoveryCodes(
      user.id,
      codes.map((c) => this.hashCode(user.id, c)),
      new Date(),
    );
    if (request) await this.audited('user.mfa_recovery_codes_regenerated', user, request);
    return codes;
  }

  async useRecoveryCode(userId: string, code: string): Promise<boolean> {
    if (code.replace(/[\s-]+/g, '').length !== 10) return false;
    return this.store.mfa.useRecoveryCode(userId, this.hashCode(userId, code), new Date());
  }

  async recoveryCodesLeft(userId: string): Promise<number> {
    return this.store.mfa.countRecoveryCodes(userId);
  }

  /* Passkeys ------------------------------------------------------------------------------------ */

  private async keepChallenge(binding: string, challenge: string, userId: string | null): Promise<void> {
    await this.artifacts
      .adapterFor(CHALLENGE_MODEL)
      .upsert(binding, { challenge, ...(userId ? { accountId: userId } : {}) }, CHALLENGE_TTL_S);
  }

  /** The challenge kept for `binding`, taken once (a second use on any instance gets null). */
  private async takeChallenge(binding: string): Promise<{ challenge: string; userId: string | null } | null> {
    const stored = await this.artifacts.adapterFor(CHALLENGE_MODEL).find(binding);
    if (!stored || stored.consumed || typeof stored.challenge !== 'string') return null;
    const taken = await this.counters.increment(`mfa:challenge-used:${stored.challenge}`, CHALLENGE_TTL_S);
    if (taken.value !== 1) return null;
    await this.artifacts.adapterFor(CHALLENGE_MODEL).consume(binding);
    return {
      challenge: stored.challenge,
      userId: typeof stored.accountId === 'string' ? stored.accountId : null,
    };
  }

  /** Options for navigator.credentials.create(), the challenge kept under `binding`. */
  async registrationOptions(user: User, binding: string) {
    const existing = (await this.factors(user.id)).filter((f) => f.type === 'webauthn' && f.credential_id);
    const options = await generateRegistrationOptions({
      rpName: this.options.brand,
      rpID: this.options.rpId,
      userName: user.email,
      userDisplayName: [user.first_name, user.last_name].filter(Boolean).join(' ') || user.email,
      userID: new TextEncoder().encode(user.id),
      attestationType: 'none',
      excludeCredentials: existing.map((f) => ({ id: f.credential_id!, transports: f.transports })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
    });
    await this.keepChallenge(`reg:${binding}`, options.challenge, user.id);
    return options;
  }

  /** Verifies a new passkey of `user` and stores it; null when the response does not verify. */
  async finishRegistration(
    user: User,
    binding: string,
    response: RegistrationResponseJSON,
    name: string,
    request: RequestFacts,
  ): Promise<{ factor: MfaFactor; recoveryCodes: string[] | null } | null> {
    const kept = await this.takeChallenge(`reg:${binding}`);
    if (!kept || kept.userId !== user.id) return null;
    let verified;
    try {
      verified = await verifyRegistrationResponse({
        response,
        expectedChallenge: kept.challenge,
        expectedOrigin: [...this.options.origins],
        expectedRPID: this.options.rpId,
        requireUserVerification: false,
      });
    } catch {
      return null;
    }
    if (!verified.verified) return null;
    const info = verified.registrationInfo;
    let factor: MfaFactor;
    try {
      factor = await this.store.mfa.createFactor({
        user_id: user.id,
        type: 'webauthn',
        name: name.trim().slice(0, 64) || 'Passkey',
        credential_id: info.credential.id,
        public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        transports: info.credential.transports ?? [],
        device_type: info.credentialDeviceType,
        backed_up: info.credentialBackedUp,
      });
    } catch (err) {
      if (err instanceof StoreConflictError) return null;
      throw err;
    }
    return { factor, recoveryCodes: await this.added(user, factor, request) };
  }

  /**
   * Options for navigator.credentials.get(): for `user`'s passkeys (a second factor), or with no
   * user for any discoverable passkey of this site (passwordless sign-in).
   */
  async authenticationOptions(binding: string, user: User | null) {
    const keys = user
      ? (await this.factors(user.id)).filter((f) => f.type === 'webauthn' && f.credential_id)
      : [];
    const options = await generateAuthenticationOptions({
      rpID: this.options.rpId,
      allowCredentials: keys.map((f) => ({ id: f.credential_id!, transports: f.transports })),
      userVerification: user ? 'preferred' : 'required',
    });
    await this.keepChallenge(`auth:${binding}`, options.challenge, user?.id ?? null);
    return options;
  }

  /**
   * Verifies an assertion made for the challenge kept under `binding`: of `expectedUser`'s passkey
   * (second factor), or of anyone's (passwordless, user verification required). Null otherwise.
   */
  async finishAuthentication(
    binding: string,
    response: AuthenticationResponseJSON,
    findUser: (id: string) => Promise<User | null>,
  ): Promise<PasskeyAssertion | null> {
    const kept = await this.takeChallenge(`auth:${binding}`);
    if (!kept || typeof response?.id !== 'string') return null;
    const factor = await this.store.mfa.findByCredentialId(response.id);
    if (!factor || factor.type !== 'webauthn' || !factor.public_key) return null;
    if (kept.userId !== null && factor.user_id !== kept.userId) return null;
    const user = await findUser(factor.user_id);
    if (!user || user.status !== 'active' || user.deleted_at !== null) return null;
    let verified;
    try {
      verified = await verifyAuthenticationResponse({
        response,
        expectedChallenge: kept.challenge,
        expectedOrigin: [...this.options.origins],
        expectedRPID: this.options.rpId,
        credential: {
          id: factor.credential_id!,
          publicKey: Buffer.from(factor.public_key, 'base64url'),
          counter: factor.counter,
          transports: factor.transports,
        },
        requireUserVerification: kept.userId === null,
      });
    } catch {
      return null;
    }
    if (!verified.verified) return null;
    const { newCounter, userVerified } = verified.authenticationInfo;
    // A counter that did not move forward means a cloned authenticator: refused, nothing recorded.
    if (!(await this.store.mfa.recordUse(factor.id, new Date(), newCounter))) return null;
    return { user, factor, method: methodOf(factor), userVerified };
  }

  /** Keeps new recovery codes (encrypted) for one showing on the page `binding` names (10 minutes). */
  async keepCodesToShow(binding: string, codes: readonly string[]): Promise<void> {
    await this.artifacts
      .adapterFor(CODES_MODEL)
      .upsert(
        binding,
        { codes: this.cipher.encrypt(JSON.stringify(codes), `mfa-codes:${binding}`) },
        ENROLMENT_TTL_S,
      );
  }

  /** The codes kept for `binding`, once: a second call gets null. */
  async takeCodesToShow(binding: string): Promise<string[] | null> {
    const adapter = this.artifacts.adapterFor(CODES_MODEL);
    const stored = await adapter.find(binding);
    if (!stored || stored.consumed || typeof stored.codes !== 'string') return null;
    await adapter.destroy(binding);
    try {
      return JSON.parse(this.cipher.decrypt(stored.codes, `mfa-codes:${binding}`)) as string[];
    } catch {
      return null;
    }
  }

  /* Changes ------------------------------------------------------------------------------------ */

  /** After a factor was added: the user's flag, an audit entry, and recovery codes if none exist. */
  private async added(user: User, factor: MfaFactor, request: RequestFacts): Promise<string[] | null> {
    if (!user.mfa_enabled) await this.store.users.update(user.id, { mfa_enabled: true });
    await this.audited('user.mfa_enrolled', user, request, { factor: publicFactor(factor) });
    if ((await this.store.mfa.countRecoveryCodes(user.id)) > 0) return null;
    return this.regenerateRecoveryCodes(user);
  }

  async rename(user: User, factorId: string, name: string): Promise<MfaFactor | null> {
    const factor = await this.store.mfa.findFactor(factorId);
    if (!factor || factor.user_id !== user.id) return null;
    return this.store.mfa.renameFactor(factorId, name.trim().slice(0, 64) || factor.name);
  }

  /**
   * Removes one factor (`factorId`) or all of them (null) of `userId`. The last factor takes the
   * recovery codes with it. By the user themselves it is audited; by an administrator it
   * is audited and recorded as `user.mfa_reset`. False when there was nothing to remove.
   */
  async remove(
    userId: string,
    factorId: string | null,
    by: { actor: Actor; request: RequestFacts; administrator: boolean },
  ): Promise<boolean> {
    const factor = factorId ? await this.store.mfa.findFactor(factorId) : null;
    if (factorId && (!factor || factor.user_id !== userId)) return false;
    const change = async () => {
      let removed: number;
      if (factorId) {
        removed = (await this.store.mfa.removeFactor(factorId)) ? 1 : 0;
        if (removed && (await this.store.mfa.listFactors(userId)).length === 0) {
          await this.store.mfa.removeAllForUser(userId);
        }
      } else {
        removed = await this.store.mfa.removeAllForUser(userId);
      }
      const left = (await this.store.mfa.listFactors(userId)).length;
      const user = await this.store.users.update(userId, { mfa_enabled: left > 0 });
      return { removed, user };
    };
    const outcome =
      this.events && by.administrator
        ? await this.events.record(change, ({ removed, user }) =>
            removed > 0 && user
              ? [
                  newEvent(
                    'user.mfa_reset',
                    {
                      type: by.actor.actor_type === 'client' ? 'client' : by.actor.actor_type,
                      id: by.actor.actor_id,
                    },
                    { user: publicUser(user), factor: factor ? publicFactor(factor) : null, removed },
                  ),
                ]
              : [],
          )
        : await change();
    if (outcome.removed === 0) return false;
    await this.audit?.record({
      ...by.actor,
      action: by.administrator ? 'user.mfa_reset' : 'user.mfa_removed',
      target_type: 'user',
      target_id: userId,
      request: by.request,
      details: { factor: factor ? publicFactor(factor) : null, removed: outcome.removed },
    });
    return true;
  }

  private async audited(
    action: string,
    user: User,
    request: RequestFacts,
    details?: Record<string, unknown>,
  ): Promise<void> {
    await this.audit?.record({
      actor_type: 'user',
      actor_id: user.id,
      actor_client_id: null,
      action,
      target_type: 'user',
      target_id: user.id,
      request,
      ...(details ? { details } : {}),
    });
  }
}
