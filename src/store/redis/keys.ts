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

export function keyLayout(prefix: string): KeyLayout {
  return {
    artifact: (model, id) => `${prefix}${model}:${id}`,
    uid: (uid) => `${prefix}uid:${uid}`,
    userCode: (userCode) => `${prefix}userCode:${userCode}`,
    grant: (grantId) => `${prefix}grant:${grantId}`,
    account: (accountId) => `${prefix}account:${accountId}`,
    counter: (key) => `${prefix}counter:${key}`,
    quota: (key) => `${prefix}quota:${key}`,
    distinct: (key) => `${prefix}hll:${key}`,
    labels: (key) => `${prefix}labels:${key}`,
    channel: (name) => `${prefix}events:${name}`,
  };
}
