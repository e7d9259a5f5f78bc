/**
 * Single-use tokens mailed to users (password reset, address confirmation, invitations). The token itself is 32 random bytes shown only
 * in the link; the store keeps its SHA-256, with the purpose, the user, an expiry (the artifact
 * store's TTL: Redis or the embedded store) and a fingerprint of the user's password hash when it was
 * made (or of the address, for a verification), so that any later password (address) change voids it. Using a token is atomic across instances (a
 * counter that only the first use takes to 1), then the token is consumed.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';

import type { ArtifactStore, CounterStore, User } from '../store/ports.js';

const MODEL = 'AccountToken';
export type AccountTokenPurpose = 'password_reset' | 'email_verification';

/** What an invitation stands for: the address it was sent to (and the names the administrator gave). */
export interface InvitationFacts {
  email: string;
  first_name: string;
  last_name: string;
  digest: string;
}

export interface TokenFacts {
  userId: string;
  /** The sign-in (interaction) the request came from, to offer going back to it. */
  uid: string | null;
  digest: string;
}

const digestOf = (token: string) => createHash('sha256').update(token).digest('base64url');
/** What a token stays valid with: the password for a reset, the address for a verification. */
const fingerprint = (purpose: AccountTokenPurpose, user: User) =>
  createHash('sha256')
    .update(
      `${purpose}\n${user.id}\n${purpose === 'password_reset' ? (user.password_hash ?? '') : user.email.toLowerCase()}`,
    )
    .digest('base64url')
    .slice(0, 22);

export class AccountTokens {
  constructor(
    private readonly artifacts: ArtifactStore,
    private readonly counters: CounterStore,
  ) {}

  private get adapter() {
    return this.artifacts.adapterFor(MODEL);
  }

  async issue(purpose: AccountTokenPurpose, user: User, ttlS: number, uid: string | null): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    await this.adapter.upsert(
      digestOf(token),
      { purpose, accountId: user.id, fp: fingerprint(purpose, user), ...(uid ? { interaction: uid } : {}) },
      ttlS,
    );
    return token;
  }

  /** What a presented token stands for, if it is one of `purpose`, unused, unexpired and still valid for `user`. */
  async check(
    purpose: AccountTokenPurpose,
    token: string,
    findUser: (id: string) => Promise<User | null>,
  ): Promise<TokenFacts | null> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const digest = digestOf(token);
    const stored = await this.adapter.find(digest);
    if (!stored || stored.consumed || stored.purpose !== purpose || typeof stored.accountId !== 'string') {
      return null;
    }
    const user = await findUser(stored.accountId);
    if (
      !user ||
      user.status !== 'active' ||
      user.deleted_at !== null ||
      stored.fp !== fingerprint(purpose, user)
    ) {
      return null;
    }
    return {
      userId: user.id,
      uid: typeof stored.interaction === 'string' ? stored.interaction : null,
      digest,
    };
  }

  /**
   * A 6-digit code for people reading the mail on another device: stored under the digest of the
   * user and the code, with the same purpose, expiry and fingerprint as a token. Wrong guesses are
   * limited by the caller (checkCode counts them).
   */
  async issueCode(
    purpose: AccountTokenPurpose,
    user: User,
    ttlS: number,
    uid: string | null,
  ): Promise<string> {
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    await this.adapter.upsert(
      digestOf(`code\n${user.id}\n${code}`),
      { purpose, accountId: user.id, fp: fingerprint(purpose, user), ...(uid ? { interaction: uid } : {}) },
      ttlS,
    );
    return code;
  }

  /**
   * The facts of `user`'s code, if it is right and still valid. At most `maxGuesses` wrong codes per
   * user and `windowS` count; after that every code is refused until the window ends.
   */
  async checkCode(
    purpose: AccountTokenPurpose,
    user: User,
    code: string,
    limits: { maxGuesses: number; windowS: number },
  ): Promise<TokenFacts | null> {
    const guesses = await this.counters.get(`account-code-guesses:${purpose}:${user.id}`);
    if ((guesses?.value ?? 0) >= limits.maxGuesses) return null;
    const digest = digestOf(`code\n${user.id}\n${code.trim()}`);
    const stored = /^\d{6}$/.test(code.trim()) ? await this.adapter.find(digest) : undefined;
    const valid =
      stored &&
      !stored.consumed &&
      stored.purpose === purpose &&
      stored.accountId === user.id &&
      stored.fp === fingerprint(purpose, user) &&
      user.status === 'active' &&
      user.deleted_at === null;
    if (!valid) {
      await this.counters.increment(`account-code-guesses:${purpose}:${user.id}`, limits.windowS);
      return null;
    }
    return {
      userId: user.id,
      uid: typeof stored.interaction === 'string' ? stored.interaction : null,
      digest,
    };
  }

  /**
   * An invitation to sign up with `email`: like a token, but bound to an address rather than a user
   * (the account does not exist yet), under the purpose `invitation`.
   */
  async issueInvitation(
    invitee: { email: string; first_name: string; last_name: string },
    ttlS: number,
  ): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const email = invitee.email.toLowerCase();
    await this.adapter.upsert(
      digestOf(token),
      { purpose: 'invitation', email, first_name: invitee.first_name, last_name: invitee.last_name },
      ttlS,
    );
    return token;
  }

  /** The invitation a presented token stands for, if it is one, unused and unexpired. */
  async checkInvitation(token: string): Promise<InvitationFacts | null> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const digest = digestOf(token);
    const stored = await this.adapter.find(digest);
    if (!stored || stored.consumed || stored.purpose !== 'invitation' || typeof stored.email !== 'string') {
      return null;
    }
    const used = await this.counters.get(`account-token-used:${digest}`);
    if ((used?.value ?? 0) > 0) return null;
    const text = (value: unknown) => (typeof value === 'string' ? value : '');
    return {
      email: stored.email,
      first_name: text(stored.first_name),
      last_name: text(stored.last_name),
      digest,
    };
  }

  /** Takes the token for this use; false when another use came first. */
  async use(facts: Pick<TokenFacts, 'digest'>, ttlS: number): Promise<boolean> {
    const taken = await this.counters.increment(`account-token-used:${facts.digest}`, ttlS);
    if (taken.value !== 1) return false;
    await this.adapter.consume(facts.digest);
    return true;
  }
}
