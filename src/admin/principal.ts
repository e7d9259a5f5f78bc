/** Who is calling the management API, as established by the bearer-token middleware. */
export interface Principal {
  /** `client`: a service token (client credentials); `user`: a token issued to a signed-in user. */
  kind: 'client' | 'user';
  clientId: string;
  userId: string | undefined;
  /** Effective scopes: for user tokens, only those the user's roles also grant. */
  scopes: ReadonlySet<string>;
  /** The token's identifier (never the token itself), for the audit trail. */
  tokenId: string;
  /** The API key the token was minted from, if any. */
  apiKeyId?: string;
}

export function principalActor(principal: Principal | undefined) {
  if (!principal) return { actor_type: 'system' as const, actor_id: 'system', actor_client_id: null };
  return {
    actor_type: principal.kind,
    actor_id: principal.userId ?? principal.clientId,
    actor_client_id: principal.clientId,
  };
}
