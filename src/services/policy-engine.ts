/**
 * The Cedar side of policy decisions (@cedar-policy/cedar-wasm): checking policy and schema text,
 * turning our JSON into Cedar values, and a compiled policy set that answers requests.
 *
 * Cedar evaluates every policy of a set for every request, so the cost of a decision grows with the
 * set. A compiled set therefore reads each policy's scope (its `principal`, `action` and `resource`
 * constraints) once, and for a request keeps only the policies whose scope can match it, judged from
 * the very entities handed to Cedar (the principal, its ancestors, and so on). A policy left out
 * could neither be satisfied nor fail (Cedar evaluates conditions only where the scope matches), so
 * the decision and its diagnostics are the same as with the whole set. The subsets are parsed once
 * into Cedar's own cache (preparsePolicySet) and reused by every request that selects the same one.
 *
 * Handing entities to Cedar costs by their size, so only the attributes some policy of the subset
 * names are handed over. A policy reads an entity's attribute only by naming it (`e.name`, `e has
 * name`; Cedar has no way to list or iterate an entity's attributes), so an attribute no policy of
 * the subset names can change neither the decision nor its diagnostics. A policy whose names cannot
 * be read keeps every attribute. Entities sent with the request are handed over whole (their values
 * were never checked, and one Cedar cannot read fails the request); and when Cedar reports an error,
 * the request is evaluated again with every attribute, so its messages (which list the attributes an
 * entity has) are Cedar's own for the whole request.
 */
import { randomUUID } from 'node:crypto';

import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

import type { JsonValue, PolicyRecord } from '../store/ports.js';

export interface Uid {
  type: string;
  id: string;
}

export interface CedarEntity {
  uid: Uid;
  attrs: Record<string, cedar.CedarValueJson>;
  parents: Uid[];
}

export interface CedarRequest {
  principal: Uid;
  action: Uid;
  resource: Uid;
  context: Record<string, cedar.CedarValueJson>;
  entities: CedarEntity[];
  /** Uid keys (`type\u0000id`) of entities sent with the request: handed to Cedar whole. */
  sent?: ReadonlySet<string>;
}

export interface DecisionError {
  /** The stored policy whose evaluation failed; null for an error of the request itself. */
  policy: string | null;
  message: string;
}

export interface Decision {
  decision: 'Allow' | 'Deny';
  diagnostics: { reasons: string[]; errors: DecisionError[] };
}

/** One message per Cedar error: its text, and its hint when it gives one. */
export function cedarMessages(errors: readonly cedar.DetailedError[]): string[] {
  return errors.map((e) => (e.help ? `${e.message} (${e.help})` : e.message));
}

export type TextCheck = { ok: true } | { ok: false; kind: 'syntax' | 'schema'; messages: string[] };

/** Checks one stored policy's text: it parses, holds no templates, and meets `schema` if given. */
export function checkPolicyText(text: string, schema: string | null): TextCheck {
  const parts = cedar.policySetTextToParts(text);
  if (parts.type === 'failure') return { ok: false, kind: 'syntax', messages: cedarMessages(parts.errors) };
  if (parts.policy_templates.length > 0)
    return {
      ok: false,
      kind: 'syntax',
      messages: ['Templates (policies with ?principal or ?resource slots) are not supported'],
    };
  if (parts.policies.length === 0)
    return { ok: false, kind: 'syntax', messages: ['The text holds no policy statement'] };
  if (schema === null) return { ok: true };
  const answer = cedar.validate({ schema, policies: { staticPolicies: text } });
  if (answer.type === 'failure') return { ok: false, kind: 'schema', messages: cedarMessages(answer.errors) };
  if (answer.validationErrors.length > 0) {
    return {
      ok: false,
      kind: 'schema',
      messages: cedarMessages(answer.validationErrors.map((e) => e.error)),
    };
  }
  return { ok: true };
}

/** Checks a schema's text (Cedar's human-readable schema format, or its JSON form as text). */
export function checkSchemaText(schema: string): string[] {
  const parsed = cedar.checkParseSchema(schemaInput(schema));
  return parsed.type === 'failure' ? cedarMessages(parsed.errors) : [];
}

