/**
 * Resource indicators (RFC 8707): a registered API gets tokens whose audience is its identifier and
 * whose scopes are limited to the scopes it defines, further limited to a client's allowed `scope`
 * when the client has one. Unknown resources are refused with invalid_target.
 */
import { errors, type Client, type ResourceServer } from 'oidc-provider';

import type { ResourceServerRecord, ResourceServerRepository } from '../store/ports.js';

/**
 * The longest access-token lifetime an API may have. Retired signing keys stay published at least
 * this long (see app.ts), so every JWT access token they signed can be verified until it expires.
 */
export const MAX_RESOURCE_TOKEN_TTL_S = 86_400;

/** An API served by this server itself (the management API), with its own scopes and token rules. */
export interface BuiltInResource {
  identifier: string;
  scopes: readonly string[];
  accessTokenTtlS: number;
}

export class ResourceServers {
  private readonly cache = new Map<string, { at: number; record: ResourceServerRecord }>();

  constructor(
    private readonly repo: ResourceServerRepository,
    private readonly cacheTtlMs: number,
    private readonly builtIn: BuiltInResource[] = [],
  ) {}

  private async find(identifier: string): Promise<ResourceServerRecord | null> {
    const hit = this.cache.get(identifier);
    if (hit && Date.now() - hit.at < this.cacheTtlMs) return hit.record;
    const record = await this.repo.findByIdentifier(identifier);
    if (!record) return null; // misses are not cached: an API registered elsewhere works at once
    if (this.cacheTtlMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(identifier, { at: Date.now(), record });
    }
    return record;
  }

  invalidate(identifier?: string): void {
    if (identifier === undefined) this.cache.clear();
    else this.cache.delete(identifier);
  }

  /**
   * What a token for `indicator` may carry. A client acting for itself (client credentials) gets only
   * the API scopes granted to it: named in its `scope` or its `api_scopes`; a user's token may carry
   * any of the API's scopes the user consents to.
   */
  async infoFor(indicator: string, client: Client, forClientItself = false): Promise<ResourceServer> {
    const own = this.builtIn.find((r) => r.identifier === indicator);
    const record: Pick<
      ResourceServerRecord,
      'identifier' | 'scopes' | 'access_token_format' | 'access_token_ttl'
    > | null = own
      ? {
          identifier: own.identifier,
          scopes: [...own.scopes],
          access_token_format: 'jwt',
          access_token_ttl: own.accessTokenTtlS,
        }
      : await this.find(indicator);
    if (!record) throw new errors.InvalidTarget('unknown or unregistered resource indicator');
    const granted = new Set([
      ...(typeof client.scope === 'string' ? client.scope.split(' ') : []),
      ...((client['api_scopes'] as string[] | undefined) ?? []),
    ]);
    const scopes = forClientItself ? record.scopes.filter((s) => granted.has(s)) : record.scopes;
    return {
      scope: scopes.join(' '),
      audience: record.identifier,
      accessTokenTTL: Math.min(record.access_token_ttl, MAX_RESOURCE_TOKEN_TTL_S),
      accessTokenFormat: record.access_token_format,
      ...(record.access_token_format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
    };
  }
}
