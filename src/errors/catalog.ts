/**
 * Every error code the service returns outside the OAuth endpoints, with its fixed HTTP status and
 * default message (shared/API.md). Codes are part of the public contract: add, never rename.
 */
export const ERROR_CATALOG = {
  VALIDATION_ERROR: { status: 400, message: 'The request contains invalid data' },
  MISSING_REQUIRED_FIELD: { status: 400, message: 'A required field is missing' },
  INVALID_EMAIL_FORMAT: { status: 400, message: 'The email address is not valid' },
  INVALID_ROLE: { status: 400, message: 'The role does not exist' },
  INVALID_POLICY: {
    status: 400,
    message: 'The policy is not valid Cedar; details give Cedar’s own messages',
  },
  INVALID_POLICY_SCHEMA: {
    status: 400,
    message: 'The schema is not a valid Cedar schema; details give Cedar’s own messages',
  },
  INVALID_POLICY_ENTITY: {
    status: 400,
    message: 'The entity is not valid (or does not meet the schema); details give Cedar’s own messages',
  },
  MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON' },
  INVALID_ENCODING: { status: 400, message: 'The request body is not valid UTF-8' },
  AUTH_TOKEN_MISSING: { status: 401, message: 'An access token is required' },
  AUTH_TOKEN_INVALID: { status: 401, message: 'The access token is invalid' },
  AUTH_TOKEN_EXPIRED: { status: 401, message: 'The access token has expired' },
  AUTH_INSUFFICIENT_SCOPE: { status: 403, message: 'The access token lacks the scope this operation needs' },
  API_KEY_MISSING: { status: 401, message: 'An API key is required (Authorization: Bearer <api key>)' },
  API_KEY_INVALID: { status: 401, message: 'The API key is invalid or has been revoked' },
  API_KEY_EXPIRED: { status: 401, message: 'The API key has expired' },
  IP_NOT_ALLOWED: { status: 403, message: 'The API key may not be used from this address' },
  ACCESS_DENIED: { status: 403, message: 'The policies do not allow this request' },
  USER_INACTIVE: { status: 403, message: 'The owner of this API key is suspended or deleted' },
  NOT_FOUND: { status: 404, message: 'No such resource' },
  USER_NOT_FOUND: { status: 404, message: 'User not found' },
  ROLE_NOT_FOUND: { status: 404, message: 'Role not found' },
  CLIENT_NOT_FOUND: { status: 404, message: 'Client not found' },
  RESOURCE_NOT_FOUND: { status: 404, message: 'API (resource server) not found' },
  API_KEY_NOT_FOUND: { status: 404, message: 'API key not found' },
  REGISTRATION_TOKEN_NOT_FOUND: { status: 404, message: 'Initial access token not found' },
  WEBHOOK_NOT_FOUND: { status: 404, message: 'Webhook not found' },
  WEBHOOK_URL_REFUSED: {
    status: 400,
    message: 'The webhook URL is refused (scheme, a private or unresolvable address)',
  },
  DELIVERY_NOT_FOUND: { status: 404, message: 'Delivery not found' },
  POLICY_NOT_FOUND: { status: 404, message: 'Policy not found' },
  SSO_CONNECTION_NOT_FOUND: { status: 404, message: 'Single sign-on connection not found' },
  MFA_FACTOR_NOT_FOUND: { status: 404, message: 'Second factor not found' },
  POLICY_ENTITY_NOT_FOUND: { status: 404, message: 'Policy entity not found' },
  PLAN_NOT_FOUND: { status: 404, message: 'Plan not found' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'This method is not allowed on this resource' },
  USER_ALREADY_EXISTS: { status: 409, message: 'A user with this email already exists' },
  CONFLICT: { status: 409, message: 'The resource already exists or was changed concurrently' },
  SSO_DOMAIN_TAKEN: { status: 409, message: 'A domain already has a single sign-on connection' },
  CONFUSABLE_EMAIL: {
    status: 409,
    message: 'The email address looks the same as the address of an existing user',
  },
  SELF_PROTECTION: { status: 409, message: 'A client cannot remove its own access this way' },
  LAST_ADMINISTRATOR: {
    status: 409,
    message: 'This would leave no administrator: the last one cannot be removed',
  },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be application/json' },
  REQUEST_HEADERS_TOO_LARGE: {
    status: 431,
    message: 'The request line and headers are too large (a long query string counts)',
  },
  BUSINESS_RULE_VIOLATION: { status: 422, message: 'The request breaks a business rule' },
  EMAIL_NOT_CONFIGURED: {
    status: 422,
    message:
      'E-mail is off on this server (SMTP_URL is not set), so no message can be sent; the operator has to set SMTP_URL',
  },
  REGISTRATION_CLOSED: {
    status: 422,
    message:
      'Sign-up is closed on this server (REGISTRATION=closed): invitations need REGISTRATION=invite or open',
  },
  POLICY_SCHEMA_VIOLATION: {
    status: 422,
    message: 'The policy is valid Cedar but does not meet the policy schema; details give Cedar’s messages',
  },
  INVALID_CURSOR: { status: 422, message: 'The cursor is not one this list issued for this sort order' },
  INVALID_CLIENT_METADATA: {
    status: 422,
    message: 'The client metadata is well-formed, but the OpenID provider cannot use it as a whole',
  },
  RATE_LIMIT_EXCEEDED: { status: 429, message: 'Too many requests; retry later' },
  QUOTA_EXCEEDED: { status: 429, message: 'The quota for this period is used up' },
  INTERNAL_ERROR: { status: 500, message: 'An unexpected error occurred' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'The service is temporarily unavailable' },
  STORE_UNAVAILABLE: { status: 503, message: 'A data store is unavailable; retry shortly' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;
