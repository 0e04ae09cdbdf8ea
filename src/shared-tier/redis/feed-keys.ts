import calculateSlot from 'cluster-key-slot';

const SLOTS = 16384;

/** The Redis keys of one feed shard; all share one hash tag, so one slot (and one Lua script may touch them). */
export interface FeedShardKeys {
  readonly shard: number;
  /** The change stream: the durable, ordered feed. */
  readonly changes: string;
  /** Lease hints (filled, failed): a short stream, lost entries cost a poll only. */
  readonly hints: string;
  /** A random value set beside the stream; a new one means the stream was recreated (Redis restarted empty). */
  readonly epoch: string;
  readonly slot: number;
}

/**
 * The keys of every feed shard. Shard `i` gets the hash tag `feed-i` (or the first `feed-i.n`) whose slot lies in the
 * i-th of `shards` equal slot ranges, so a Cluster split evenly over `shards` masters (as `redis-cli --cluster create`
 * does) puts each shard on a master of its own. Only the prefix and shard count matter: every producer agrees.
 */
export function feedShardKeys(prefix: string, shards: number): FeedShardKeys[] {
  const keys: FeedShardKeys[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const low = Math.floor((shard * SLOTS) / shards);
    const high = Math.floor(((shard + 1) * SLOTS) / shards);
    let tag = shards === 1 ? 'feed' : `feed-${shard}`;
    const outside = (slot: number): boolean => slot < low || slot >= high;
    for (let n = 0; shards > 1 && outside(calculateSlot(`{${tag}}`)); n++) tag = `feed-${shard}.${n}`;
    const base = `${prefix}{${tag}}`;
    keys.push({
      shard,
      changes: `${base}:changes`,
      hints: `${base}:hints`,
      epoch: `${base}:epoch`,
      slot: calculateSlot(base),
    });
  }
  return keys;
}

/** The shard of a key: a decimal group id modulo the shard count (as producers compute it), else a string hash. */
export function shardOfKey(key: string, shards: number): number {
  if (shards === 1) return 0;
  if (/^[0-9]{1,300}$/.test(key)) return Number(BigInt(key) % BigInt(shards));
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return hash % shards;
}
