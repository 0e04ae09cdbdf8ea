import type { Clock } from '../util/clock.js';

export interface AdaptiveLimitOptions {
  /** Where the limit starts. */
  initial: number;
  /** The limit never falls below this. */
  min: number;
  /** Nor grows past this (UPSTREAM_MAX_CONCURRENCY). */
  max: number;
  /** The no-load latency is the minimum seen over the last one to two of these windows, ms. */
  minLatencyWindowMs: number;
  clock: Clock;
}

/** A window that finds the upstream with room grows the limit by this factor. */
export const GROWTH = 1.5;
/** A window with a timeout or 5xx shrinks the limit by this factor. */
const BACKOFF = 0.9;
/** Latency up to this many times the no-load latency is the upstream's own spread, not a queue. */
const TOLERANCE = 1.2;
/** The no-load latency of a window: its 10th-percentile call, robust to one fast outlier and to jitter. */
const BASE_PERCENTILE = 0.1;

/**
 * Concurrency toward the upstream that follows it (TCP Vegas, as in Netflix's concurrency-limits):
 * with `limit` calls out and a no-load latency `minMs`, calls that took `ms` on average say about
 * `limit × (1 − TOLERANCE·minMs/ms)` calls were queued at the upstream. None: the upstream has
 * room, the limit grows by half; a few: it grows by a step or holds; more: it shrinks, at once in
 * proportion when latency has more than doubled, and by a tenth on a timeout or 5xx. Samples are
 * taken together over a window of one turn of the calls out and at least one no-load latency, so
 * the limit moves once per round trip, as TCP's window does. The no-load latency is the least
 * window 10th percentile over the last one to two minimum windows: an upstream that became slower
 * for good is learnt anew.
 */
export class AdaptiveLimit {
  readonly #min: number;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #clock: Clock;
  #limit: number;
  /** Minimum latency of the current minimum window and of the one before it. */
  #windowMin = Infinity;
  #previousMin = Infinity;
  #windowStart: number;
  /** The samples since the limit last moved. */
  #batchStart: number;
  /** Stall-corrected durations summed, and wall-clock durations, of the calls that ended well. */
  #sumMs = 0;
  #samples: number[] = [];
  #maxInFlight = 0;
  #dropped = false;
  /** Until a window shows otherwise, an upstream is taken to have room: the limit starts modest on purpose. */
  #growing = true;

  constructor(options: AdaptiveLimitOptions) {
    this.#min = options.min;
    this.#max = options.max;
    this.#windowMs = options.minLatencyWindowMs;
    this.#clock = options.clock;
    this.#limit = Math.min(options.max, Math.max(options.min, options.initial));
    this.#windowStart = this.#batchStart = this.#clock.now();
  }

  /** Calls that may be out at once now. */
  get limit(): number {
    return Math.floor(this.#limit);
  }

  /** Whether the upstream has shown room (or nothing else yet), so the limit grows by half each round trip. */
  get growing(): boolean {
    return this.#growing;
  }

  /** The no-load latency the limit works from, ms; undefined before the first call ends well. */
  get minLatencyMs(): number | undefined {
    const min = Math.min(this.#windowMin, this.#previousMin);
    return min === Infinity ? undefined : min;
  }

  /**
   * A call ended after `ms` of the upstream's time (the proxy's own event-loop stalls taken out), `wallMs` as
   * measured, with `inFlight` calls out when it started; `dropped`: it timed out or the upstream failed it (5xx,
   * refused). The no-load latency comes from `wallMs`: taking stalls out can take too much (a stall while the
   * upstream was still working did not delay the answer), and an underestimated no-load latency reads as a queue.
   */
  sample(ms: number, inFlight: number, dropped: boolean, wallMs = ms): void {
    const now = this.#clock.now();
    this.#rotate(now);
    // A 0 ms answer (a cached or local upstream) would make every later call look queued.
    const latency = Math.max(ms, 0.1);
    if (dropped) this.#dropped = true;
    else {
      this.#sumMs += latency;
      this.#samples.push(Math.max(wallMs, 0.1));
    }
    if (inFlight > this.#maxInFlight) this.#maxInFlight = inFlight;
    // Before any window closed, the least sample so far stands in for the no-load latency.
    const minMs = Math.min(this.#windowMin, this.#previousMin, this.#windowMin === Infinity ? latency : Infinity);
    // A window ends once the calls out when it began could all have reported: one turn of the limit.
    const enough = this.#dropped || this.#samples.length >= Math.min(this.#maxInFlight, this.limit);
    if (!enough || (!this.#dropped && now - this.#batchStart < minMs)) return;
    if (this.#samples.length > 0) {
      const sorted = this.#samples.sort((a, b) => a - b);
      const base = sorted[Math.floor(sorted.length * BASE_PERCENTILE)]!;
      if (base < this.#windowMin) this.#windowMin = base;
    }
    this.#limit = Math.min(this.#max, Math.max(this.#min, this.#next(Math.min(this.#windowMin, this.#previousMin))));
    this.#batchStart = now;
    this.#sumMs = this.#maxInFlight = 0;
    this.#samples = [];
    this.#dropped = false;
  }

  #next(minMs: number): number {
    const limit = this.#limit;
    if (this.#dropped) {
      this.#growing = false;
      return limit * BACKOFF;
    }
    const latency = this.#sumMs / this.#samples.length;
    // Too few calls out to have tested the limit: nothing learnt about room above it.
    if (this.#maxInFlight * 2 < limit && latency <= minMs * 2) return limit;
    this.#growing = false;
    const queued = limit * Math.max(0, 1 - (TOLERANCE * minMs) / latency);
    const step = Math.max(1, Math.log10(limit));
    if (queued <= step) {
      this.#growing = limit < this.#max;
      return limit * GROWTH;
    }
    if (queued < 3 * step) return limit + step;
    if (queued <= 6 * step) return limit;
    return Math.min(limit - step, (limit * 2 * minMs) / latency);
  }

  #rotate(now: number): void {
    if (now - this.#windowStart < this.#windowMs) return;
    // A whole window with no sample leaves nothing to remember.
    this.#previousMin = now - this.#windowStart < 2 * this.#windowMs ? this.#windowMin : Infinity;
    this.#windowMin = Infinity;
    this.#windowStart = now;
  }
}
