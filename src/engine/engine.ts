import { ProxyError, toProxyError } from '../errors.js';
import type { EnvelopeFields } from '../l2/envelope.js';
import { FleetLoader, type FleetSource } from '../l2/fleet-load.js';
import type { BusMessage, RedisTier } from '../l2/redis-tier.js';
import { createEntry, jitteredTtl, type CacheEntry } from './entry.js';
import { MemoryTier } from './memory-tier.js';
import { NOT_FOUND, resolveEngineOptions, type EngineOptions, type ResolvedEngineOptions } from './options.js';

/**
 * How a lookup was answered, for Cache-Status and metrics:
 * - `hit`: a fresh entry from L1;
 * - `l2-hit`: a fresh entry from the shared L2 tier;
 * - `miss`: this call started the load that went to the origin;
 * - `collapsed`: this call waited on a load another call (or another instance) had started.
 */
export type LookupOutcome = 'hit' | 'l2-hit' | 'miss' | 'collapsed';

/** What an invalidation reached. */
export interface InvalidationResult {
  /** False when L2 is configured but unreachable: other instances keep their copies until they expire. */
  fleet: boolean;
}

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
  promise: Promise<Filled<V>>;
  /** Callers that waited on this load, the starter included. */
  waiters: number;
  /** Set by invalidate(): the result must not be cached, it may predate the change. */
  fenced: boolean;
}

interface Filled<V> {
  entry: CacheEntry<V>;
  source: FleetSource;
}

const OUTCOME_OF_SOURCE: Record<FleetSource, LookupOutcome> = { origin: 'miss', l2: 'l2-hit', fleet: 'collapsed' };

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
  readonly #l2: RedisTier | undefined;
  readonly #fleet: FleetLoader | undefined;
  readonly #unsubscribe: () => void = noop;

  constructor(options: EngineOptions<V>) {
    this.#options = resolveEngineOptions(options);
    this.#l1 = new MemoryTier<V>({
      maxEntries: this.#options.l1MaxEntries,
      maxBytes: this.#options.l1MaxBytes,
      entryOverheadBytes: this.#options.l1EntryOverheadBytes,
    });
    this.#l2 = this.#options.l2;
    if (this.#l2 !== undefined) {
      this.#fleet = new FleetLoader(this.#l2);
      this.#unsubscribe = this.#l2.onMessage((message) => void this.#onBusMessage(message));
    }
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
    let started = false;
    if (flight === undefined) {
      flight = this.#startFlight(key);
      started = true;
    }
    flight.waiters++;
    return waitFor(flight.promise, options?.signal).then((filled) => ({
      entry: filled.entry,
      outcome: started ? OUTCOME_OF_SOURCE[filled.source] : 'collapsed',
    }));
  }

  /**
   * Invalidates `keys` everywhere: deletes their L2 entries and voids any
   * outstanding lease (so a load that began before the change cannot write
   * its value back), drops them from L1 and fences loads in flight here, then
   * tells every other instance to do the same. Later calls load afresh.
   */
  async invalidate(keys: string | readonly string[]): Promise<InvalidationResult> {
    const list = typeof keys === 'string' ? [keys] : [...keys];
    if (this.#l2 === undefined) {
      this.#invalidateLocal(list);
      return { fleet: true };
    }
    // L2 first: evicting L1 before the delete would let a request refill L1 from the old L2 value.
    const deleted = await this.#l2.deleteKeys(list);
    this.#invalidateLocal(list);
    const published = await this.#l2.publish({ type: 'invalidate', ids: list, deleted: true });
    return { fleet: deleted && published };
  }

  /** Drops `keys` from L1 and fences their loads in flight, in this process only. */
  #invalidateLocal(keys: readonly string[]): void {
    for (const key of keys) {
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
    this.#unsubscribe();
    this.#closing.abort(new ProxyError('CLOSED', 'the cache is closed', 503));
    const pending = [...this.#flights.values()].map((flight) => flight.promise.catch(noop));
    this.#flights.clear();
    await Promise.all(pending);
    this.#l1.clear();
  }

  /** Point-in-time counters for health and metrics. */
  stats(): { l1Entries: number; l1Bytes: number; inFlight: number; l2: 'disabled' | 'ok' | 'degraded' } {
    const l2 = this.#l2 === undefined ? 'disabled' : this.#l2.healthy ? 'ok' : 'degraded';
    return { l1Entries: this.#l1.size, l1Bytes: this.#l1.bytes, inFlight: this.#flights.size, l2 };
  }

  #startFlight(key: string): Flight<V> {
    const flight: Flight<V> = { promise: undefined as unknown as Promise<Filled<V>>, waiters: 0, fenced: false };
    flight.promise = this.#fill(key, flight).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    // Callers may all have gone away; the load's failure must not become an unhandled rejection.
    flight.promise.catch(noop);
    this.#flights.set(key, flight);
    return flight;
  }

  async #fill(key: string, flight: Flight<V>): Promise<Filled<V>> {
    const signal = this.#closing.signal;
    let filled: Filled<V>;
    let cacheable = true;
    try {
      if (this.#fleet === undefined) {
        filled = { entry: await this.#loadFromOrigin(key), source: 'origin' };
      } else {
        const result = await this.#fleet.load(key, {
          loadOrigin: () => this.#loadFromOrigin(key),
          fromEnvelope: (fields) => this.#fromEnvelope(fields),
          isFenced: () => flight.fenced,
          now: this.#options.now,
        });
        filled = result;
        cacheable = result.cacheable;
      }
    } catch (error) {
      throw signal.aborted ? signal.reason : toProxyError(error);
    }
    if (signal.aborted) throw signal.reason;
    if (cacheable && !flight.fenced && filled.entry.freshUntil > this.#options.now()) this.#l1.set(key, filled.entry);
    return filled;
  }

  async #loadFromOrigin(key: string): Promise<CacheEntry<V>> {
    const o = this.#options;
    const loaded = await o.load(key, { signal: this.#closing.signal });
    const now = o.now();
    return loaded === NOT_FOUND
      ? createEntry<V>('missing', undefined, o.notFoundBody(key), now, jitteredTtl(o.negativeTtlMs, o.ttlJitter, o.random))
      : createEntry<V>('found', loaded, o.serialize(loaded), now, jitteredTtl(o.ttlMs, o.ttlJitter, o.random));
  }

  /** An L2 value as an entry here, or `undefined` when it is no longer fresh or its value does not decode. */
  #fromEnvelope(fields: EnvelopeFields): CacheEntry<V> | undefined {
    if (fields.freshUntil <= this.#options.now()) return undefined;
    let value: V | undefined;
    if (fields.kind === 'found') {
      try {
        value = this.#options.deserialize(fields.body);
      } catch {
        return undefined;
      }
    }
    return { ...fields, value };
  }

  /** Invalidations published by other instances or by the group-profile service itself. */
  async #onBusMessage(message: BusMessage): Promise<void> {
    if (message.type !== 'invalidate' || message.ids.length === 0) return;
    // A change event straight from the service has not deleted L2 yet; ours have.
    if (!message.deleted) await this.#l2!.deleteKeys(message.ids);
    this.#invalidateLocal(message.ids);
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