/** A schema held as text: JSON-form schemas are passed to Cedar as objects. */
export function schemaInput(schema: string): cedar.Schema {
  const trimmed = schema.trimStart();
  if (trimmed.startsWith('{')) {
    try {
      return JSON.parse(schema) as cedar.Schema;
    } catch {
      return schema;
    }
  }
  return schema;
}

/** Checks registered or sent entities (their JSON form, against the schema when one is set). */
export function checkEntities(entities: CedarEntity[], schema: string | null): string[] {
  const parsed = cedar.checkParseEntities({
    entities: entities as cedar.Entities,
    ...(schema === null ? {} : { schema: schemaInput(schema) }),
  });
  return parsed.type === 'failure' ? cedarMessages(parsed.errors) : [];
}

/**
 * Our JSON (user metadata, say) as a Cedar value: Cedar has no null (dropped, in records and in
 * sets), no fractions (written as strings), no integers beyond 64 bits (strings too), and reads a
 * record whose only key is `__entity` or `__extn` as something else (such keys are dropped).
 */
export function toCedarValue(value: JsonValue): cedar.CedarValueJson | undefined {
  if (value === null) return undefined;
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : String(value);
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) {
    return value.map(toCedarValue).filter((v): v is cedar.CedarValueJson => v !== undefined);
  }
  return toCedarRecord(value);
}

export function toCedarRecord(value: { [key: string]: JsonValue }): Record<string, cedar.CedarValueJson> {
  const record: Record<string, cedar.CedarValueJson> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === '__entity' || key === '__extn' || key === '__expr') continue;
    const converted = toCedarValue(v);
    if (converted !== undefined) record[key] = converted;
  }
  return record;
}

const uidKey = (uid: Uid) => `${uid.type}\u0000${uid.id}`;

type Constraint =
  | { op: 'All' }
  | { op: '=='; key: string }
  | { op: 'in'; keys: string[] }
  | { op: 'is'; type: string; in?: string };

interface Part {
  /** The id Cedar reports: the stored id, with `#n` when the stored text holds several statements. */
  cedarId: string;
  policyId: string;
  text: string;
  principal: Constraint;
  action: Constraint;
  resource: Constraint;
  /** The attribute names the policy reads (`.` and `has`); undefined: unknown, keep them all. */
  attrs: ReadonlySet<string> | undefined;
}

/** Every attribute name read in a policy's JSON form (`.` and `has`), wherever it appears. */
function attributeNames(json: unknown, into: Set<string>): Set<string> {
  if (Array.isArray(json)) {
    for (const item of json) attributeNames(item, into);
  } else if (json && typeof json === 'object') {
    for (const [key, value] of Object.entries(json)) {
      if ((key === '.' || key === 'has') && value && typeof value === 'object') {
        const attr = (value as { attr?: unknown }).attr;
        if (typeof attr === 'string') into.add(attr);
      }
      attributeNames(value, into);
    }
  }
  return into;
}

function entityKey(ref: unknown): string | undefined {
  if (!ref || typeof ref !== 'object') return undefined;
  const r = ref as { __entity?: Uid } & Partial<Uid>;
  const uid = r.__entity ?? r;
  return typeof uid.type === 'string' && typeof uid.id === 'string' ? uidKey(uid as Uid) : undefined;
}

/** A scope constraint from Cedar's JSON form; anything unforeseen matches everything (safe). */
function constraintOf(json: unknown): Constraint {
  const c = json as {
    op?: string;
    entity?: unknown;
    entities?: unknown[];
    entity_type?: string;
    in?: { entity?: unknown };
  };
  if (c?.op === '==') {
    const key = entityKey(c.entity);
    if (key) return { op: '==', key };
  } else if (c?.op === 'in') {
    const list = c.entities ?? [c.entity];
    const keys = list.map(entityKey);
    if (keys.every((k): k is string => k !== undefined)) return { op: 'in', keys };
  } else if (c?.op === 'is' && typeof c.entity_type === 'string') {
    const inKey = c.in ? entityKey(c.in.entity) : undefined;
    if (!c.in || inKey) return { op: 'is', type: c.entity_type, ...(inKey ? { in: inKey } : {}) };
  }
  return { op: 'All' };
}

