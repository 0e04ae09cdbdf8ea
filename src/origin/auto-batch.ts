import type { Loader } from '../engine/options.js';
import { toLoaderError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { BatchLoader, type BatchResult, type LoadMany } from './batch-loader.js';

export interface AutoBatchOptions<V> {
  /** One key by the single route. */
  loadOne: Loader<V>;
  /** Several keys by the batch route. */
  loadMany: LoadMany<V>;
  /** Whether a failed batch call means the upstream has no batch route (rather than that it is failing). */
  meansNoBatchRoute: (error: unknown) => boolean;
  /** The batch window and size, defaulted and checked by BatchLoader. */
  windowMs?: number;
  maxKeys?: number;
  /** After the batch route was found missing, single calls for this long before a batch is tried again, ms. */
  retryMs: number;
  clock: Clock;
}

/**
 * Batching where the upstream serves it (`UPSTREAM_BATCH=auto`): misses go out in batches until a batch call says
 * there is no batch route (a 404, 405, 400 or 501 on it, or an answer that is not a batch answer); its keys are
 * then loaded one by one at once, so nobody sees the probe fail, and misses go singly until `retryMs` later, when
 * the next batch probes again. Upstream failures (5xx, timeouts) are failures, not a verdict on the route.
 */
export class AutoBatchLoader<V> {
  readonly #options: AutoBatchOptions<V>;
  readonly #batcher: BatchLoader<V>;
  /** undefined: not known yet, or known to work; otherwise when to try a batch again. */
  #singlyUntil: number | undefined;
  #batching: boolean | undefined;

  constructor(options: AutoBatchOptions<V>) {
    this.#options = options;
    this.#batcher = new BatchLoader<V>({
      loadMany: (keys, context) => this.#tryBatch(keys, context),
      windowMs: options.windowMs,
      maxKeys: options.maxKeys,
      clock: options.clock,
    });
  }

  /** Whether misses go out in batches now: true once a batch call worked, false while they go singly. */
  get batching(): boolean | undefined {
    return this.#batching;
  }

  readonly load: Loader<V> = (key, context) => {
    const until = this.#singlyUntil;
    if (until !== undefined && this.#options.clock.now() < until) return this.#options.loadOne(key, context);
    return this.#batcher.load(key, context);
  };

  async #tryBatch(keys: readonly string[], context: { signal: AbortSignal }): Promise<BatchResult<V>> {
    let results: BatchResult<V>;
    try {
      results = await this.#options.loadMany(keys, context);
    } catch (error) {
      if (!this.#options.meansNoBatchRoute(error)) throw error;
      return this.#singly(keys, context);
    }
    // A server without the route may answer /groups with something else: an answer naming none of the keys.
    if (keys.length > 0 && !keys.some((key) => results.has(key))) return this.#singly(keys, context);
    this.#singlyUntil = undefined;
    this.#batching = true;
    return results;
  }

  async #singly(keys: readonly string[], context: { signal: AbortSignal }): Promise<BatchResult<V>> {
    this.#singlyUntil = this.#options.clock.now() + this.#options.retryMs;
    this.#batching = false;
    const settled = await Promise.allSettled(keys.map((key) => this.#options.loadOne(key, context)));
    const results: BatchResult<V> = new Map();
    for (const [i, outcome] of settled.entries())
      results.set(keys[i]!, outcome.status === 'fulfilled' ? outcome.value : toLoaderError(outcome.reason));
    return results;
  }
}
