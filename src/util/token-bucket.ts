/** A token bucket's state: the tokens left, and when they were counted (ms). */
export interface TokenBucket {
  tokens: number;
  at: number;
}

/**
 * Refills `bucket` for the time since it was counted (never moving that time back), then takes
 * one token if there is a whole one: true when taken. The in-process twin of Redis' TAKE_TOKEN
 * (src/shared-tier/redis/scripts.ts), for the miss budget's local buckets and the in-memory tier.
 */
export function takeToken(bucket: TokenBucket, now: number, burst: number, perSecond: number): boolean {
  bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) * perSecond) / 1000);
  bucket.at = Math.max(bucket.at, now);
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}