/** Whether a constraint can hold for an entity of `type` whose self-and-ancestors keys are `lineage`. */
function admits(c: Constraint, key: string, type: string, lineage: Set<string>): boolean {
  switch (c.op) {
    case 'All':
      return true;
    case '==':
      return c.key === key;
    case 'in':
      return c.keys.some((k) => lineage.has(k));
    case 'is':
      return c.type === type && (c.in === undefined || lineage.has(c.in));
  }
}

function partsOf(policy: PolicyRecord): Part[] {
  const split = cedar.policySetTextToParts(policy.policy);
  if (split.type === 'failure') return [];
  return split.policies.map((text, i) => {
    const cedarId = split.policies.length === 1 ? policy.id : `${policy.id}#${i}`;
    const json = cedar.policyToJson(text);
    const scope =
      json.type === 'success'
        ? {
            principal: constraintOf(json.json.principal),
            action: constraintOf(json.json.action),
            resource: constraintOf(json.json.resource),
          }
        : {
            principal: { op: 'All' as const },
            action: { op: 'All' as const },
            resource: { op: 'All' as const },
          };
    const attrs = json.type === 'success' ? attributeNames(json.json.conditions, new Set()) : undefined;
    return { cedarId, policyId: policy.id, text, ...scope, attrs };
  });
}

/** Cedar's cache of parsed subsets, shared by the sets a service compiles; least recently used go. */
export class SubsetCache {
  private readonly slots = new Map<string, string>();
  private readonly prefix = `latchkey-${randomUUID()}`;
  private counter = 0;

  constructor(private readonly capacity = 512) {}

  /** The id of the parsed subset named `key`, parsing `policies` when it is not cached. */
  slot(key: string, policies: () => Record<string, string>): string | { error: string[] } {
    const found = this.slots.get(key);
    if (found !== undefined) {
      this.slots.delete(key);
      this.slots.set(key, found);
      return found;
    }
    // Reusing the id of the entry evicted replaces its parsed set in Cedar's cache (nothing leaks).
    let id: string;
    if (this.slots.size >= this.capacity) {
      const [oldestKey, oldestId] = this.slots.entries().next().value as [string, string];
      this.slots.delete(oldestKey);
      id = oldestId;
    } else {
      id = `${this.prefix}-${this.counter++}`;
    }
    const parsed = cedar.preparsePolicySet(id, { staticPolicies: policies() });
    if (parsed.type === 'failure') return { error: cedarMessages(parsed.errors) };
    this.slots.set(key, id);
    return id;
  }

  clear(): void {
    this.slots.clear();
  }
}

/** The enabled policies of one moment, ready to answer requests. */
export class CompiledPolicySet {
  readonly size: number;
  private readonly parts: Part[];
  private readonly byCedarId = new Map<string, Part>();
  /** The attribute names each subset reads, by subset key; null: keep every attribute. */
  private readonly subsetAttrs = new Map<string, ReadonlySet<string> | null>();

  constructor(
    policies: readonly PolicyRecord[],
    private readonly cache: SubsetCache,
    /** Distinguishes this set's subsets from other sets' in the shared cache. */
    private readonly generation: number,
  ) {
    this.parts = policies.filter((p) => p.enabled).flatMap(partsOf);
    for (const part of this.parts) this.byCedarId.set(part.cedarId, part);
    this.size = policies.filter((p) => p.enabled).length;
  }

  /** Every key of `uid` and its ancestors through `parents` (cycles and all). */
  private static lineage(uid: Uid, parents: Map<string, Uid[]>): Set<string> {
    const seen = new Set<string>([uidKey(uid)]);
    const queue = [uidKey(uid)];
    while (queue.length > 0) {
      for (const parent of parents.get(queue.pop()!) ?? []) {
        const key = uidKey(parent);
        if (!seen.has(key)) {
          seen.add(key);
          queue.push(key);
        }
      }
    }
    return seen;
  }

