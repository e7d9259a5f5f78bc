/**
 * API keys: long-lived secrets that users (and service clients) hand to programs. A key reads
 * `sk_live_<lookup id>_<secret>` (or `sk_test_…`): a recognizable prefix, a short public lookup id
 * that finds the record, and 32 random bytes. It is shown once; the store keeps only its SHA-256
 * (a key has 256 bits of entropy, so a fast hash is enough: there is nothing to guess).
 *
 * Verification sits in front of every request of a customer's API, so records and owners are
 * cached in process for a short time; a revocation, rotation or owner change is published on the
 * event bus and drops the entry on every instance at once.
 */
import { eventApiKey, newEvent } from '../events/catalog.js';
import { eventActor, type EventRecorder } from '../events/recorder.js';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';

import { AppError } from '../errors/app-error.js';
import { isActiveUser } from '../oidc/accounts.js';
import { StoreConflictError } from '../store/errors.js';
import type { ApiKeyOwnerType, ApiKeyRecord, DurableStore, EventBus, User } from '../store/ports.js';
import type { AuditService } from './audit.js';
import { holds, managementScopes, requireDominance, requireGrantable } from './authority.js';
import type { Context } from './users.js';

export const API_KEY_PREFIXES = { live: 'sk_live_', test: 'sk_test_' } as const;
const LOOKUP_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const LOOKUP_LENGTH = 12;
const KEY_PATTERN = /^sk_(live|test)_([0-9a-z]{12})_([A-Za-z0-9_-]{43})$/;
const CHANNEL = 'api-keys';
const MAX_CACHE_ENTRIES = 50_000;

export interface KeyOwner {
  type: ApiKeyOwnerType;
  id: string;
}

/** What verification needs to know about a key's owner. */
export interface OwnerSnapshot extends KeyOwner {
  active: boolean;
  email: string | null;
  username: string | null;
  /** The owner's plan name (null: the default plan). */
  plan: string | null;
}

export interface VerifiedKey {
  key: ApiKeyRecord;
  owner: OwnerSnapshot;
}

export interface NewKeyInput {
  name: string;
  scopes?: string[];
  expires_at?: Date | null;
  allowed_ips?: string[];
  environment?: 'live' | 'test';
}

/** Whether a bearer value is shaped like one of our API keys (as opposed to an access token). */
export const looksLikeApiKey = (value: string) =>
  value.startsWith('sk_live_') || value.startsWith('sk_test_');

export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

export const displayPrefix = (record: Pick<ApiKeyRecord, 'environment' | 'lookup_id'>) =>
  `${API_KEY_PREFIXES[record.environment]}${record.lookup_id}`;

function newLookupId(): string {
  let id = '';
  for (let i = 0; i < LOOKUP_LENGTH; i += 1) id += LOOKUP_ALPHABET[randomInt(LOOKUP_ALPHABET.length)];
  return id;
}

function newSecret(environment: 'live' | 'test', lookupId: string): string {
  return `${API_KEY_PREFIXES[environment]}${lookupId}_${randomBytes(32).toString('base64url')}`;
}

/* ------------------------------------------------------------------------------------------------ */
/* IP allow-lists                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

/**
 * Normalizes an allow-list entry (an address or a CIDR range, IPv4 or IPv6); undefined when it is
 * neither.
 */
export function parseAllowEntry(
  entry: string,
): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const [address = '', prefixText, extra] = entry.trim().split('/');
  if (extra !== undefined) return undefined;
  const family = isIP(address);
  if (family !== 4 && family !== 6) return undefined;
  const max = family === 4 ? 32 : 128;
  if (prefixText === undefined) return { address, prefix: max, family };
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  return prefix <= max ? { address, prefix, family } : undefined;
}

export function buildAllowList(entries: string[]): BlockList | undefined {
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const parsed = parseAllowEntry(entry);
    if (!parsed) continue; // validated on write; never widen the list with a bad entry
    const type = parsed.family === 4 ? 'ipv4' : 'ipv6';
    if (parsed.prefix === (parsed.family === 4 ? 32 : 128)) list.addAddress(parsed.address, type);
    else list.addSubnet(parsed.address, parsed.prefix, type);
  }
  return list;
}

