import { UNAVAILABLE, type EntryStore, type Unavailable } from '../shared-tier/contract.js';
import { envelopeEntry, type EntryOptions } from './entries.js';
import type { StoredEntry } from './entry.js';
import { decodeEnvelope } from './envelope.js';
import type { L1Cache } from './l1.js';

/**
 * Fills L1 from the shared tier's entries (warm start): never an origin call, never a lease. A key
 * invalidated while its read is out is dropped from the fill, so the read cannot bring back a copy
 * the change removed.
 */
export class SharedFill<V> {
  readonly #tier: EntryStore;
  readonly #l1: L1Cache<V>;
  readonly #options: EntryOptions<V>;
  /** The keys of each fill in progress that no change has touched since it began. */
  readonly #pending = new Set<Set<string>>();

  constructor(tier: EntryStore, l1: L1Cache<V>, options: EntryOptions<V>) {
    this.#tier = tier;
    this.#l1 = l1;
    this.#options = options;
  }

  /** How many of `keys` went into L1: those with a fresh, decodable entry, not in L1 already and unchanged meanwhile. */
  async fill(keys: readonly string[], signal: AbortSignal): Promise<number> {
    const unchanged = new Set(keys);
    this.#pending.add(unchanged);
    let read: (Buffer | undefined)[] | Unavailable;
    try {
      read = await this.#tier.readEntries(keys);
    } finally {
      this.#pending.delete(unchanged);
    }
    if (read === UNAVAILABLE || signal.aborted) return 0;
    const now = this.#options.now();
    let filled = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const bytes = read[i];
      if (bytes === undefined || !unchanged.has(key) || this.#l1.get(key) !== undefined) continue;
      const fields = decodeEnvelope(bytes);
      const entry = fields === undefined ? undefined : envelopeEntry(fields, now, this.#options);
      if (entry === undefined) continue;
      (entry as StoredEntry<V>).checkedAt = now;
      this.#l1.set(key, entry);
      filled++;
    }
    return filled;
  }

  /** A change to `key` (or to everything, without a key) came while fills are out: they skip it. */
  changed(key?: string): void {
    for (const keys of this.#pending) key === undefined ? keys.clear() : keys.delete(key);
  }
}
