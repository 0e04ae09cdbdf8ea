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
  /**
   * The decoded value for `found` entries, `undefined` for `missing` ones.
   * Decoded from `body` on first access and kept from then on: a proxy that
   * only serves bytes never holds parsed objects in memory.
   */
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

export interface EntryFields {
  kind: EntryKind;
  body: Buffer;
  etag: string;
  storedAt: number;
  freshUntil: number;
  usableUntil: number;
}

const UNDECODED: unique symbol = Symbol('undecoded');

/** The one CacheEntry implementation: plain fields plus a lazily decoded value. */
class StoredEntry<V> implements CacheEntry<V> {
  readonly kind: EntryKind;
  readonly body: Buffer;
  readonly etag: string;
  readonly storedAt: number;
  readonly freshUntil: number;
  readonly usableUntil: number;
  #value: V | undefined | typeof UNDECODED = UNDECODED;
  readonly #decode: (body: Buffer) => V;

  constructor(fields: EntryFields, decode: (body: Buffer) => V) {
    this.kind = fields.kind;
    this.body = ownedCopy(fields.body);
    this.etag = fields.etag;
    this.storedAt = fields.storedAt;
    this.freshUntil = fields.freshUntil;
    this.usableUntil = fields.usableUntil;
    this.#decode = decode;
  }

  get value(): V | undefined {
    if (this.#value === UNDECODED) this.#value = this.kind === 'found' ? this.#decode(this.body) : undefined;
    return this.#value;
  }
}

/**
 * Small Buffers are slices of shared 8 KiB pool slabs; a cached slice would pin
 * its whole slab, garbage neighbours included, for as long as the entry lives
 * (measured: external memory 2.7× the payload). Entries own exact-size memory.
 */
function ownedCopy(body: Buffer): Buffer {
  if (body.byteOffset === 0 && body.buffer.byteLength === body.length) return body;
  const owned = Buffer.allocUnsafeSlow(body.length);
  body.copy(owned);
  return owned;
}

export function entryFromFields<V>(fields: EntryFields, decode: (body: Buffer) => V): CacheEntry<V> {
  return new StoredEntry(fields, decode);
}

export function createEntry<V>(
  kind: EntryKind,
  body: Buffer,
  storedAt: number,
  ttlMs: number,
  keepMs: number,
  decode: (body: Buffer) => V,
): CacheEntry<V> {
  const freshUntil = storedAt + ttlMs;
  return new StoredEntry({ kind, body, etag: etagOf(body), storedAt, freshUntil, usableUntil: freshUntil + keepMs }, decode);
}

/**
 * Uniform jitter of ±`jitter` (a fraction) around `ttlMs`, so keys filled in
 * the same instant do not all expire in the same instant.
 */
export function jitteredTtl(ttlMs: number, jitter: number, random: () => number): number {
  if (jitter === 0 || ttlMs === 0) return ttlMs;
  return Math.max(1, Math.round(ttlMs * (1 + jitter * (2 * random() - 1))));
}
