import { LRUCache } from 'lru-cache';
import type { CacheEntry } from './entry.js';

export interface MemoryTierOptions {
  /** Most entries kept. */
  maxEntries: number;
  /** Most bytes kept, counted as body bytes plus `entryOverheadBytes` per entry. */
  maxBytes: number;
  /** Fixed per-entry cost added to the body size (object headers, key, ETag, LRU links). */
  entryOverheadBytes: number;
}

/**
 * The in-process L1 tier: an LRU bounded by entry count and by bytes. Expiry
 * is decided by the engine's clock (entries carry their own deadlines), so
 * lru-cache's own TTL timers are not used.
 */
export class MemoryTier<V> {
  readonly #lru: LRUCache<string, CacheEntry<V>>;

  constructor(options: MemoryTierOptions) {
    const overhead = options.entryOverheadBytes;
    this.#lru = new LRUCache<string, CacheEntry<V>>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => entry.body.length + overhead,
    });
  }

  get(key: string): CacheEntry<V> | undefined {
    return this.#lru.get(key);
  }

  set(key: string, entry: CacheEntry<V>): void {
    this.#lru.set(key, entry);
  }

  delete(key: string): void {
    this.#lru.delete(key);
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
}
