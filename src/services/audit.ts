/**
 * The audit trail: every mutation through the API (and sign-ins) is appended with who, what, when,
 * the request id, and the before/after of changed fields. Secrets never enter it: password hashes,
 * secret hashes and anything named like a credential are replaced before the entry is written.
 */
import type { AuditEntry, AuditRepository, JsonObject, JsonValue, NewAuditEntry } from '../store/ports.js';

export interface RequestFacts {
  request_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
}

export type Actor = Pick<AuditEntry, 'actor_type' | 'actor_id' | 'actor_client_id'>;

const SECRET = /password|secret|token|hash|private|api_key|^key$/i;
/**
 * Names the pattern above catches that hold settings or flags, not credentials: hiding them would
 * hide what an administrator changed (a forced password reset, a client's authentication method).
 */
const NOT_SECRET = new Set([
  'password_reset_required',
  'token_endpoint_auth_method',
  'token_endpoint_auth_signing_alg',
  'access_token_format',
  'access_token_ttl',
  'subject_token_type',
]);
const isSecret = (name: string) => SECRET.test(name) && !NOT_SECRET.has(name);

function toJson(value: unknown): JsonValue {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, isSecret(k) ? '[REDACTED]' : toJson(v)]),
    );
  }
  return value as JsonValue;
}

/** `{ field: { before, after } }` for the fields that differ; secrets show only that they changed. */
export function diff(
  before: Record<string, unknown> | null,
  after: Record<string, unknown> | null,
): JsonObject | null {
  const fields = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
  const changes: JsonObject = {};
  for (const field of fields) {
    const a = toJson(before?.[field]);
    const b = toJson(after?.[field]);
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    changes[field] = isSecret(field)
      ? { before: '[REDACTED]', after: '[REDACTED]' }
      : { before: a, after: b };
  }
  return Object.keys(changes).length > 0 ? changes : null;
}

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  async record(
    entry: Omit<NewAuditEntry, 'request_id' | 'ip_address' | 'user_agent' | 'changes' | 'details'> & {
      request?: RequestFacts;
      before?: Record<string, unknown> | null;
      after?: Record<string, unknown> | null;
      details?: Record<string, unknown>;
    },
  ): Promise<AuditEntry> {
    return this.repo.append(this.toEntry(entry));
  }

  private toEntry(
    entry: Omit<NewAuditEntry, 'request_id' | 'ip_address' | 'user_agent' | 'changes' | 'details'> & {
      request?: RequestFacts;
      before?: Record<string, unknown> | null;
      after?: Record<string, unknown> | null;
      details?: Record<string, unknown>;
    },
  ): NewAuditEntry {
    const { request, before, after, details, ...rest } = entry;
    return {
      ...rest,
      request_id: request?.request_id ?? null,
      ip_address: request?.ip_address ?? null,
      user_agent: request?.user_agent ?? null,
      changes: before === undefined && after === undefined ? null : diff(before ?? null, after ?? null),
      details: details ? (toJson(details) as JsonObject) : null,
    };
  }

  /** Several entries in one write (bulk operations). */
  async recordMany(entries: Parameters<AuditService['record']>[0][]): Promise<void> {
    await this.repo.appendMany(entries.map((e) => this.toEntry(e)));
  }

  list = (...args: Parameters<AuditRepository['list']>) => this.repo.list(...args);
  count = (...args: Parameters<AuditRepository['count']>) => this.repo.count(...args);
}
