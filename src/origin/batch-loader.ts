import { ProxyError, toLoaderError } from '../errors.js';
import { definedOnly, type LoadContext, type Loader, type NotFound } from '../engine/options.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { clockOption, defaultsOf, functionOption, integerSpec, specOption } from '../util/options.js';

/** One answer per requested key: the value, NOT_FOUND, or an error for that key alone. */
export type BatchResult<V> = Map<string, V | NotFound | ProxyError>;

/** Loads several keys in one call. Keys missing from the result fail alone. */
export type LoadMany<V> = (keys: readonly string[], context: LoadContext) => Promise<BatchResult<V>>;

export interface BatchLoaderOptions<V> {
  /** The multi-get call. Required. */
  loadMany: LoadMany<V>;
  /** How long the first key of a batch waits for others, ms. Default 2. */
  windowMs?: number;
  /** Keys per batch at most; a full batch leaves at once. Default 100. */
  maxKeys?: number;
  /** Time for the batch window. Default: the system clock. */
  clock?: Clock;
}

/** Default and range of every numeric option, declared once (the sidecar's settings read them too). */
export const BATCH_OPTION_SPECS = {
  windowMs: integerSpec(2, 0, 10_000),
  maxKeys: integerSpec(100, 1, 1000),
} as const;

export const BATCH_DEFAULTS = defaultsOf(BATCH_OPTION_SPECS);

interface Pending<V> {
  keys: Map<string, { resolve: (value: V | NotFound) => void; reject: (error: unknown) => void }[]>;
  signal: AbortSignal;
  timer: TimerHandle | undefined;
}

/**
 * Turns single-key loads into batched calls: keys arriving within `windowMs`, up to `maxKeys`, go out as one
 * `loadMany`. Under the engine's singleflight a key arrives once; if twice, both share the batch's answer.
 */
export class BatchLoader<V> {
  readonly #loadMany: LoadMany<V>;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #clock: Clock;
  #pending: Pending<V> | undefined;

  constructor(options: BatchLoaderOptions<V>) {
    const o = { ...BATCH_DEFAULTS, ...definedOnly(options) };
    this.#loadMany = functionOption<LoadMany<V>>('loadMany', o.loadMany);
    this.#windowMs = specOption('windowMs', o.windowMs, BATCH_OPTION_SPECS.windowMs);
    this.#maxKeys = specOption('maxKeys', o.maxKeys, BATCH_OPTION_SPECS.maxKeys);
    this.#clock = clockOption('clock', o.clock);
  }

  readonly load: Loader<V> = (key, context) =>
    new Promise<V | NotFound>((resolve, reject) => {
      let batch = this.#pending;
      if (batch === undefined) {
        batch = { keys: new Map(), signal: context.signal, timer: undefined };
        this.#pending = batch;
        const started = batch;
        batch.timer = this.#clock.setTimeout(() => this.#flush(started), this.#windowMs);
      }
      const waiters = batch.keys.get(key);
      if (waiters !== undefined) waiters.push({ resolve, reject });
      else batch.keys.set(key, [{ resolve, reject }]);
      if (batch.keys.size >= this.#maxKeys) this.#flush(batch);
    });

  #flush(batch: Pending<V>): void {
    if (this.#pending !== batch) return;
    this.#pending = undefined;
    this.#clock.clearTimeout(batch.timer);
    const keys = [...batch.keys.keys()];
    // The batch call is the loader: whatever it throws or answers instead of a Map fails every key of
    // the batch as the upstream's failure (a ProxyError stays as it is).
    const fail = (error: unknown): void => {
      const failure = toLoaderError(error);
      for (const waiters of batch.keys.values()) for (const waiter of waiters) waiter.reject(failure);
    };
    let answered: Promise<BatchResult<V>>;
    try {
      answered = Promise.resolve(this.#loadMany(keys, { signal: batch.signal }));
    } catch (error) {
      answered = Promise.reject(error);
    }
    answered.then((results) => {
      if (!(results instanceof Map)) return fail(new TypeError('loadMany must answer a Map from key to result'));
      for (const [key, waiters] of batch.keys) {
        const result = results.get(key);
        for (const waiter of waiters) {
          if (result === undefined)
            waiter.reject(new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream batch answer has no entry for ${key}`));
          else if (result instanceof ProxyError) waiter.reject(result);
          else waiter.resolve(result);
        }
      }
    }, fail);
  }
}
