import { defaultsOf, integerSpec } from '../../util/options.js';
import { SHARED_TIER_OPTION_SPECS } from '../contract.js';

/** RedisTier's option defaults and ranges, in a module of their own so settings can read them without ioredis. */
export const REDIS_TIER_OPTION_SPECS = {
  /** Deadline of one Redis command, ms. */
  commandTimeoutMs: integerSpec(50, 1, 60_000),
  /** How long one blocking feed read waits for news, ms. */
  feedBlockMs: integerSpec(1000, 10, 60_000),
  ...SHARED_TIER_OPTION_SPECS,
} as const;

/** Shards of the change feed when `feedShards` is unset: one per master of an evenly split 3-master Cluster, else one. */
export function defaultFeedShards(cluster: boolean): number {
  return cluster ? 3 : 1;
}

export const REDIS_TIER_DEFAULTS = { prefix: 'gpp:', ...defaultsOf(REDIS_TIER_OPTION_SPECS) } as const;
