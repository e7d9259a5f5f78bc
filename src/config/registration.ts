/** Whether self-service sign-up is open: REGISTRATION, or by default everywhere but production. */
export function registrationOpen(config: { registration: '' | 'open' | 'closed'; nodeEnv: string }): boolean {
  return config.registration === 'open' || (config.registration === '' && config.nodeEnv !== 'production');
}
