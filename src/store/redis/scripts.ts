/**
 * The Lua scripts of the redis adapters. Each runs atomically on the server, so no reader ever sees an
 * artifact without its indexes, an index without its TTL, or a counter without its window.
 * Key names are always built in TypeScript (keys.ts) and passed in, or read back from the artifact
 * hash; the scripts never assemble a key themselves.
 */
import { createHash } from 'node:crypto';

export interface LuaScript {
  readonly name: string;
  readonly lua: string;
  /** SHA1 of the body, so calls can go through EVALSHA and only send the body once per server. */
  readonly sha: string;
}

function defineScript(name: string, lua: string): LuaScript {
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * Deletes one artifact and those of its uid/userCode lookups that still point at it (another artifact
 * may own that uid by now, for example a session saved again under a new id). Returns whether the
 * artifact existed (1 or 0), then the grant index and the account index it belonged to (false when
 * none), so the caller decides which of those sets to tidy: the one it is walking needs no SREM.
 */
const REMOVE_ARTIFACT = `
local function removeArtifact(key)
  local f = redis.call('HMGET', key, 'id', 'uidKey', 'userCodeKey', 'grantKey', 'accountKey')
  if f[1] then
    for i = 2, 3 do
      if f[i] and redis.call('GET', f[i]) == f[1] then redis.call('DEL', f[i]) end
    end
  end
  return redis.call('DEL', key), f[4], f[5]
end
`;

/**
 * KEYS: artifact, then those of its uid lookup, userCode lookup, grant index and account index that
 * it has, in that order (an absent one is left out rather than passed as '', which on a cluster
 * would hash to another slot).
 * ARGV: id, payload JSON, TTL in ms, consumed from the payload ('' when absent), then four flags
 * ('1' or '0'), one per index in the order above, saying which keys follow the artifact.
 */
export const UPSERT_ARTIFACT = defineScript(
  'upsertArtifact',
  `
local key = KEYS[1]
local id, payload, ttl, consumed = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local names, at = {}, 2
for i = 1, 4 do
  if ARGV[4 + i] == '1' then
    names[i] = KEYS[at]
    at = at + 1
  else
    names[i] = ''
  end
end
local uidKey, userCodeKey, grantKey, accountKey = names[1], names[2], names[3], names[4]

local previous = redis.call('HMGET', key, 'consumed', 'uidKey', 'userCodeKey', 'grantKey', 'accountKey')
-- Indexes of the previous version that the new one no longer uses would otherwise outlive it.
if previous[2] and previous[2] ~= uidKey and redis.call('GET', previous[2]) == id then
  redis.call('DEL', previous[2])
end
if previous[3] and previous[3] ~= userCodeKey and redis.call('GET', previous[3]) == id then
  redis.call('DEL', previous[3])
end
if previous[4] and previous[4] ~= grantKey then redis.call('SREM', previous[4], key) end
-- Otherwise revoking the former account would delete an artifact that now belongs to another.
if previous[5] and previous[5] ~= accountKey then redis.call('SREM', previous[5], key) end
-- Consumption is sticky: the first mark survives every later write.
if previous[1] then consumed = previous[1] end

redis.call('DEL', key)
local fields = { 'payload', payload, 'id', id }
if consumed ~= '' then
  fields[#fields + 1] = 'consumed'
  fields[#fields + 1] = consumed
end
if uidKey ~= '' then
  redis.call('SET', uidKey, id, 'PX', ttl)
  fields[#fields + 1] = 'uidKey'
  fields[#fields + 1] = uidKey
end
if userCodeKey ~= '' then
  redis.call('SET', userCodeKey, id, 'PX', ttl)
  fields[#fields + 1] = 'userCodeKey'
  fields[#fields + 1] = userCodeKey
end
if grantKey ~= '' then
  redis.call('SADD', grantKey, key)
  -- The index must outlive its longest member; PTTL is -1 right after SADD created it.
  if redis.call('PTTL', grantKey) < ttl then redis.call('PEXPIRE', grantKey, ttl) end
  fields[#fields + 1] = 'grantKey'
  fields[#fields + 1] = grantKey
end
if accountKey ~= '' then
  redis.call('SADD', accountKey, key)
  -- Same rule as the grant index: never shorter-lived than its longest member, never without a TTL.
  if redis.call('PTTL', accountKey) < ttl then redis.call('PEXPIRE', accountKey, ttl) end
  fields[#fields + 1] = 'accountKey'
  fields[#fields + 1] = accountKey
end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, ttl)
return 1
`,
);

/** KEYS: artifact. ARGV: now in epoch seconds. EXISTS first, because HSETNX would create the key. */
export const CONSUME_ARTIFACT = defineScript(
  'consumeArtifact',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'consumed', ARGV[1])
end
return 1
`,
);

/** KEYS: artifact. */
export const DESTROY_ARTIFACT = defineScript(
  'destroyArtifact',
  `${REMOVE_ARTIFACT}
local _, grantKey, accountKey = removeArtifact(KEYS[1])
if grantKey then redis.call('SREM', grantKey, KEYS[1]) end
if accountKey then redis.call('SREM', accountKey, KEYS[1]) end
return 1
`,
);

/** KEYS: grant index. Members are full artifact keys, whatever their model. */
export const REVOKE_GRANT = defineScript(
  'revokeGrant',
  `${REMOVE_ARTIFACT}
local members = redis.call('SMEMBERS', KEYS[1])
for _, member in ipairs(members) do
  local _, _, accountKey = removeArtifact(member)
  if accountKey then redis.call('SREM', accountKey, member) end
end
redis.call('DEL', KEYS[1])
return #members
`,
);

/**
 * KEYS: account index. Members are full artifact keys, whatever their model. Returns how many
 * artifacts were deleted: members that expired meanwhile are not counted.
 */
export const REVOKE_ACCOUNT = defineScript(
  'revokeAccount',
  `${REMOVE_ARTIFACT}
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  -- A member that expired and was written again under another account (same model and id) is no
  -- longer this account's: the upsert could not unlist it, since it found no previous version.
  if redis.call('HGET', member, 'accountKey') == KEYS[1] then
    local deleted, grantKey = removeArtifact(member)
    removed = removed + deleted
    if grantKey then redis.call('SREM', grantKey, member) end
  end
end
redis.call('DEL', KEYS[1])
return removed
`,
);

/**
 * KEYS: account index. ARGV: the key prefix of one model's artifacts (`<prefix><Model>:`).
 * Returns { payload, consumed or false } of each live artifact of that model still naming the account.
 */
export const LIST_ACCOUNT = defineScript(
  'listAccount',
  `
local found = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(member, 1, #ARGV[1]) == ARGV[1] and redis.call('HGET', member, 'accountKey') == KEYS[1] then
    local f = redis.call('HMGET', member, 'payload', 'consumed')
    if f[1] then found[#found + 1] = { f[1], f[2] } end
  end
end
return found
`,
);

/**
 * KEYS: counter. ARGV: increment, window in ms. Returns { value, window end in epoch ms }.
 * The window end comes from PEXPIRETIME rather than PTTL so that every reader, on every instance,
 * gets the very same instant instead of one that drifts with network latency.
 */
export const INCREMENT_COUNTER = defineScript(
  'incrementCounter',
  `
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
-- A new key has no TTL yet; one that lost it somehow must not count forever either.
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return { value, redis.call('PEXPIRETIME', KEYS[1]) }
`,
);

/**
 * KEYS: counters. ARGV: per key, three values: 'reset' (then two empty strings), or 'increment',
 * the increment and the window in ms (as incrementCounter). All applied in one step.
 */
export const UPDATE_COUNTERS = defineScript(
  'updateCounters',
  `
for i, key in ipairs(KEYS) do
  if ARGV[3 * i - 2] == 'reset' then
    redis.call('DEL', key)
  else
    redis.call('INCRBY', key, ARGV[3 * i - 1])
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3 * i]) end
  end
end
return 1
`,
);

/**
 * The brute-force guard (CounterStore.guardAttempt). KEYS: per subject, its attempts, lock and
 * lockouts counters. ARGV: window, lockout base, lockout maximum, lockout memory (all ms), then each
 * subject's limit. Returns { 0, 0 } when every subject was counted and none is locked, else
 * { subject (1-based), lock end in epoch ms }.
 */
export const GUARD_ATTEMPT = defineScript(
  'guardAttempt',
  `
local windowMs, baseMs, maxMs, memoryMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #KEYS / 3 do
  local attempts, lock, lockouts = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if redis.call('EXISTS', lock) == 1 then return { i, redis.call('PEXPIRETIME', lock) } end
  local value = redis.call('INCR', attempts)
  if redis.call('PTTL', attempts) < 0 then redis.call('PEXPIRE', attempts, windowMs) end
  if value > tonumber(ARGV[4 + i]) then
    local level = redis.call('INCR', lockouts)
    if redis.call('PTTL', lockouts) < 0 then redis.call('PEXPIRE', lockouts, memoryMs) end
    local duration = math.floor(math.min(baseMs * 2 ^ (level - 1), maxMs))
    redis.call('SET', lock, 1, 'PX', duration)
    redis.call('DEL', attempts)
    return { i, redis.call('PEXPIRETIME', lock) }
  end
end
return { 0, 0 }
`,
);

/** KEYS: counter. Returns { value, window end in epoch ms }, or nil when absent. */
export const READ_COUNTER = defineScript(
  'readCounter',
  `
local value = redis.call('GET', KEYS[1])
if not value then return false end
return { tonumber(value), redis.call('PEXPIRETIME', KEYS[1]) }
`,
);

/**
 * Starts or restarts a quota period, shared by the two quota scripts. ARGV: now (epoch ms), quota
 * of a new period, credits of a new subject, end of a period started now (epoch ms).
 */
const START_PERIOD = `
local function startPeriod(key, now, quota, credits, periodEnd)
  local ends = tonumber(redis.call('HGET', key, 'period_end'))
  if not ends then
    redis.call('HSET', key, 'remaining', quota, 'used', 0, 'credits', credits, 'period_end', periodEnd)
  elseif ends <= now then
    redis.call('HSET', key, 'remaining', quota, 'used', 0, 'period_end', periodEnd)
  end
  -- Kept for a year past the period's end (credits carry over), then forgotten like any counter.
  redis.call('PEXPIREAT', key, tonumber(redis.call('HGET', key, 'period_end')) + 31622400000)
end
local function state(key)
  local f = redis.call('HMGET', key, 'remaining', 'used', 'credits', 'period_end')
  return { tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4]) }
