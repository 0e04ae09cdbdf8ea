import type { HotKeyRecord } from '../shared-tier/contract.js';

/** Distinct keys one flush of counted reads carries at most (the cost of one write to the hot-key record). */
const MAX_COUNTED_KEYS = 10_000;

export interface HotKeySamplerOptions {
  /** One hit in this many is counted, weighted by it. */
  sampleEvery: number;
  /** How often the counts are added to the record, ms. */
  flushMs: number;
  now: () => number;
}

/**
 * Counts this instance's reads into the fleet's record of its hottest keys (warm start reads it):
 * every load that found the group, and one hit in `sampleEvery` weighted by it. The record then
 * knows every group this instance loaded, the rarely read ones whose misses dominate a cold
 * start included, and never ids that do not exist. Counts go to the record in one write every
 * `flushMs`, off the lookup's path.
 */
export class HotKeySampler {
  readonly #record: HotKeyRecord;
  readonly #options: HotKeySamplerOptions;
  #reads = new Map<string, number>();
  #flushAt: number;
  /** Hits until the next counted one. */
  #untilSampled: number;

  constructor(record: HotKeyRecord, options: HotKeySamplerOptions) {
    this.#record = record;
    this.#options = options;
    this.#flushAt = options.now() + options.flushMs;
    this.#untilSampled = options.sampleEvery;
  }

  /** An L1 hit of `key`; `found`: the entry is a group (negative entries are no group to warm). */
  hit(key: string, now: number, found: boolean): void {
    if (--this.#untilSampled !== 0) return;
    this.#untilSampled = this.#options.sampleEvery;
    // One hit in N stands for N.
    if (found) this.#count(key, now, this.#options.sampleEvery);
  }

  /** A load of `key` that found the group. */
  loaded(key: string, now: number): void {
    this.#count(key, now, 1);
  }

  /** Adds the counts so far to the record; best-effort, like every tier operation: it never rejects. */
  flush(): Promise<boolean> {
    const counts = this.#reads;
    this.#reads = new Map();
    return counts.size === 0 ? Promise.resolve(true) : this.#record.recordReads(counts);
  }

  #count(key: string, now: number, weight: number): void {
    const reads = this.#reads;
    const count = reads.get(key);
    if (count !== undefined) reads.set(key, count + weight);
    else if (reads.size < MAX_COUNTED_KEYS) reads.set(key, weight);
    if (now >= this.#flushAt) {
      this.#flushAt = now + this.#options.flushMs;
      // Not on this lookup's path: building the write costs a few ms for thousands of keys.
      queueMicrotask(() => void this.flush());
    }
  }
}