/** Whether `ip` (as Koa reports it; IPv4-mapped IPv6 counts as IPv4) is on the list. */
export function ipAllowed(list: BlockList, ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const address = mapped ? mapped[1]! : ip;
  const family = isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/* ------------------------------------------------------------------------------------------------ */

interface CachedKey {
  record: ApiKeyRecord;
  allowList: BlockList | undefined;
  at: number;
}

export class ApiKeyService {
  private readonly byLookup = new Map<string, CachedKey>();
  private readonly owners = new Map<string, { snapshot: OwnerSnapshot | null; at: number }>();
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly store: DurableStore,
    private readonly bus: EventBus,
    private readonly audit: AuditService,
    private readonly events: EventRecorder,
    private readonly options: { cacheTtlMs: number; now?: () => Date },
  ) {
    bus.subscribe(CHANNEL, (message) => this.forget(message));
  }

  private now(): Date {
    return this.options.now ? this.options.now() : new Date();
  }

  /* ---------------------------------------------------------------------------------------------- */
  /* Cache                                                                                          */
  /* ---------------------------------------------------------------------------------------------- */

  private forget(message: string): void {
    if (message.startsWith('owner:')) {
      this.owners.delete(message.slice('owner:'.length));
      return;
    }
    this.byLookup.delete(message);
  }

  /** Drops a key (by lookup id) or an owner (`owner:<type>:<id>`) from every instance's cache. */
  async invalidate(message: string): Promise<void> {
    this.forget(message);
    await this.bus.publish(CHANNEL, message);
  }

  /** For UserService.changes: a changed user's cached snapshot goes everywhere. */
  ownerChanged(owner: KeyOwner): void {
    void this.invalidate(`owner:${owner.type}:${owner.id}`).catch(() => {
      // Publishing failed (Redis down): entries still expire after the cache TTL.
    });
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= MAX_CACHE_ENTRIES) map.delete(map.keys().next().value!);
    map.set(key, value);
  }

  private async cachedKey(lookupId: string): Promise<CachedKey | undefined> {
    const now = Date.now();
    const hit = this.byLookup.get(lookupId);
    if (hit && now - hit.at < this.options.cacheTtlMs) return hit;
    const record = await this.store.apiKeys.findByLookupId(lookupId);
    if (!record) {
      this.byLookup.delete(lookupId);
      return undefined;
    }
    const entry = { record, allowList: buildAllowList(record.allowed_ips), at: now };
    this.remember(this.byLookup, lookupId, entry);
    return entry;
  }

  async ownerSnapshot(owner: KeyOwner): Promise<OwnerSnapshot | null> {
    const cacheKey = `${owner.type}:${owner.id}`;
    const now = Date.now();
    const hit = this.owners.get(cacheKey);
    if (hit && now - hit.at < this.options.cacheTtlMs) return hit.snapshot;
    let snapshot: OwnerSnapshot | null = null;
    if (owner.type === 'user') {
      const user = await this.store.users.findById(owner.id, 'include');
      if (user) snapshot = userSnapshot(user);
    } else {
      const client = await this.store.clients.find(owner.id);
      if (client) {
        const plan = client.metadata.plan;
        snapshot = {
          ...owner,
          active: true,
          email: null,
          username: typeof client.metadata.client_name === 'string' ? client.metadata.client_name : null,
          plan: typeof plan === 'string' ? plan : null,
        };
      }
    }
    this.remember(this.owners, cacheKey, { snapshot, at: now });
    return snapshot;
  }

  /* ---------------------------------------------------------------------------------------------- */
  /* Management                                                                                     */
  /* ---------------------------------------------------------------------------------------------- */

  /** The scopes an owner may hand to a key: a user's role permissions, a client's allowed scopes. */
  async grantableScopes(owner: KeyOwner): Promise<Set<string>> {
    if (owner.type === 'client') {
      const client = await this.store.clients.find(owner.id);
      const scope = client?.metadata.scope;
      return new Set(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []);
    }
    const user = await this.store.users.findById(owner.id);
    if (!user) return new Set();
    const [primary, linked] = await Promise.all([
      this.store.roles.findByName(user.role),
      this.store.roles.listForUser(user.id),
    ]);
    return new Set([...(primary?.permissions ?? []), ...linked.flatMap((r) => r.permissions)]);
  }

  /**
   * A key acts as its owner: only the owner themselves, or a caller holding every management scope
   * the owner holds, may create or rotate one (authority.ts, rule 3).
   */
  private guardOwner(owner: KeyOwner, ownerScopes: Iterable<string>, context: Context): void {
    const self = owner.type === context.actor.actor_type && owner.id === context.actor.actor_id;
    if (!self) requireDominance(context.grants, ownerScopes, 'id');
  }

  private async checkOwner(owner: KeyOwner): Promise<void> {
    const exists =
      owner.type === 'user'
        ? await this.store.users.findById(owner.id)
        : await this.store.clients.find(owner.id);
    if (!exists) throw new AppError(owner.type === 'user' ? 'USER_NOT_FOUND' : 'CLIENT_NOT_FOUND');
  }

  async create(
    owner: KeyOwner,
    input: NewKeyInput,
    context: Context,
  ): Promise<{ record: ApiKeyRecord; key: string }> {
    await this.checkOwner(owner);
    const grantable = await this.grantableScopes(owner);
    this.guardOwner(owner, grantable, context);
    // By default a key holds what its owner holds, less management scopes its creator lacks.
    const scopes =
      input.scopes ??
      [...grantable].filter((s) => holds(context.grants, s) || managementScopes([s]).length === 0).sort();
    requireGrantable(context.grants, scopes, 'scopes');
    const refused = scopes.filter((s) => !grantable.has(s));
    if (refused.length > 0) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: 'A key cannot hold scopes its owner does not have',
        details: refused.map((scope) => ({
          field: 'scopes',
          issue: 'Not held by the key owner',
          provided: scope,
        })),
      });
    }
    if (input.expires_at && input.expires_at.getTime() <= this.now().getTime()) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        details: [
          { field: 'expires_at', issue: 'Must be in the future', provided: input.expires_at.toISOString() },
        ],
      });
    }
    const environment = input.environment ?? 'live';
    for (let attempt = 0; ; attempt += 1) {
      const lookupId = newLookupId();
      const key = newSecret(environment, lookupId);
      try {
        const record = await this.events.record(
          () =>
            this.store.apiKeys.create({
              owner_type: owner.type,
              owner_id: owner.id,
              name: input.name,
              environment,
              lookup_id: lookupId,
              secret_hash: hashKey(key),
              scopes: [...new Set(scopes)],
              allowed_ips: normalizeAllowList(input.allowed_ips ?? []),
              expires_at: input.expires_at ?? null,
            }),
          (created) => [
            newEvent('api_key.created', eventActor(context.actor), { api_key: eventApiKey(created) }),
          ],
        );
        await this.audit.record({
          ...context.actor,
          request: context.request,
          action: 'api_key.created',
          target_type: 'api_key',
          target_id: record.id,
          before: null,
          after: publicFields(record),
          details: { owner_type: owner.type, owner_id: owner.id },
        });
        return { record, key };
      } catch (err) {
        // 36^12 lookup ids: a collision is next to impossible, but never fatal.
        if (!(err instanceof StoreConflictError) || attempt >= 3) throw err;
      }
    }
  }

  async list(owner: KeyOwner): Promise<ApiKeyRecord[]> {
    await this.checkOwner(owner);
    return this.store.apiKeys.listByOwner(owner.type, owner.id);
  }

  async get(owner: KeyOwner, keyId: string): Promise<ApiKeyRecord> {
    const record = await this.store.apiKeys.findById(keyId);
    if (!record || record.owner_type !== owner.type || record.owner_id !== owner.id) {
      throw new AppError('API_KEY_NOT_FOUND');
    }
    return record;
  }

  /** A new secret for the same key (id, name, scopes, allow-list); the old secret stops working at once. */
  async rotate(
    owner: KeyOwner,
    keyId: string,
    context: Context,
  ): Promise<{ record: ApiKeyRecord; key: string }> {
    const before = await this.get(owner, keyId);
    this.guardOwner(owner, await this.grantableScopes(owner), context);
    requireGrantable(context.grants, before.scopes, 'key_id');
    if (before.revoked_at) {
      throw new AppError('BUSINESS_RULE_VIOLATION', {
        message: 'A revoked key cannot be rotated; create a new one',
        details: [{ field: 'key_id', issue: 'Key is revoked' }],
      });
    }
    const lookupId = newLookupId();
    const key = newSecret(before.environment, lookupId);
    const record = await this.events.record(
      () => this.store.apiKeys.update(keyId, { lookup_id: lookupId, secret_hash: hashKey(key) }),
      (updated) =>
        updated
          ? [newEvent('api_key.rotated', eventActor(context.actor), { api_key: eventApiKey(updated) })]
          : [],
    );
    if (!record) throw new AppError('API_KEY_NOT_FOUND');
    await this.invalidate(before.lookup_id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'api_key.rotated',
      target_type: 'api_key',
      target_id: keyId,
      before: { prefix: displayPrefix(before) },
      after: { prefix: displayPrefix(record) },
    });
    return { record, key };
  }

  async revoke(owner: KeyOwner, keyId: string, context: Context): Promise<ApiKeyRecord> {
    const before = await this.get(owner, keyId);
    if (before.revoked_at) return before;
    const record = await this.events.record(
      () => this.store.apiKeys.update(keyId, { revoked_at: this.now() }),
      (updated) =>
        updated
          ? [newEvent('api_key.revoked', eventActor(context.actor), { api_key: eventApiKey(updated) })]
          : [],
    );
    if (!record) throw new AppError('API_KEY_NOT_FOUND');
    await this.invalidate(before.lookup_id);
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'api_key.revoked',
      target_type: 'api_key',
      target_id: keyId,
      before: publicFields(before),
      after: publicFields(record),
    });
    return record;
  }

  /* ---------------------------------------------------------------------------------------------- */
  /* Verification                                                                                   */
  /* ---------------------------------------------------------------------------------------------- */

  /**
   * Checks a presented key: known, matching, not revoked, not expired, used from an allowed
   * address, owner active. Throws the AppError to answer with.
   */
  async verify(presented: string, ip: string): Promise<VerifiedKey> {
    const match = KEY_PATTERN.exec(presented);
    if (!match) throw new AppError('API_KEY_INVALID');
    const cached = await this.cachedKey(match[2]!);
    if (!cached || !sameHash(cached.record.secret_hash, hashKey(presented)))
      throw new AppError('API_KEY_INVALID');
    const { record } = cached;
    if (record.revoked_at) throw new AppError('API_KEY_INVALID');
    if (record.expires_at && record.expires_at.getTime() <= this.now().getTime()) {
      throw new AppError('API_KEY_EXPIRED');
    }
    if (cached.allowList && !ipAllowed(cached.allowList, ip)) throw new AppError('IP_NOT_ALLOWED');
    const owner = await this.ownerSnapshot({ type: record.owner_type, id: record.owner_id });
    if (!owner) throw new AppError('API_KEY_INVALID');
    if (!owner.active) throw new AppError('USER_INACTIVE');
    this.noteUse(record);
    return { key: record, owner };
  }

  /** Whether tokens minted from this key may still be used: the key exists, unrevoked, unexpired. */
  async usable(keyId: string): Promise<boolean> {
    const record = await this.store.apiKeys.findById(keyId);
    if (!record || record.revoked_at) return false;
    return !record.expires_at || record.expires_at.getTime() > this.now().getTime();
  }

  /** last_used_at, written at most once a minute per key and instance, off the request's path. */
  private noteUse(record: ApiKeyRecord): void {
    const now = this.now();
    const last = this.touched.get(record.id) ?? record.last_used_at?.getTime() ?? 0;
    if (now.getTime() - last < 60_000) return;
    this.remember(this.touched, record.id, now.getTime());
    void this.store.apiKeys.touch(record.id, now).catch(() => {
      // Best effort: a missed last_used_at must never fail a verification.
    });
  }
}

