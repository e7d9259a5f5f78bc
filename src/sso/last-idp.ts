/** The connection of a user's latest upstream sign-in, kept as an artifact for the `idp` claim. */
import type { ArtifactStore } from '../store/ports.js';

export const LAST_IDP_MODEL = 'SsoLastIdp';

export async function rememberIdp(
  artifacts: ArtifactStore,
  userId: string,
  connectionId: string,
  ttlS: number,
) {
  await artifacts.adapterFor(LAST_IDP_MODEL).upsert(userId, { connection_id: connectionId }, ttlS);
}

export async function lastIdp(artifacts: ArtifactStore, userId: string): Promise<string | undefined> {
  const found = await artifacts.adapterFor(LAST_IDP_MODEL).find(userId);
  return typeof found?.connection_id === 'string' ? found.connection_id : undefined;
}
