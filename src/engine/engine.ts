import { ProxyError, toProxyError } from '../errors.js';
import { createEntry, jitteredTtl, type CacheEntry } from './entry.js';
import { MemoryTier } from './memory-tier.js';
import { NOT_FOUND, resolveEngineOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';

/**
 * How a lookup was answered, for Cache-Status and metrics:
 * - `hit`: a fresh entry from L1;
 * - `miss`: this call started the load;
 * - `collapsed`: this call waited on a load another call had started.
 */
export type LookupOutcome = 'hit' | 'miss' | 'collapsed';

export interface Lookup<V> {
  readonly entry: CacheEntry<V>;
  readonly outcome: LookupOutcome;
}

export interface GetOptions {
  /** Abandons this caller's wait only; the shared load goes on for the others. */
  signal?: AbortSignal;
}

/** One load in progress for one key: the single coalescing point of the engine. */
interface Flight<V> {
  promise: Promise<CacheEntry<V>>;
  /** Callers that waited on this load, the starter included. */
  waiters: number;
  /** Set by invalidate(): the result must not be cached, it may predate the change. */
  fenced: boolean;
}

const noop = (): void => {};

/**
 * The HTTP-free heart of the proxy: L1 lookup, then exactly one in-flight
 * load per key shared by every concurrent caller, then the source.
 */
export class CoalescingCache<V = unknown> {
  readonly #options: ResolvedEngineOptions<V>;
  readonly #l1: MemoryTier<V>;
  readonly #flights = new Map<string, Flight<V>>();
  readonly #closing = new AbortController();

  constructor(options: EngineOptions<V>) {
    this.#options = resolveEngineOptions(options);
    this.#l1 = new MemoryTier<V>({
      maxEntries: this.#options.l1MaxEntries,
      maxBytes: this.#options.l1MaxBytes,
      entryOverheadBytes: this.#options.l1EntryOverheadBytes,
    });
  }

  /** The engine's clock, so shells compute Age and max-age on the same time base as the entries. */
  now(): number {
    return this.#options.now();
  }

  /**
   * A fresh L1 entry, synchronously, or `undefined`. The hot path of the HTTP
   * shells: no promise, no allocation.
   */
  peek(key: string): CacheEntry<V> | undefined {
    const entry = this.#l1.get(key);
    if (entry === undefined) return undefined;
    if (this.#options.now() < entry.freshUntil) return entry;
    return undefined;
  }

  /**
   * The entry for `key`: from L1 when fresh, otherwise from the one load in
   * flight for it (started here if there is none). Every concurrent caller of
   * a key gets the same entry or the same error; errors are never cached.
   */
  get(key: string, options?: GetOptions): Promise<Lookup<V>> {
    const entry = this.peek(key);
    if (entry !== undefined) return Promise.resolve({ entry, outcome: 'hit' });
    if (this.#closing.signal.aborted) return Promise.reject(new ProxyError('CLOSED', 'the cache is closed', 503));
    let flight = this.#flights.get(key);
    let outcome: LookupOutcome = 'collapsed';
    if (flight === undefined) {
      flight = this.#startFlight(key);
      outcome = 'miss';
    }
    flight.waiters++;
    return waitFor(flight.promise, options?.signal).then((filled) => ({ entry: filled, outcome }));
  }

  /**
   * Forgets `keys` in this process: drops their L1 entries and fences any load
   * in flight, so a value read before the change is never cached afterwards.
   * Later calls start a new load.
   */
  invalidate(keys: string | readonly string[]): void {
    for (const key of typeof keys === 'string' ? [keys] : keys) {
      this.#l1.delete(key);
      const flight = this.#flights.get(key);
      if (flight !== undefined) {
        flight.fenced = true;
        this.#flights.delete(key);
      }
    }
  }

  /** Aborts loads in flight (their callers get CLOSED) and drops L1. Idempotent. */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort(new ProxyError('CLOSED', 'the cache is closed', 503));
    const pending = [...this.#flights.values()].map((flight) => flight.promise.catch(noop));
    this.#flights.clear();
    await Promise.all(pending);
    this.#l1.clear();
  }

  /** Point-in-time counters for health and metrics. */
  stats(): { l1Entries: number; l1Bytes: number; inFlight: number } {
    return { l1Entries: this.#l1.size, l1Bytes: this.#l1.bytes, inFlight: this.#flights.size };
  }

  #startFlight(key: string): Flight<V> {
    const flight: Flight<V> = { promise: undefined as unknown as Promise<CacheEntry<V>>, waiters: 0, fenced: false };
    flight.promise = this.#fill(key, flight).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    // Callers may all have gone away; the load's failure must not become an unhandled rejection.
    flight.promise.catch(noop);
    this.#flights.set(key, flight);
    return flight;
  }

  async #fill(key: string, flight: Flight<V>): Promise<CacheEntry<V>> {
    const o = this.#options;
    const signal = this.#closing.signal;
    let loaded: V | typeof NOT_FOUND;
    try {
      loaded = await o.load(key, { signal });
    } catch (error) {
      throw signal.aborted ? signal.reason : toProxyError(error);
    }
    if (signal.aborted) throw signal.reason;
    const now = o.now();
    const entry =
      loaded === NOT_FOUND
        ? createEntry<V>('missing', undefined, o.notFoundBody(key), now, jitteredTtl(o.negativeTtlMs, o.ttlJitter, o.random))
        : createEntry<V>('found', loaded, o.serialize(loaded), now, jitteredTtl(o.ttlMs, o.ttlJitter, o.random));
    if (!flight.fenced && entry.freshUntil > now) this.#l1.set(key, entry);
    return entry;
  }
}

/** Waits on a shared promise; an abort rejects this waiter only. */
function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortedError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function abortedError(): ProxyError {
  // 499: nginx's "client closed request"; nobody reads it, the client is gone.
  return new ProxyError('ABORTED', 'the caller stopped waiting', 499);
}

export function createCoalescingCache<V>(options: EngineOptions<V>): CoalescingCache<V> {
  return new CoalescingCache<V>(options);
}
