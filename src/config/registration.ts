export type RegistrationMode = 'open' | 'invite' | 'closed';

/**
 * How self-service sign-up works: REGISTRATION, or by default `closed` in production and `open`
 * everywhere else. `invite`: only with an invitation an administrator mailed (POST /v2/invitations).
 */
export function registrationMode(config: {
  registration: '' | RegistrationMode;
  nodeEnv: string;
}): RegistrationMode {
  if (config.registration !== '') return config.registration;
  return config.nodeEnv === 'production' ? 'closed' : 'open';
}

/** Whether anyone may sign up (REGISTRATION=open, or its default outside production). */
export function registrationOpen(config: { registration: '' | RegistrationMode; nodeEnv: string }): boolean {
  return registrationMode(config) === 'open';
}
