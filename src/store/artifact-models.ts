/** Facts about oidc-provider's models that artifact adapters need. */
import type { ArtifactPayload } from './ports.js';

/** Grant-bound models: their artifacts are indexed by grant id so revokeByGrantId can find them. */
export const GRANTABLE_MODELS: ReadonlySet<string> = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

/**
 * The account an artifact belongs to, whatever its model (sessions, grants, codes, tokens, ...): any
 * payload naming one is revoked with it. An empty id names nobody.
 */
export function accountIdOf(payload: ArtifactPayload): string | null {
  const { accountId } = payload;
  return typeof accountId === 'string' && accountId !== '' ? accountId : null;
}
