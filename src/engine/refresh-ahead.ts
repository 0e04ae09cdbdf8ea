import type { CacheEntry } from './entry.js';

/** Refresh-ahead draws only within this many scales of expiry: past it e^(-left/s) < 5e-5. */
const REACH = 10;

/**
 * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention"): a hit refreshes its
 * entry with probability e^(-left/scale), never in the first half of the entry's life. The scale
 * is `refreshAheadMs`, or the recent origin load time when longer, so a slow origin starts sooner.
 */
export class RefreshAhead {
  readonly #minScaleMs: number;
  readonly #random: () => number;
  /** 0 = off. */
  #scale: number;
  /** Moving average of origin load times, ms. */
  #loadMs = 0;

  constructor(refreshAheadMs: number, random: () => number) {
    this.#minScaleMs = refreshAheadMs;
    this.#scale = refreshAheadMs;
    this.#random = random;
  }

  /** Whether a hit on `entry` at `now` should start a refresh. */
  due(entry: CacheEntry<unknown>, now: number): boolean {
    const scale = this.#scale;
    const left = entry.freshUntil - now;
    if (scale === 0 || left >= scale * REACH || left * 2 > entry.freshUntil - entry.storedAt) return false;
    return left < -scale * Math.log(this.#random());
  }

  /** An origin load took `ms`. */
  loaded(ms: number): void {
    this.#loadMs = this.#loadMs === 0 ? ms : this.#loadMs + (ms - this.#loadMs) * 0.2;
    if (this.#minScaleMs !== 0) this.#scale = Math.max(this.#minScaleMs, this.#loadMs);
  }
}
