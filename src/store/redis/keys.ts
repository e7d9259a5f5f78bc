/**
 * The Redis key layout of the short-lived store, in one place. Every name starts with the deployment's
 * prefix, so several deployments can share one Redis. Model names are PascalCase and the index
 * namespaces are lower camelCase, so an artifact key can never collide with an index key.
 *
 *   <prefix><Model>:<id>          hash: payload (JSON), consumed (epoch seconds), id, and the full
 *                                 names of the indexes that point at it (uidKey, userCodeKey, grantKey,
 *                                 accountKey)
 *   <prefix>uid:<uid>             string: id of the Session with that uid
 *   <prefix>userCode:<userCode>   string: id of the artifact (DeviceCode) with that user code
 *   <prefix>grant:<grantId>       set: full artifact keys bound to the grant
 *   <prefix>account:<accountId>   set: full artifact keys whose payload names the account
 *   <prefix>counter:<key>         string: integer counter, its TTL is the window
 *   <prefix>quota:<key>           hash: remaining, used, credits, period_end (epoch ms); expires a
 *                                 year after period_end (credits outlive periods)
 *   <prefix>hll:<key>             HyperLogLog: a distinct-count set (analytics rollups), its TTL renewed
 *                                 by each addition
 *   <prefix>labels:<key>          set: a small exact set of labels (analytics group values), same TTL rule
 *   <prefix>events:<channel>      pub/sub channel (cache invalidation between instances)
 *
 * On a Redis Cluster every Lua script must find all its keys in one hash slot. The artifact scripts
 * reach from an artifact to its lookups and indexes and from an index to all its members (revoking a
 * grant or an account), and the counter scripts combine keys of different subjects (an address and
 * an account in one login check, rate windows and a quota in one admission), so no finer grouping
 * keeps them atomic. Cluster mode therefore puts a hash tag right after the prefix: `{a}` on every
 * artifact, lookup and index key, `{c}` on every counter, quota, distinct-count and label key, so
 * each family lives in one slot (two slots per deployment). Channels are not keys: classic PUBLISH
 * reaches every node of a cluster. Standalone keeps the untagged names, so existing data stays valid.
 */

export interface KeyLayout {
  artifact(model: string, id: string): string;
  uid(uid: string): string;
  userCode(userCode: string): string;
  grant(grantId: string): string;
  account(accountId: string): string;
  counter(key: string): string;
  quota(key: string): string;
  distinct(key: string): string;
  labels(key: string): string;
  channel(name: string): string;
}

/** The hash tags of cluster mode; a tag is the text between the first `{` of a key and the next `}`. */
export const ARTIFACT_TAG = '{a}';
export const COUNTER_TAG = '{c}';

export function keyLayout(prefix: string, options: { cluster?: boolean } = {}): KeyLayout {
  const a = options.cluster ? `${prefix}${ARTIFACT_TAG}` : prefix;
  const c = options.cluster ? `${prefix}${COUNTER_TAG}` : prefix;
  return {
    artifact: (model, id) => `${a}${model}:${id}`,
    uid: (uid) => `${a}uid:${uid}`,
    userCode: (userCode) => `${a}userCode:${userCode}`,
    grant: (grantId) => `${a}grant:${grantId}`,
    account: (accountId) => `${a}account:${accountId}`,
    counter: (key) => `${c}counter:${key}`,
    quota: (key) => `${c}quota:${key}`,
    distinct: (key) => `${c}hll:${key}`,
    labels: (key) => `${c}labels:${key}`,
    channel: (name) => `${prefix}events:${name}`,
  };
}
