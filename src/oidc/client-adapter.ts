/**
 * oidc-provider's `Client` model, read from our durable client records. The stored secret hash is
 * handed to the provider as `client_secret`; the provider's secret comparison is replaced (see
 * provider.ts) so it checks presented secrets against that hash. Records are cached in memory for
 * CLIENT_CACHE_TTL_S so hot endpoints do not read the store on every request; changes made on
 * another instance therefore apply within that time.
 */
import type { ClientRecord, ClientRepository } from '../store/ports.js';
import type { ArtifactAdapter, ArtifactPayload } from '../store/ports.js';

/** The metadata oidc-provider validates and uses, from one of our client records. */
export function toProviderMetadata(record: ClientRecord): ArtifactPayload {
  return {
    ...record.metadata,
    client_id: record.client_id,
    ...(record.client_secret_hash ? { client_secret: record.client_secret_hash } : {}),
    first_party: record.first_party,
  };
}

export class ClientAdapter implements ArtifactAdapter {
  private readonly cache = new Map<string, { at: number; metadata: ArtifactPayload }>();

  constructor(
    private readonly clients: ClientRepository,
    private readonly cacheTtlMs: number,
  ) {}

  async find(id: string): Promise<ArtifactPayload | undefined> {
    const hit = this.cache.get(id);
    if (hit && Date.now() - hit.at < this.cacheTtlMs) return hit.metadata;
    const record = await this.clients.find(id);
    if (!record) return undefined; // misses are not cached: a client created elsewhere works at once
    const metadata = toProviderMetadata(record);
    if (this.cacheTtlMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(id, { at: Date.now(), metadata });
    }
    return metadata;
  }

  /** Forgets a client at once (after a change made through this instance). */
  invalidate(id: string): void {
    this.cache.delete(id);
  }

  // Clients are managed through the admin API and CLI, never written by the provider (dynamic
  // registration is off), so the write side of the adapter interface is refused.
  async upsert(): Promise<void> {
    throw new Error('clients are not written through oidc-provider');
  }
  async destroy(): Promise<void> {
    throw new Error('clients are not written through oidc-provider');
  }
  async consume(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
}
