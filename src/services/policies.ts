/**
 * Policy decisions: Cedar policies behind /v2/policies (every write checked by Cedar, against the
 * schema when one is set; every version kept; audited), registered entities behind
 * /v2/policy-entities, and the decisions of /v1/authorize.
 *
 * The enabled policies are compiled once per change and shared by every request of the instance.
 * A change made here is applied at once; other instances hear of it on the event bus, and in any
 * case look at the store's revision marker once the cache period (POLICY_CACHE_TTL_MS, 5 s by
 * default) has passed, so a change they did not hear of is in force there within that bound.
 *
 * Decisions and what they are built from are kept per instance for POLICY_DECISION_CACHE_TTL_S
 * (0: nothing is kept): the answer to a Cedar request, by a digest of the whole request (principal,
 * action, resource, context and every entity handed to Cedar) within the compiled set that gave it,
 * so a changed user, role or entity makes a different request and a changed policy a different set;
 * the role names of a user (with the primary role they were read for), dropped when the user's roles
 * change; and registered entities by uid (absent ones too), dropped when one is written or removed.
 * Those drops are announced on POLICY_INPUTS_CHANNEL, so every instance makes them at once. The user
 * record itself is read from the store (its own cache) for every decision.
 *
 * Entities come from our data: `User::"<id>"` (attributes email, status, email_verified, role,
 * plan, metadata; parents the `Role::"<name>"` of every role the user holds), `Client::"<id>"`;
 * other entities are sent with the request or registered. Ours win over sent ones of the same uid.
 */
import { createHash, randomUUID } from 'node:crypto';

import { AppError } from '../errors/app-error.js';
import type { Principal } from '../admin/principal.js';
import { principalActor } from '../admin/principal.js';
import { StoreConflictError } from '../store/errors.js';
import type {
  DurableStore,
  EventBus,
  JsonObject,
  PolicyEntityRecord,
  PolicyRecord,
  PolicySchemaRecord,
  PolicyVersion,
  User,
} from '../store/ports.js';
import type { AuditService, RequestFacts } from './audit.js';
import { DEFAULT_PLAN } from './plans.js';
import {
  checkEntities,
  checkPolicyText,
  checkSchemaText,
  CompiledPolicySet,
  SubsetCache,
  toCedarRecord,
  type CedarEntity,
  type CedarRequest,
  type Decision,
  type Uid,
} from './policy-engine.js';
import { TtlCache } from './policy-cache.js';
import type { Context } from './users.js';
import type { CedarValueJson } from '@cedar-policy/cedar-wasm/nodejs';

/** The bus channel on which instances hear that policies or the schema changed. */
export const POLICY_CHANGES_CHANNEL = 'policies:changed';
/**
 * The bus channel on which instances hear that what decisions are built from changed: a user's id
 * (their roles), or `*` (a role was created or deleted, a registered entity written or removed).
 */
export const POLICY_INPUTS_CHANNEL = 'policies:inputs-changed';
/** The scope that lets a token ask about any principal. */
export const EVALUATE_SCOPE = 'policy:evaluate';
/** Checks in one /v1/authorize/batch request. */
export const MAX_BATCH = 100;
/** How far up registered entities' parents are followed for one request. */
const MAX_ENTITY_DEPTH = 8;
/** Entries of each per-instance cache of decisions and entities. */
const MAX_CACHED = 10_000;

export interface PolicyServiceOptions {
  /** How long a compiled set is used before the store's revision is looked at again. */
  cacheTtlMs: number;
  /** Fraction of decisions written to the audit trail (0: none, 1: all). */
  decisionLogSampleRate: number;
  /** POLICY_DECISION_CACHE_TTL_S in milliseconds: how long decisions and entities are kept (0: not). */
  decisionCacheTtlMs?: number;
  random?: () => number;
  now?: () => number;
}

export interface PolicyInput {
  id?: string;
  description?: string | null;
  policy: string;
  enabled?: boolean;
}

export type PolicyUpdate = Partial<Omit<PolicyInput, 'id'>>;

/** One question: may `principal` do `action` on `resource`? */
export interface AuthorizeCheck {
  principal: Uid;
  action: Uid;
  resource: Uid;
  context?: Record<string, unknown>;
  /** Resource entities and their parents, in Cedar's JSON form. */
  entities?: CedarEntity[];
}

