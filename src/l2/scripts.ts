/**
 * Lua scripts of the lease protocol. Each touches the keys of one cache key
 * only (one hash tag), so they run on Redis Cluster too.
 *
 * KEYS[1] = entry, KEYS[2] = lease.
 */

/**
 * Read the entry, or take the lease when there is none.
 * ARGV: token, lease ms, mode (`read`: return an existing entry; `force`: the
 * caller found the entry unusable and wants the lease regardless).
 * Returns {1, entry} on a hit, {2} when the lease was taken, {3, pttl} when
 * another instance holds it.
 */
export const LOOKUP_OR_LEASE = `
if ARGV[3] == 'read' then
  local entry = redis.call('GET', KEYS[1])
  if entry then return {1, entry} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3, redis.call('PTTL', KEYS[2])}
`;

/**
 * Store the loaded entry only while still holding the lease (compare-and-set
 * on the token): an invalidation deletes the lease, so a load that began
 * before a change can never write its value back.
 * ARGV: token, envelope, expiry ms. Returns 1 when stored, 0 when fenced.
 */
export const FILL_IF_LEASED = `
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`;

/** Give the lease up after a failed load, if it is still ours. ARGV: token. */
export const RELEASE_LEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
`;

/** Extend the lease while its holder is still loading, if it is still ours. ARGV: token, lease ms. */
export const EXTEND_LEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0
`;
