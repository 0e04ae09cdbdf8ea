import { createHash } from 'node:crypto';
import type { BodyArena, Placement, Slab } from './body-arena.js';

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
  return `"${createHash('sha1').update(body).digest('base64url')}"`;
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

/**
 * The one CacheEntry implementation: plain fields plus a lazily decoded value.
 * Kept lean because L1 holds one per cached key: deadlines are small integer
 * offsets from `storedAt` (no boxed doubles), and the body is a range of an
 * arena slab once L1 holds the entry (no Buffer object of its own).
 */
export class StoredEntry<V> implements CacheEntry<V> {
  readonly kind: EntryKind;
  readonly etag: string;
  readonly storedAt: number;
  /** When the engine last knew this entry to be current (placed in L1, or checked against the shared tier), on its clock. */
  checkedAt = -Infinity;
  readonly #freshFor: number;
  readonly #keptFor: number;
  /** Until placed in an arena: the body as given. Then: the slab's bytes, body at `#offset`. */
  #bytes: Buffer;
  #offset: number;
  readonly #length: number;
  #slab: Slab | undefined;
  #value: V | undefined | typeof UNDECODED = UNDECODED;
  readonly #decode: (body: Buffer) => V;

  constructor(fields: EntryFields, decode: (body: Buffer) => V) {
    this.kind = fields.kind;
    this.etag = fields.etag;
    this.storedAt = fields.storedAt;
    this.#freshFor = fields.freshUntil - fields.storedAt;
    this.#keptFor = fields.usableUntil - fields.freshUntil;
    // Not copied here: until L1 places it in its arena, the entry is transient and may share the caller's bytes.
    this.#bytes = fields.body;
    this.#offset = 0;
    this.#length = fields.body.length;
    this.#slab = undefined;
    this.#decode = decode;
  }

  get freshUntil(): number {
    return this.storedAt + this.#freshFor;
  }

  get usableUntil(): number {
    return this.storedAt + this.#freshFor + this.#keptFor;
  }

  get body(): Buffer {
    const bytes = this.#bytes;
    if (this.#offset === 0 && this.#length === bytes.length) return bytes;
    return bytes.subarray(this.#offset, this.#offset + this.#length);
  }

  get bodyLength(): number {
    return this.#length;
  }

  get value(): V | undefined {
    if (this.#value === UNDECODED) this.#value = this.kind === 'found' ? this.#decode(this.body) : undefined;
    return this.#value;
  }

  /** Copies the body into `arena`; L1 calls this once it holds the entry. A no-op when already placed. */
  placeIn(arena: BodyArena): void {
    if (this.#slab !== undefined) return;
    this.#bind(arena.place(this.body));
  }

  /**
   * L1 dropped the entry: its bytes stop counting as live. The entry keeps
   * reading them (a response may still be writing them); slabs are never
   * reused, only freed once nothing references them.
   */
  releaseFrom(arena: BodyArena): void {
    if (this.#slab === undefined) return;
    arena.release(this.#slab, this.#length);
    this.#slab = undefined;
  }

  /** During a compaction: moves the body out of a slab being evacuated. */
  relocateIn(arena: BodyArena): void {
    const slab = this.#slab;
    if (slab === undefined || !slab.evacuating) return;
    this.#bind(arena.relocate({ slab, offset: this.#offset }, this.#length));
  }

  #bind(placement: Placement): void {
    this.#slab = placement.slab;
    this.#bytes = placement.slab.bytes;
    this.#offset = placement.offset;
  }
}

export function entryFromFields<V>(fields: EntryFields, decode: (body: Buffer) => V): StoredEntry<V> {
  return new StoredEntry(fields, decode);
}

export function createEntry<V>(
  kind: EntryKind,
  body: Buffer,
  storedAt: number,
  ttlMs: number,
  keepMs: number,
  decode: (body: Buffer) => V,
): StoredEntry<V> {
  const freshUntil = storedAt + ttlMs;
  return new StoredEntry(
    { kind, body, etag: etagOf(body), storedAt, freshUntil, usableUntil: freshUntil + keepMs },
    decode,
  );
}

/**
 * Uniform jitter of ±`jitter` (a fraction) around `ttlMs`, so keys filled in
 * the same instant do not all expire in the same instant.
 */
export function jitteredTtl(ttlMs: number, jitter: number, random: () => number): number {
  if (jitter === 0 || ttlMs === 0) return ttlMs;
  return Math.max(1, Math.round(ttlMs * (1 + jitter * (2 * random() - 1))));
}
