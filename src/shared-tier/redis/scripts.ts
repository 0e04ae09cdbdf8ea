// Lua scripts. Each touches the keys of one hash tag only, so they run on Redis Cluster too.
// Lease scripts: KEYS[1] = entry, KEYS[2] = lease.

/**
 * Read the entry, or take the lease when there is none. ARGV: token, lease ms, mode (`force`: the lease regardless).
 * Returns {1, entry} on a hit, {2} when leased, {3, pttl} when another holds it; then KEYS[3] marks the lease
 * waited on, so the holder's fill announces itself (no hint, no feed reader woken, when nobody waits).
 */
export const LOOKUP_OR_LEASE = `
if ARGV[3] == 'read' then
  local entry = redis.call('GET', KEYS[1])
  if entry then return {1, entry} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then redis.call('SET', KEYS[3], '1', 'PX', pttl) end
return {3, pttl}
`;

/**
 * Store the entry only while holding the lease (compare-and-set on the token): an invalidation deletes the lease,
 * so a load begun before a change never writes back. ARGV: token, envelope, expiry ms.
 * Returns 1 when stored, 2 when stored and waited on (KEYS[3]), 0 when fenced.
 */
export const FILL_IF_LEASED = `
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1 + redis.call('DEL', KEYS[3])
end
return 0
`;

/** Give the lease up after a failed load, if it is still ours. ARGV: token. Returns 1 when someone waited on it. */
export const RELEASE_LEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return redis.call('DEL', KEYS[3])
end
return 0
`;

/** Extend the lease while its holder is still loading, if it is still ours. ARGV: token, lease ms. */
export const EXTEND_LEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0
`;

/**
 * Delete the entry and void the lease for the change at a position, unless a change at or after it did: the instances
 * applying one change delete once, so a value refilled after the first delete is kept. KEYS[3] = the change marker.
 * ARGV: position (`ms-seq`), marker ms. Returns 1 when deleted, else 0.
 */
export const DELETE_FOR_CHANGE = `
local function parse(p)
  local ms, seq = string.match(p, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(seq) or 0
end
local marker = redis.call('GET', KEYS[3])
if marker then
  local mm, ms = parse(marker)
  local pm, ps = parse(ARGV[1])
  if mm > pm or (mm == pm and ms >= ps) then return 0 end
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`;

/**
 * One read of a feed shard, checking the reader's position can still be replayed. KEYS: changes, hints, epoch.
 * ARGV: position ('' on the first read), known epoch, ordinal (entries the stream had taken in up to the position),
 * batch size, a fresh epoch in case none is set, hint position ('' to start at the end). Returns FeedReadReply:
 * - `start`: first read, nothing returned, position = last id;
 * - `epoch`: the epoch changed, the stream took in fewer entries than the reader saw (it was recreated), or it
 *   lost its tail (it is behind the position, or lost the entry there without trimming it);
 * - `trimmed`: entries after the position were trimmed away;
 * - `ok`: the changes and hints after the positions, up to the batch size each.
 * The entry counts need Redis 7.0 (XINFO STREAM's entries-added).
 */
export const FEED_READ = `
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  redis.call('SET', KEYS[3], ARGV[5])
  epoch = ARGV[5]
end
local function info(key)
  if redis.call('EXISTS', key) == 0 then return '0-0', 0, 0 end
  local r = redis.call('XINFO', 'STREAM', key)
  local last, added, length = '0-0', 0, 0
  for i = 1, #r, 2 do
    if r[i] == 'last-generated-id' then last = r[i + 1]
    elseif r[i] == 'entries-added' then added = r[i + 1]
    elseif r[i] == 'length' then length = r[i + 1] end
  end
  return last, added, length
end
local last, added, length = info(KEYS[1])
local hintPosition = ARGV[6]
if hintPosition == '' then hintPosition = info(KEYS[2]) end
if ARGV[1] == '' then return {'start', epoch, last, added, {}, hintPosition, {}, length} end
local ordinal = tonumber(ARGV[3])
local function behind(id, position)
  local im, is = string.match(id, '^(%d+)-(%d+)$')
  local pm, ps = string.match(position, '^(%d+)-(%d+)$')
  im, is, pm, ps = tonumber(im), tonumber(is), tonumber(pm), tonumber(ps)
  return im < pm or (im == pm and is < ps)
end
-- A lost tail (a failover to a replica that never had it) is a reset too: the stream is gone, is behind the
-- position, or no longer holds the entry at the position although it would not have been trimmed yet.
local function lostTail()
  if behind(last, ARGV[1]) then return true end
  if ARGV[1] == '0-0' or length == 0 or #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then return false end
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  return first ~= nil and not behind(ARGV[1], first[1])
end
if epoch ~= ARGV[2] or added < ordinal or lostTail() then
  return {'epoch', epoch, last, added, {}, hintPosition, {}, length}
end
if added - ordinal > length then return {'trimmed', epoch, last, added, {}, hintPosition, {}, length} end
local changes = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[4])
local hints = redis.call('XRANGE', KEYS[2], '(' .. hintPosition, '+', 'COUNT', ARGV[4])
return {'ok', epoch, last, added, changes, hintPosition, hints, length}
`;

/**
 * Add read counts to a window of the hot-key record, keep its `max` hottest keys, and expire it once it no longer
 * counts. KEYS[1] = the window's sorted set. ARGV: max kept, expiry ms, then count, key pairs.
 */
export const RECORD_READS = `
for i = 3, #ARGV, 2 do redis.call('ZINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/** Set bits of a bitmap. KEYS[1] = the bitmap. ARGV: expiry ms (0: none), `1`: only if it exists, bit offsets. */
export const SET_BITS = `
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV do redis.call('SETBIT', KEYS[1], ARGV[i], 1) end
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;

/** Whether every bit is set: 1, 0, or -1 when the bitmap does not exist. KEYS[1] = the bitmap. ARGV: the bit offsets. */
export const TEST_BITS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 1, #ARGV do
  if redis.call('GETBIT', KEYS[1], ARGV[i]) == 0 then return 0 end
end
return 1
`;

/**
 * Take a token from a bucket (a hash of tokens and when counted), refilled on Redis' clock: a skewed instance clock
 * must not refill it at every call. KEYS[1] = the bucket. ARGV: burst, tokens per second, expiry ms.
 * Returns {1 or 0 (taken or not), tokens left as a string}.
 */
export const TAKE_TOKEN = `
local state = redis.call('HMGET', KEYS[1], 't', 'a')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local burst = tonumber(ARGV[1])
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * tonumber(ARGV[2]) / 1000)
now = math.max(now, at)
local taken = 0
if tokens >= 1 then tokens = tokens - 1; taken = 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {taken, tostring(tokens)}
`;