interface Compiled {
  set: CompiledPolicySet;
  revision: string;
  at: number;
}

const key = (uid: Uid) => `${uid.type}\u0000${uid.id}`;

function policyRejected(kind: 'syntax' | 'schema', messages: string[], field = 'policy'): AppError {
  return new AppError(kind === 'syntax' ? 'INVALID_POLICY' : 'POLICY_SCHEMA_VIOLATION', {
    details: messages.map((issue) => ({ field, issue })),
  });
}

export class PolicyService {
  private compiled: Compiled | undefined;
  private loading: Promise<Compiled> | undefined;
  private generation = 0;
  private readonly subsets = new SubsetCache();
  private readonly random: () => number;
  /** Answers by digest of the Cedar request, for the compiled set `decisionsOf` only. */
  private readonly decisions: TtlCache<Decision>;
  private decisionsOf: CompiledPolicySet | undefined;
  /** A user's role names by user id, with the primary role they were read for. */
  private readonly roleNames: TtlCache<{ role: string; names: string[] }>;
  /** Registered entities by uid key; null: none registered. */
  private readonly registeredEntities: TtlCache<CedarEntity | null>;
  /** Decisions answered from `decisions`, and evaluated by Cedar (the benchmark reads them). */
  readonly decisionStats = { cached: 0, evaluated: 0 };

  constructor(
    private readonly store: DurableStore,
    private readonly bus: EventBus,
    private readonly audit: AuditService,
    private readonly options: PolicyServiceOptions,
  ) {
    this.random = options.random ?? Math.random;
    const ttl = options.decisionCacheTtlMs ?? 0;
    this.decisions = new TtlCache(ttl, MAX_CACHED, options.now);
    this.roleNames = new TtlCache(ttl, MAX_CACHED, options.now);
    this.registeredEntities = new TtlCache(ttl, MAX_CACHED, options.now);
    bus.subscribe(POLICY_CHANGES_CHANNEL, () => this.forget());
    bus.subscribe(POLICY_INPUTS_CHANNEL, (message) => this.forgetInputs(message));
  }

  /** Drops what was kept of a user (`message` is their id), or of every user and entity (`*`). */
  private forgetInputs(message: string): void {
    if (message === '*') {
      this.roleNames.clear();
      this.registeredEntities.clear();
    } else {
      this.roleNames.delete(message);
    }
  }

  private async inputsChanged(message: string): Promise<void> {
    this.forgetInputs(message);
    await this.bus.publish(POLICY_INPUTS_CHANNEL, message).catch(() => {
      // The bus is unreachable: other instances' entries expire after POLICY_DECISION_CACHE_TTL_S.
    });
  }

  /** Called after a user's roles (or anything else about the user) changed, on this instance. */
  userChanged(userId: string): Promise<void> {
    return this.inputsChanged(userId);
  }

  /** Called after a role was created or deleted, on this instance. */
  rolesChanged(): Promise<void> {
    return this.inputsChanged('*');
  }

  private forget(): void {
    this.generation += 1;
    this.compiled = undefined;
  }

  private async changed(): Promise<void> {
    this.forget();
    await this.bus.publish(POLICY_CHANGES_CHANNEL, String(Date.now())).catch(() => undefined);
  }

  /* ----------------------------------------------------------------------------------------- */
  /* The compiled set                                                                           */
  /* ----------------------------------------------------------------------------------------- */

  /** The policy set in force on this instance (compiled at most once per change). */
  async current(): Promise<CompiledPolicySet> {
    const cached = this.compiled;
    if (cached && Date.now() - cached.at < this.options.cacheTtlMs) return cached.set;
    this.loading ??= this.load(cached).finally(() => {
      this.loading = undefined;
    });
    return (await this.loading).set;
  }

