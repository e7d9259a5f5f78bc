/**
 * oidc-provider artifacts in Redis. Every key carries a native TTL; writes, consumption, destruction
 * and grant or account revocation each run as one Lua script (scripts.ts) over the layout in keys.ts.
 */
import { accountIdOf, GRANTABLE_MODELS } from '../artifact-models.js';
import { checkExpiresIn } from '../errors.js';
import type { ArtifactAdapter, ArtifactPayload, ArtifactStore } from '../ports.js';
import type { RedisConnection } from './connection.js';
import type { KeyLayout } from './keys.js';
import {
  CONSUME_ARTIFACT,
  DESTROY_ARTIFACT,
  LIST_ACCOUNT,
  REVOKE_ACCOUNT,
  REVOKE_GRANT,
  UPSERT_ARTIFACT,
} from './scripts.js';

/** HMGET of a missing key (or field) gives nulls, never an error: a miss is `payload === null`. */
function toPayload([payload, consumed]: (string | null)[]): ArtifactPayload | undefined {
  if (payload === null || payload === undefined) return undefined;
  const parsed = JSON.parse(payload) as ArtifactPayload;
  if (consumed !== null && consumed !== undefined) parsed.consumed = Number(consumed);
  return parsed;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

class RedisArtifactAdapter implements ArtifactAdapter {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: KeyLayout,
    private readonly model: string,
  ) {}

  async upsert(id: string, payload: ArtifactPayload, expiresIn: number): Promise<void> {
    const ttlMs = checkExpiresIn(this.model, expiresIn) * 1000;
    const { uid, userCode, grantId, consumed } = payload;
    // As in oidc-provider's own adapters: only sessions are found by uid, and only grant-bound
    // models are revoked with their grant, whatever else carries a grantId.
    const uidKey = this.model === 'Session' && typeof uid === 'string' && uid ? this.keys.uid(uid) : '';
    const userCodeKey = typeof userCode === 'string' && userCode ? this.keys.userCode(userCode) : '';
    const grantKey =
      GRANTABLE_MODELS.has(this.model) && typeof grantId === 'string' && grantId
        ? this.keys.grant(grantId)
        : '';
    const accountId = accountIdOf(payload);
    const accountKey = accountId === null ? '' : this.keys.account(accountId);
    const indexes = [uidKey, userCodeKey, grantKey, accountKey];
    await this.redis.run(
      UPSERT_ARTIFACT,
      [this.keys.artifact(this.model, id), ...indexes.filter(Boolean)],
      [
        id,
        JSON.stringify(payload),
        ttlMs,
        Number.isFinite(consumed) ? (consumed as number) : '',
        ...indexes.map((k) => (k ? '1' : '0')),
      ],
    );
  }

  async find(id: string): Promise<ArtifactPayload | undefined> {
    return toPayload(
      await this.redis.readFields(this.keys.artifact(this.model, id), ['payload', 'consumed']),
    );
  }

  async findByUid(uid: string): Promise<ArtifactPayload | undefined> {
    return this.findThrough(this.keys.uid(uid));
  }

  async findByUserCode(userCode: string): Promise<ArtifactPayload | undefined> {
    return this.findThrough(this.keys.userCode(userCode));
  }

  async consume(id: string): Promise<void> {
    await this.redis.run(CONSUME_ARTIFACT, [this.keys.artifact(this.model, id)], [nowSeconds()]);
  }

  async destroy(id: string): Promise<void> {
    await this.redis.run(DESTROY_ARTIFACT, [this.keys.artifact(this.model, id)], []);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.redis.run(REVOKE_GRANT, [this.keys.grant(grantId)], []);
  }

  /** A lookup may outlive its target by a moment, or point at a destroyed one: then it is a miss. */
  private async findThrough(lookupKey: string): Promise<ArtifactPayload | undefined> {
    const id = await this.redis.readString(lookupKey);
    return id === null ? undefined : this.find(id);
  }
}

export class RedisArtifactStore implements ArtifactStore {
  readonly kind = 'redis' as const;
  private readonly adapters = new Map<string, RedisArtifactAdapter>();

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: KeyLayout,
  ) {}

  adapterFor(model: string): ArtifactAdapter {
    let adapter = this.adapters.get(model);
    if (!adapter) {
      adapter = new RedisArtifactAdapter(this.redis, this.keys, model);
      this.adapters.set(model, adapter);
    }
    return adapter;
  }

  async revokeByAccountId(accountId: string): Promise<number> {
    if (accountId === '') return 0;
    return Number(await this.redis.run(REVOKE_ACCOUNT, [this.keys.account(accountId)], []));
  }

  async listByAccountId(accountId: string, model: string): Promise<ArtifactPayload[]> {
    if (accountId === '') return [];
    const found = (await this.redis.run(
      LIST_ACCOUNT,
      [this.keys.account(accountId)],
      [this.keys.artifact(model, '')],
    )) as [string, string | false][];
    return found.map(([payload, consumed]) => toPayload([payload, consumed === false ? null : consumed])!);
  }

  ping(): Promise<void> {
    return this.redis.ping();
  }

  /** The counters share this connection, so closing the artifact store closes them too. */
  close(): Promise<void> {
    return this.redis.close();
  }
}