function userSnapshot(user: User): OwnerSnapshot {
  const username = user.metadata.username;
  return {
    type: 'user',
    id: user.id,
    active: isActiveUser(user),
    email: user.email,
    username: typeof username === 'string' ? username : user.email,
    plan: user.plan,
  };
}

function sameHash(stored: string, presented: string): boolean {
  const a = Buffer.from(stored, 'hex');
  const b = Buffer.from(presented, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Validated entries in canonical text (`10.0.0.0/8`, `2001:db8::/32`, `203.0.113.7`), duplicates dropped. */
export function normalizeAllowList(entries: string[]): string[] {
  const out = new Set<string>();
  for (const entry of entries) {
    const parsed = parseAllowEntry(entry);
    if (!parsed) throw new Error(`invalid allow-list entry: ${entry}`);
    const full = parsed.family === 4 ? 32 : 128;
    out.add(parsed.prefix === full ? parsed.address : `${parsed.address}/${parsed.prefix}`);
  }
  return [...out];
}

/** A key's fields fit for the audit trail and API answers (never the hash). */
export function publicFields(record: ApiKeyRecord) {
  return {
    id: record.id,
    name: record.name,
    prefix: displayPrefix(record),
    scopes: record.scopes,
    allowed_ips: record.allowed_ips,
    created_at: record.created_at,
    expires_at: record.expires_at,
    last_used_at: record.last_used_at,
    revoked_at: record.revoked_at,
  };
}