  private async load(previous: Compiled | undefined): Promise<Compiled> {
    const generation = this.generation;
    const revision = await this.store.policies.revision();
    let compiled: Compiled;
    if (previous && previous.revision === revision) {
      compiled = { ...previous, at: Date.now() };
    } else {
      const policies = await this.store.policies.list();
      compiled = { set: new CompiledPolicySet(policies, this.subsets, generation), revision, at: Date.now() };
    }
    if (generation === this.generation) this.compiled = compiled;
    return compiled;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Policies                                                                                   */
  /* ----------------------------------------------------------------------------------------- */

  list(asOf?: Date): Promise<PolicyRecord[]> {
    return this.store.policies.list(asOf);
  }

  async get(id: string): Promise<PolicyRecord> {
    const policy = await this.store.policies.findById(id);
    if (!policy) throw new AppError('POLICY_NOT_FOUND', { message: `No policy with id "${id}"` });
    return policy;
  }

  async versions(id: string): Promise<PolicyVersion[]> {
    const versions = await this.store.policies.versions(id);
    if (versions.length === 0)
      throw new AppError('POLICY_NOT_FOUND', { message: `No policy with id "${id}"` });
    return versions;
  }

  private async schemaText(): Promise<string | null> {
    return (await this.store.policies.getSchema())?.schema ?? null;
  }

  private async check(text: string): Promise<void> {
    const result = checkPolicyText(text, await this.schemaText());
    if (!result.ok) throw policyRejected(result.kind, result.messages);
  }

  private async write(
    input: {
      policy_id: string;
      description: string | null;
      policy: string;
      enabled: boolean;
      deleted?: boolean;
    },
    expected: number | 'absent',
  ): Promise<PolicyVersion> {
    try {
      return await this.store.policies.append(input, expected);
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
      throw expected === 'absent'
        ? new AppError('CONFLICT', {
            message: `A policy with id "${input.policy_id}" already exists`,
            details: [{ field: 'id', issue: 'Already taken', provided: input.policy_id }],
          })
        : new AppError('CONFLICT', {
            message: 'The policy was changed concurrently; read it again and retry',
          });
    }
  }

  private async record(
    context: Context,
    action: string,
    targetId: string,
    before: PolicyRecord | null,
    after: PolicyRecord | null,
    details?: Record<string, unknown>,
  ): Promise<void> {
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action,
      target_type: 'policy',
      target_id: targetId,
      before: before ? { ...before } : null,
      after: after ? { ...after } : null,
      ...(details ? { details } : {}),
    });
  }

  async create(input: PolicyInput, context: Context): Promise<PolicyRecord> {
    await this.check(input.policy);
    const id = input.id ?? `pol_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
    await this.write(
      {
        policy_id: id,
        description: input.description ?? null,
        policy: input.policy,
        enabled: input.enabled ?? true,
      },
      'absent',
    );
    const created = await this.get(id);
    await this.changed();
    await this.record(context, 'policy.created', id, null, created);
    return created;
  }

  async update(id: string, patch: PolicyUpdate, context: Context): Promise<PolicyRecord> {
    const before = await this.get(id);
    const next = {
      policy_id: id,
      description: patch.description === undefined ? before.description : patch.description,
      policy: patch.policy ?? before.policy,
      enabled: patch.enabled ?? before.enabled,
    };
    await this.check(next.policy);
    await this.write(next, before.version);
    const after = await this.get(id);
    await this.changed();
    await this.record(context, 'policy.updated', id, before, after);
    return after;
  }

  async remove(id: string, context: Context): Promise<void> {
    const before = await this.get(id);
    await this.write(
      {
        policy_id: id,
        description: before.description,
        policy: before.policy,
        enabled: false,
        deleted: true,
      },
      before.version,
    );
    await this.changed();
    await this.record(context, 'policy.deleted', id, before, null);
  }

  /** Writes the text, description and state of an earlier version as the newest one. */
  async rollback(id: string, version: number, context: Context): Promise<PolicyRecord> {
    const versions = await this.versions(id);
    const target = versions.find((v) => v.version === version);
    if (!target || target.deleted) {
      throw new AppError('POLICY_NOT_FOUND', {
        message: `Policy "${id}" has no version ${version} to roll back to`,
        details: [{ field: 'version', issue: 'No such version', provided: version }],
      });
    }
    const latest = versions.at(-1)!;
    const before = latest.deleted ? null : await this.get(id);
    // Rolled-back text must still meet today's schema.
    await this.check(target.policy);
    await this.write(
      { policy_id: id, description: target.description, policy: target.policy, enabled: target.enabled },
      latest.deleted ? 'absent' : latest.version,
    );
    const after = await this.get(id);
    await this.changed();
    await this.record(context, 'policy.rolled_back', id, before, after, { to_version: version });
    return after;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Schema                                                                                     */
  /* ----------------------------------------------------------------------------------------- */

  async getSchema(): Promise<PolicySchemaRecord> {
    return (await this.store.policies.getSchema()) ?? { schema: null, version: 0, updated_at: new Date(0) };
  }

  /** Sets (or, with null, removes) the schema; refused while a stored policy does not meet it. */
  async putSchema(schema: string | null, context: Context): Promise<PolicySchemaRecord> {
    const before = await this.getSchema();
    if (schema !== null) {
      const errors = checkSchemaText(schema);
      if (errors.length > 0) {
        throw new AppError('INVALID_POLICY_SCHEMA', {
          details: errors.map((issue) => ({ field: 'schema', issue })),
        });
      }
      const failing = (await this.store.policies.list()).flatMap((p) => {
        const result = checkPolicyText(p.policy, schema);
        return result.ok ? [] : result.messages.map((issue) => ({ field: `policies.${p.id}`, issue }));
      });
      if (failing.length > 0) {
        throw new AppError('POLICY_SCHEMA_VIOLATION', {
          message: 'Stored policies do not meet this schema; change them first',
          details: failing,
        });
      }
    }
    let after: PolicySchemaRecord;
    try {
      after = await this.store.policies.putSchema(schema, before.version);
    } catch (err) {
      if (err instanceof StoreConflictError)
        throw new AppError('CONFLICT', { message: 'The schema was changed concurrently; retry' });
      throw err;
    }
    await this.changed();
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'policy_schema.updated',
      target_type: 'policy_schema',
      target_id: String(after.version),
      before: { schema: before.schema },
      after: { schema: after.schema },
    });
    return after;
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Registered entities                                                                        */
  /* ----------------------------------------------------------------------------------------- */

  listEntities(page: { limit: number; offset: number; type?: string }) {
    return Promise.all([
      this.store.policies.listEntities(page),
      this.store.policies.countEntities(page.type),
    ]);
  }

  async getEntity(type: string, id: string): Promise<PolicyEntityRecord> {
    const [found] = await this.store.policies.findEntities([{ type, id }]);
    if (!found) throw new AppError('POLICY_ENTITY_NOT_FOUND', { message: `No entity ${type}::"${id}"` });
    return found;
  }

  async putEntity(
    entity: { type: string; id: string; attrs: JsonObject; parents: Uid[] },
    context: Context,
  ): Promise<PolicyEntityRecord> {
    const errors = checkEntities(
      [
        {
          uid: { type: entity.type, id: entity.id },
          attrs: entity.attrs as Record<string, CedarValueJson>,
          parents: entity.parents,
        },
      ],
      await this.schemaText(),
    );
    if (errors.length > 0)
      throw new AppError('INVALID_POLICY_ENTITY', {
        details: errors.map((issue) => ({ field: '(body)', issue })),
      });
    const [before] = await this.store.policies.findEntities([entity]);
    const after = await this.store.policies.putEntity(entity);
    await this.inputsChanged('*');
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: before ? 'policy_entity.updated' : 'policy_entity.created',
      target_type: 'policy_entity',
      target_id: `${entity.type}::${entity.id}`,
      before: before ? { attrs: before.attrs, parents: before.parents } : null,
      after: { attrs: after.attrs, parents: after.parents },
    });
    return after;
  }

  async removeEntity(type: string, id: string, context: Context): Promise<void> {
    const before = await this.getEntity(type, id);
    await this.store.policies.removeEntity(type, id);
    await this.inputsChanged('*');
    await this.audit.record({
      ...context.actor,
      request: context.request,
      action: 'policy_entity.deleted',
      target_type: 'policy_entity',
      target_id: `${type}::${id}`,
      before: { attrs: before.attrs, parents: before.parents },
      after: null,
    });
  }

  /* ----------------------------------------------------------------------------------------- */
  /* Decisions                                                                                  */
  /* ----------------------------------------------------------------------------------------- */

  private async findUser(id: string): Promise<User | null> {
    const byId = await this.store.users.findById(id);
    if (byId) return byId;
    return id.includes('@') ? this.store.users.findByEmail(id) : null;
  }

  /** The names of the roles a user holds: their primary role (if it exists) and linked ones. */
  private async roleNamesOf(user: User): Promise<string[]> {
    const cached = this.roleNames.get(user.id);
    if (cached && cached.role === user.role) return cached.names;
    const mark = this.roleNames.mark();
    const [primary, linked] = await Promise.all([
      this.store.roles.findByName(user.role),
      this.store.roles.listForUser(user.id),
    ]);
    const names = [...new Set([...(primary ? [primary.name] : []), ...linked.map((r) => r.name)])];
    this.roleNames.set(user.id, { role: user.role, names }, mark);
    return names;
  }

  private async userEntities(user: User): Promise<CedarEntity[]> {
    const names = await this.roleNamesOf(user);
    const roles = names.map((name): CedarEntity => ({
      uid: { type: 'Role', id: name },
      attrs: {},
      parents: [],
    }));
    const me: CedarEntity = {
      uid: { type: 'User', id: user.id },
      attrs: {
        email: user.email,
        status: user.status,
        email_verified: user.email_verified,
        role: user.role,
        plan: user.plan ?? DEFAULT_PLAN,
        metadata: toCedarRecord(user.metadata),
      },
      parents: roles.map((r) => r.uid),
    };
    return [me, ...roles];
  }

  /** Registered entities reachable from `start` through parents (bounded), leaving out `known`. */
  private async registered(start: Uid[], known: Set<string>): Promise<CedarEntity[]> {
    const found: CedarEntity[] = [];
    const asked = new Set(known);
    let frontier = start.filter((u) => !asked.has(key(u)));
    for (let depth = 0; depth < MAX_ENTITY_DEPTH && frontier.length > 0; depth++) {
      for (const u of frontier) asked.add(key(u));
      const next: Uid[] = [];
      for (const e of await this.registeredOf(frontier)) {
        found.push(e);
        for (const p of e.parents) if (!asked.has(key(p))) next.push(p);
      }
      frontier = next;
    }
    return found;
  }

  /** The registered entities of `uids` (those registered), from the cache or the store. */
  private async registeredOf(uids: Uid[]): Promise<CedarEntity[]> {
    const found: CedarEntity[] = [];
    const unknown: Uid[] = [];
    for (const u of uids) {
      const cached = this.registeredEntities.get(key(u));
      if (cached === undefined) unknown.push(u);
      else if (cached !== null) found.push(cached);
    }
    if (unknown.length === 0) return found;
    const mark = this.registeredEntities.mark();
    const records = await this.store.policies.findEntities(unknown);
    const byKey = new Map<string, CedarEntity>();
    for (const r of records) {
      const entity: CedarEntity = {
        uid: { type: r.type, id: r.id },
        attrs: r.attrs as Record<string, CedarValueJson>,
        parents: r.parents,
      };
      byKey.set(key(entity.uid), entity);
      found.push(entity);
    }
    if (this.registeredEntities.enabled) {
      for (const u of unknown) this.registeredEntities.set(key(u), byKey.get(key(u)) ?? null, mark);
    }
    return found;
  }

  /** The decision of a Cedar request by `set`, kept for the cache period when caching is on. */
  private decide(set: CompiledPolicySet, request: CedarRequest): Decision {
    if (!this.decisions.enabled) return set.decide(request);
    if (this.decisionsOf !== set) {
      this.decisions.clear();
      this.decisionsOf = set;
    }
    const digest = createHash('sha256')
      .update(
        JSON.stringify([
          request.principal,
          request.action,
          request.resource,
          request.context,
          request.entities,
          [...(request.sent ?? [])],
        ]),
      )
      .digest('base64');
    const cached = this.decisions.get(digest);
    if (cached) {
      this.decisionStats.cached += 1;
      return cached;
    }
    this.decisionStats.evaluated += 1;
    const decision = set.decide(request);
    // Shared by every request that asks the same: frozen, so none can alter the next one's answer.
    Object.freeze(decision.diagnostics.reasons);
    for (const e of decision.diagnostics.errors) Object.freeze(e);
    Object.freeze(decision.diagnostics.errors);
    Object.freeze(decision.diagnostics);
    this.decisions.set(digest, Object.freeze(decision));
    return decision;
  }

  /** The Cedar request of a check: our entities, the sent ones, then registered ones they lead to. */
  private async requestOf(check: AuthorizeCheck): Promise<{ request: CedarRequest; user: User | null }> {
    const ours: CedarEntity[] = [];
    let principal = check.principal;
    let user: User | null = null;
    if (principal.type === 'User') {
      user = await this.findUser(principal.id);
      if (user) {
        principal = { type: 'User', id: user.id };
        ours.push(...(await this.userEntities(user)));
      }
    } else if (principal.type === 'Client') {
      const client = await this.store.clients.find(principal.id);
      if (client) {
        const name = client.metadata.client_name;
        ours.push({
          uid: { type: 'Client', id: client.client_id },
          attrs: { first_party: client.first_party, ...(typeof name === 'string' ? { name } : {}) },
          parents: [],
        });
      }
    }
    const entities = new Map<string, CedarEntity>();
    for (const e of ours) entities.set(key(e.uid), e);
    const sent = new Set<string>();
    for (const e of check.entities ?? []) {
      if (entities.has(key(e.uid))) continue;
      entities.set(key(e.uid), e);
      sent.add(key(e.uid));
    }
    const wanted = [
      principal,
      check.action,
      check.resource,
      ...[...entities.values()].flatMap((e) => e.parents),
    ];
    for (const e of await this.registered(wanted, new Set(entities.keys()))) entities.set(key(e.uid), e);
    return {
      user,
      request: {
        principal,
        action: check.action,
        resource: check.resource,
        context: (check.context ?? {}) as Record<string, CedarValueJson>,
        entities: [...entities.values()],
        ...(sent.size > 0 ? { sent } : {}),
      },
    };
  }

  /** Whether `caller` may ask about the check's principal: with policy:evaluate, or about itself. */
  private mayAsk(caller: Principal, check: AuthorizeCheck, user: User | null): boolean {
    if (caller.scopes.has(EVALUATE_SCOPE)) return true;
    if (caller.kind === 'user') return check.principal.type === 'User' && user?.id === caller.userId;
    return false;
  }

  /** Decides each check; refused as a whole (403) when the caller may not ask about one of them. */
  async authorize(checks: AuthorizeCheck[], caller: Principal, request?: RequestFacts): Promise<Decision[]> {
    const set = await this.current();
    const prepared = await Promise.all(checks.map((c) => this.requestOf(c)));
    prepared.forEach(({ user }, i) => {
      if (!this.mayAsk(caller, checks[i]!, user)) {
        throw new AppError('AUTH_INSUFFICIENT_SCOPE', {
          message: `Asking about another principal needs the scope "${EVALUATE_SCOPE}"; a user's own token may ask only about that user`,
          details: [
            {
              field: checks.length > 1 ? `requests.${i}.principal` : 'principal',
              issue: `Required: ${EVALUATE_SCOPE}`,
            },
          ],
          requiredScope: EVALUATE_SCOPE,
        });
      }
    });
    const decisions = prepared.map(({ request: r }) => this.decide(set, r));
    const rate = this.options.decisionLogSampleRate;
    const sampled = decisions.flatMap((d, i) => (rate > 0 && (rate >= 1 || this.random() < rate) ? [i] : []));
    if (sampled.length > 0) {
      await this.audit.recordMany(
        sampled.map((i) => ({
          ...principalActor(caller),
          request,
          action: 'policy.decision',
          target_type: 'policy_decision',
          target_id: `${checks[i]!.principal.type}::${checks[i]!.principal.id}`,
          details: {
            principal: prepared[i]!.request.principal,
            action: checks[i]!.action,
            resource: checks[i]!.resource,
            decision: decisions[i]!.decision,
            reasons: decisions[i]!.diagnostics.reasons,
            errors: decisions[i]!.diagnostics.errors.map((e) => e.message),
          },
        })),
      );
    }
    return decisions;
  }
}