end
`;

/**
 * KEYS: quota hash. ARGV: now, quota, credits, period end, amount. Takes `amount` from the period's
 * quota, then from credits, when together they hold max(amount, 1). Returns
 * { granted (1/0), remaining, used, credits, period end }.
 */
export const CONSUME_QUOTA = defineScript(
  'consumeQuota',
  `${START_PERIOD}
local key = KEYS[1]
startPeriod(key, tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
local amount = tonumber(ARGV[5])
local s = state(key)
local need = amount
if need < 1 then need = 1 end
if s[1] + s[3] < need then
  return { 0, s[1], s[2], s[3], s[4] }
end
local fromQuota = math.min(amount, s[1])
redis.call('HSET', key, 'remaining', s[1] - fromQuota, 'credits', s[3] - (amount - fromQuota), 'used', s[2] + amount)
s = state(key)
return { 1, s[1], s[2], s[3], s[4] }
`,
);

/** KEYS: quota hash. ARGV: now, quota, credits, period end, remaining ('' = keep), credits ('' = keep). */
export const SET_QUOTA = defineScript(
  'setQuota',
  `${START_PERIOD}
local key = KEYS[1]
startPeriod(key, tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', key, 'remaining', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', key, 'credits', ARGV[6]) end
local s = state(key)
return { 1, s[1], s[2], s[3], s[4] }
`,
);

/**
 * One request's admission. KEYS: the rate windows' counters, then the quota hash ('' for none).
 * ARGV: the number of windows, then for each its length (ms) and limit, then the quota's now,
 * quota, credits, period end and amount. Returns { limited (1/0), then value and window end per
 * window, then granted, remaining, used, credits, period end (all 0 when no quota step ran) }.
 */
export const ADMIT = defineScript(
  'admit',
  `${START_PERIOD}
local n = tonumber(ARGV[1])
local out = { 0 }
local limited = 0
for i = 1, n do
  local value = redis.call('INCRBY', KEYS[i], 1)
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i]) end
  if value > tonumber(ARGV[2 * i + 1]) then limited = 1 end
  out[#out + 1] = value
  out[#out + 1] = redis.call('PEXPIRETIME', KEYS[i])
end
out[1] = limited
local q = KEYS[n + 1]
if limited == 1 or q == nil or q == '' then
  for _ = 1, 5 do out[#out + 1] = 0 end
  return out
end
local a = 2 * n + 2
startPeriod(q, tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
local amount = tonumber(ARGV[a + 4])
local s = state(q)
local need = amount
if need < 1 then need = 1 end
if s[1] + s[3] < need then
  out[#out + 1] = 0
else
  local fromQuota = math.min(amount, s[1])
  redis.call('HSET', q, 'remaining', s[1] - fromQuota, 'credits', s[3] - (amount - fromQuota), 'used', s[2] + amount)
  s = state(q)
  out[#out + 1] = 1
end
for i = 1, 4 do out[#out + 1] = s[i] end
return out
`,
);

/** KEYS: counters. Returns each one's value, 0 for a missing one (an ended window is gone already). */
export const READ_COUNTERS = defineScript(
  'readCounters',
  `
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = tonumber(redis.call('GET', key) or '0')
end
return values
`,
);

/**
 * Adds members to HyperLogLogs. KEYS: the sets. ARGV: per set, its TTL in ms and the number n of its
 * members, then those n members. Every set's TTL is renewed. PFADD takes the members in slices, so
 * no call goes past Lua's limit on unpacked values.
 */
export const ADD_DISTINCT = defineScript(
  'addDistinct',
  `
local at = 1
for _, key in ipairs(KEYS) do
  local ttl, n = ARGV[at], tonumber(ARGV[at + 1])
  at = at + 2
  local first = at
  while first < at + n do
    local last = math.min(first + 999, at + n - 1)
    redis.call('PFADD', key, unpack(ARGV, first, last))
    first = last + 1
  end
  if n == 0 then redis.call('PFADD', key) end
  at = at + n
  redis.call('PEXPIRE', key, ttl)
end
return 1
`,
);

/**
 * Sizes of unions of HyperLogLogs (PFCOUNT over several keys counts their union). KEYS: every
 * union's sets, one union after the other. ARGV: how many sets each union has. Returns one count per
 * union.
 */
export const COUNT_DISTINCT = defineScript(
  'countDistinct',
  `
local counts, at = {}, 1
for i, n in ipairs(ARGV) do
  n = tonumber(n)
  if n == 0 then counts[i] = 0 else counts[i] = redis.call('PFCOUNT', unpack(KEYS, at, at + n - 1)) end
  at = at + n
end
return counts
`,
);

/** KEYS: a label set. ARGV: TTL in ms, then the labels. Adds them and renews the TTL. */
export const ADD_LABELS = defineScript(
  'addLabels',
  `
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`,
);

/** KEYS: a label set. Returns its members. */
export const LIST_LABELS = defineScript('listLabels', `return redis.call('SMEMBERS', KEYS[1])`);
