import { LRUCache } from 'lru-cache';
import { BodyArena } from './body-arena.js';
import { StoredEntry, type CacheEntry } from './entry.js';

export interface MemoryTierOptions {
  /** Most entries kept. */
  maxEntries: number;
  /** Most bytes kept, counted as body bytes plus `entryOverheadBytes` per entry. */
  maxBytes: number;
  /** Fixed per-entry cost added to the body size (object headers, key, ETag, LRU links). */
  entryOverheadBytes: number;
}

const MAX_SLAB_BYTES = 1024 * 1024;
const MIN_SLAB_BYTES = 64 * 1024;

/**
 * The in-process L1 tier: an LRU bounded by entry count and by bytes, with
 * the bodies of the entries it holds copied into a slab arena. Expiry is
 * decided by the engine's clock (entries carry their own deadlines), so
 * lru-cache's own TTL timers are not used.
 */
export class L1Cache<V> {
  readonly #lru: LRUCache<string, StoredEntry<V>>;
  readonly #arena: BodyArena;

  constructor(options: MemoryTierOptions) {
    const overhead = options.entryOverheadBytes;
    // Small caches get small slabs, so a half-filled slab is never a large share of the bound.
    const slabBytes = Math.min(MAX_SLAB_BYTES, Math.max(MIN_SLAB_BYTES, Math.floor(options.maxBytes / 64)));
    const arena = new BodyArena({ slabBytes });
    this.#arena = arena;
    this.#lru = new LRUCache<string, StoredEntry<V>>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => entry.bodyLength + overhead,
      // Every way out of the LRU (eviction, overwrite, delete, clear) lands here.
      dispose: (entry) => entry.releaseFrom(arena),
    });
  }

  get(key: string): StoredEntry<V> | undefined {
    return this.#lru.get(key);
  }

  set(key: string, entry: CacheEntry<V>): void {
    if (!(entry instanceof StoredEntry))
      throw new TypeError('L1 holds only entries made by createEntry or entryFromFields');
    this.#lru.set(key, entry);
    // lru-cache refuses an entry larger than maxBytes; only a held entry takes arena space.
    if (this.#lru.peek(key) === entry) entry.placeIn(this.#arena);
    this.#compactIfDue();
  }

  delete(key: string): void {
    this.#lru.delete(key);
    this.#compactIfDue();
  }

  clear(): void {
    this.#lru.clear();
  }

  get size(): number {
    return this.#lru.size;
  }

  /** Bytes currently accounted for (body bytes plus overhead per entry). */
  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  /** Memory the arena holds for bodies, holes included (at most ~1.25 × the live body bytes). */
  get arenaBytes(): number {
    return this.#arena.slabBytes;
  }

  /** Body bytes of the entries held. */
  get liveBodyBytes(): number {
    return this.#arena.liveBytes;
  }

  #compactIfDue(): void {
    if (!this.#arena.compactionDue) return;
    this.#arena.planCompaction();
    // One pass over L1 (amortized O(1) per replaced body, see BodyArena); no LRU state changes.
    const arena = this.#arena;
    this.#lru.forEach((entry) => {
      entry.relocateIn(arena);
    });
  }
}
