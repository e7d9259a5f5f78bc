/**
 * OpenID Connect Back-Channel Logout 1.0: which clients are told that a user's session ended, put
 * into the durable outbox. Each logout is an outbox event of the internal type `backchannel.logout`
 * (client, subject, session id) with one delivery to the endpoint `bcl_<client_id>`, written as one
 * unit (EventRecorder.record's `direct` records), so a logout accepted is never lost and each
 * client gets its own lanes; the BackchannelLogoutWorker (src/oidc/backchannel-delivery.ts) signs
 * the logout token at send time and retries. Like mail, these events are never fanned out to
 * webhooks nor given to event consumers.
 *
 * Two ways in:
 * - RP-initiated logout (/oauth/logout): oidc-provider names each client of the session that has a
 *   backchannel_logout_uri (its Client#backchannelLogout, replaced in provider.ts to come here).
 * - Sessions ended by a change to the user (suspension, deactivation, deletion, a password reset, a
 *   forced reset): before the user's artifacts are revoked, the user's sessions (each client's sid)
 *   and grants (clients without a live session, offline access) name the clients to tell.
 */
import type { EventRecorder, DirectRecord } from '../events/recorder.js';
import { newId } from '../store/ids.js';
import type { ArtifactStore, ClientRepository, EventActor, JsonObject, OutboxEvent } from '../store/ports.js';

export const BACKCHANNEL_LOGOUT_EVENT = 'backchannel.logout';
/** Endpoint ids of the deliveries: one per client (`bcl_<client_id>`), claimed by their worker. */
export const BACKCHANNEL_ENDPOINT_PREFIX = 'bcl_';

export const backchannelEndpoint = (clientId: string) => `${BACKCHANNEL_ENDPOINT_PREFIX}${clientId}`;

/** One client to tell that a session of `sub` ended. */
export interface BackchannelLogout {
  clientId: string;
  sub: string;
  /** The session id the client saw in its ID tokens; null when no session is known (a grant only). */
  sid: string | null;
}

/** What a stored logout event says (null when the event is not one). */
export function openBackchannelLogout(event: OutboxEvent): BackchannelLogout | null {
  const { client_id, sub, sid } = event.data as Record<string, unknown>;
  if (event.type !== BACKCHANNEL_LOGOUT_EVENT || typeof client_id !== 'string' || typeof sub !== 'string')
    return null;
  return { clientId: client_id, sub, sid: typeof sid === 'string' ? sid : null };
}

export interface BackchannelLogoutLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The parts of an oidc-provider Session payload read here. */
interface SessionPayload {
  authorizations?: Record<string, { sid?: unknown } | undefined>;
}

export class BackchannelLogouts {
  constructor(
    private readonly events: EventRecorder,
    private readonly clients: ClientRepository,
    private readonly artifacts: ArtifactStore,
    private readonly log: BackchannelLogoutLog,
  ) {}

  /** Stores one logout per entry (durable once this resolves); the worker is woken for them. */
  async enqueue(logouts: readonly BackchannelLogout[], actor: EventActor): Promise<void> {
    if (logouts.length === 0) return;
    const records = logouts.map((logout) => record(logout, actor));
    await this.events.record(
      async () => undefined,
      () => [],
      () => records,
    );
    this.log.info(
      {
        user_id: logouts[0]!.sub,
        clients: logouts.map((l) => l.clientId),
        logout_events: records.map((r) => r.event.id),
      },
      'back-channel logouts queued',
    );
  }

  /**
   * Every client with a back-channel logout URI that one of the user's live sessions or grants
   * covers is told that the user's sessions ended. Call it before the artifacts are revoked.
   * A client that requires `sid` is told only of the sessions it is part of. Returns how many
   * logouts were queued.
   */
  async endingSessionsOf(userId: string, actor: EventActor): Promise<number> {
    const [sessions, grants] = await Promise.all([
      this.artifacts.listByAccountId(userId, 'Session'),
      this.artifacts.listByAccountId(userId, 'Grant'),
    ]);
    const sids = new Map<string, Set<string>>();
    for (const session of sessions as SessionPayload[]) {
      for (const [clientId, authorization] of Object.entries(session.authorizations ?? {})) {
        const sid = authorization?.sid;
        const known = sids.get(clientId) ?? new Set<string>();
        if (typeof sid === 'string' && sid) known.add(sid);
        sids.set(clientId, known);
      }
    }
    for (const grant of grants) {
      const clientId = grant.clientId;
      if (typeof clientId === 'string' && !sids.has(clientId)) sids.set(clientId, new Set());
    }
    const logouts: BackchannelLogout[] = [];
    for (const [clientId, known] of sids) {
      const client = await this.clients.find(clientId);
      const target = client ? logoutTarget(client.metadata) : null;
      if (!target) continue;
      if (known.size > 0) {
        for (const sid of known) logouts.push({ clientId, sub: userId, sid });
      } else if (!target.sessionRequired) {
        logouts.push({ clientId, sub: userId, sid: null });
      }
    }
    await this.enqueue(logouts, actor);
    return logouts.length;
  }
}

/** Where a client wants its logout tokens, or null when it registered no back-channel logout. */
export function logoutTarget(metadata: JsonObject): { uri: string; sessionRequired: boolean } | null {
  const uri = metadata.backchannel_logout_uri;
  if (typeof uri !== 'string' || uri === '') return null;
  return { uri, sessionRequired: metadata.backchannel_logout_session_required === true };
}

function record(logout: BackchannelLogout, actor: EventActor): DirectRecord {
  const now = new Date();
  const event: OutboxEvent = {
    // Also the logout token's jti: the same on every attempt, so a receiver recognizes a retry.
    id: newId('evt', now.getTime()),
    type: BACKCHANNEL_LOGOUT_EVENT,
    timestamp: now,
    actor,
    data: { client_id: logout.clientId, sub: logout.sub, sid: logout.sid },
  };
  return { event, endpointId: backchannelEndpoint(logout.clientId) };
}
