/** Facts about oidc-provider's models that artifact adapters need. */

/** Grant-bound models: their artifacts are indexed by grant id so revokeByGrantId can find them. */
export const GRANTABLE_MODELS: ReadonlySet<string> = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);
