import { createHash } from 'node:crypto';

/** `found` holds a value; `missing` is a negative entry (the source said the key does not exist). */
export type EntryKind = 'found' | 'missing';

/**
 * One cached answer, encoded once when it is filled: the bytes a client gets,
 * their strong ETag and the timestamps that decide freshness. A hit serves
 * these fields as they are; it never re-serializes or re-hashes.
 */
export interface CacheEntry<V = unknown> {
  readonly kind: EntryKind;
  /** The decoded value for `found` entries, `undefined` for `missing` ones. */
  readonly value: V | undefined;
  /** Response body: the serialized value, or the not-found error body. */
  readonly body: Buffer;
  /** Strong validator, quoted, e.g. `"k3L0..."`. */
  readonly etag: string;
  /** Engine-clock milliseconds when the entry was filled at the source. */
  readonly storedAt: number;
  /** Served as fresh until this instant (exclusive). */
  readonly freshUntil: number;
  /** Kept (in L1 and L2) until this instant; past freshness it may only be served as stale. */
  readonly usableUntil: number;
}

export function etagOf(body: Buffer): string {
  // sha1 is plenty for a validator (collisions need an attacker controlling the origin's bytes).
  return '"' + createHash('sha1').update(body).digest('base64url') + '"';
}

export function createEntry<V>(kind: EntryKind, value: V | undefined, body: Buffer, storedAt: number, ttlMs: number, keepMs = 0): CacheEntry<V> {
  const freshUntil = storedAt + ttlMs;
  return { kind, value, body, etag: etagOf(body), storedAt, freshUntil, usableUntil: freshUntil + keepMs };
}

/**
 * Uniform jitter of ±`jitter` (a fraction) around `ttlMs`, so keys filled in
 * the same instant do not all expire in the same instant.
 */
export function jitteredTtl(ttlMs: number, jitter: number, random: () => number): number {
  if (jitter === 0 || ttlMs === 0) return ttlMs;
  return Math.max(1, Math.round(ttlMs * (1 + jitter * (2 * random() - 1))));
}