  /** The policies whose scope can match `request`, by Cedar id. */
  candidates(request: CedarRequest): Part[] {
    const parents = new Map<string, Uid[]>();
    for (const e of request.entities) parents.set(uidKey(e.uid), e.parents);
    const p = CompiledPolicySet.lineage(request.principal, parents);
    const a = CompiledPolicySet.lineage(request.action, parents);
    const r = CompiledPolicySet.lineage(request.resource, parents);
    const pk = uidKey(request.principal);
    const ak = uidKey(request.action);
    const rk = uidKey(request.resource);
    return this.parts.filter(
      (part) =>
        admits(part.principal, pk, request.principal.type, p) &&
        admits(part.action, ak, request.action.type, a) &&
        admits(part.resource, rk, request.resource.type, r),
    );
  }

  decide(request: CedarRequest): Decision {
    const candidates = this.candidates(request);
    if (candidates.length === 0) return { decision: 'Deny', diagnostics: { reasons: [], errors: [] } };
    const key = `${this.generation}|${candidates.map((c) => c.cedarId).join('\n')}`;
    const slot = this.cache.slot(key, () => Object.fromEntries(candidates.map((c) => [c.cedarId, c.text])));
    if (typeof slot !== 'string') return deny(slot.error.map((message) => ({ policy: null, message })));
    const ask = (entities: CedarEntity[]): cedar.AuthorizationAnswer | { thrown: unknown } => {
      try {
        return cedar.statefulIsAuthorized({
          principal: request.principal,
          action: request.action,
          resource: request.resource,
          context: request.context,
          entities: entities as cedar.Entities,
          preparsedPolicySetId: slot,
        });
      } catch (err) {
        return { thrown: err };
      }
    };
    const slim = this.slim(key, candidates, request.entities, request.sent);
    let answer = ask(slim);
    const erred =
      'thrown' in answer || answer.type === 'failure' || answer.response.diagnostics.errors.length > 0;
    if (erred && slim !== request.entities) answer = ask(request.entities);
    if ('thrown' in answer) {
      // The bindings throw on input they cannot read at all; that is the request's error too.
      const err = answer.thrown;
      return deny([{ policy: null, message: err instanceof Error ? err.message : String(err) }]);
    }
    if (answer.type === 'failure') {
      return deny(cedarMessages(answer.errors).map((message) => ({ policy: null, message })));
    }
    const { decision, diagnostics } = answer.response;
    const storedId = (cedarId: string) => this.byCedarId.get(cedarId)?.policyId ?? cedarId;
    return {
      decision: decision === 'allow' ? 'Allow' : 'Deny',
      diagnostics: {
        reasons: [...new Set(diagnostics.reason.map(storedId))],
        errors: diagnostics.errors.map((e) => ({
          policy: storedId(e.policyId),
          message: cedarMessages([e.error])[0]!,
        })),
      },
    };
  }

  /** `entities` with only the attributes some policy of the subset reads (the same objects if all are). */
  private slim(
    key: string,
    candidates: Part[],
    entities: CedarEntity[],
    sent: ReadonlySet<string> | undefined,
  ): CedarEntity[] {
    let names = this.subsetAttrs.get(key);
    if (names === undefined) {
      names = candidates.some((c) => c.attrs === undefined)
        ? null
        : new Set(candidates.flatMap((c) => [...c.attrs!]));
      if (this.subsetAttrs.size >= 4096) this.subsetAttrs.clear();
      this.subsetAttrs.set(key, names);
    }
    if (names === null) return entities;
    const read = names;
    let changed = false;
    const slimmed = entities.map((e) => {
      const keys = Object.keys(e.attrs);
      if (keys.every((k) => read.has(k)) || sent?.has(uidKey(e.uid))) return e;
      const attrs: Record<string, cedar.CedarValueJson> = {};
      for (const k of keys) if (read.has(k)) attrs[k] = e.attrs[k]!;
      changed = true;
      return { ...e, attrs };
    });
    return changed ? slimmed : entities;
  }

  /** The whole set as Cedar sees it, by Cedar id (the benchmark evaluates it unfiltered). */
  texts(): Record<string, string> {
    return Object.fromEntries(this.parts.map((c) => [c.cedarId, c.text]));
  }
}

const deny = (errors: DecisionError[]): Decision => ({
  decision: 'Deny',
  diagnostics: { reasons: [], errors },
});
