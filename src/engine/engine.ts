import { setMaxListeners } from 'node:events';
import { ProxyError, toLoaderError, toProxyError } from '../errors.js';
import {
  UNAVAILABLE,
  type FeedChange,
  type FeedPosition,
  type FeedResetReason,
  type SharedTier,
  type Unavailable,
} from '../shared-tier/contract.js';
import { FleetLoader } from './fleet-load.js';
import type { CacheEntry, StoredEntry } from './entry.js';
import type { Clock } from '../util/clock.js';
import { EngineChanges } from './changes.js';
import { envelopeEntry, filteredEntry, loadedEntry } from './entries.js';
import { chargeOriginCall, type Filled, type Flight, Flights } from './flights.js';
import { HotKeySampler } from './hot-keys.js';
import { getMany } from './many.js';
import { L1Cache } from './l1.js';
import { RefreshAhead } from './refresh-ahead.js';
import { SharedFill } from './shared-fill.js';
import {
  NOT_FOUND,
  type NotFound,
  resolveEngineOptions,
  type EngineOptions,
  type ResolvedEngineOptions,
} from './options.js';
import type { EngineChange, EngineStats, GetOptions, InvalidateOptions, InvalidationResult, Lookup } from './types.js';
import { waitOrServeStale } from './wait-list.js';

// The public types live in types.ts; importers of the engine find them here too.
export type * from './types.js';

const noop = (): void => {};

/**
 * The HTTP-free heart of the proxy: L1 lookup, then exactly one in-flight
 * load per key shared by every concurrent caller (and, with L2, by the whole
 * fleet), then the source. Entries live fresh, then stale-while-revalidate,
 * then as a stale-if-error fallback until `maxStaleMs` past freshness.
 */
export class CoalescingCache<V = unknown> {
  readonly #options: ResolvedEngineOptions<V>;
  readonly #l1: L1Cache<V>;
  readonly #flights: Flights<V>;
  readonly #closing = new AbortController();
  readonly #l2: SharedTier | undefined;
  readonly #fleet: FleetLoader | undefined;
  readonly #unsubscribe: () => void = noop;
  /** Invalidations made here and changes read from the feed, applied in feed order. */
  readonly #changes: EngineChanges;
  readonly #refreshAhead: RefreshAhead;
  /** Counts reads into the fleet's hot-key record: with a shared tier, and sampling on. */
  readonly #hotKeys: HotKeySampler | undefined;
  readonly #sharedFill: SharedFill<V> | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: EngineOptions<V>) {
    this.#options = resolveEngineOptions(options);
    // Every in-flight load listens on this signal; hundreds at once under load is normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    this.#l1 = new L1Cache<V>({
      maxEntries: this.#options.l1MaxEntries,
      maxBytes: this.#options.l1MaxBytes,
      entryOverheadBytes: this.#options.l1EntryOverheadBytes,
    });
    this.#l2 = this.#options.l2;
    this.#flights = new Flights<V>(this.#options.waitTimeoutMs, this.#options.clock, this.#options.observer);
    this.#refreshAhead = new RefreshAhead(this.#options.refreshAheadMs, this.#options.random);
    this.#sharedFill = this.#l2 && new SharedFill(this.#l2, this.#l1, this.#options);
    this.#hotKeys =
      this.#l2 !== undefined && this.#options.hotKeysSampleEvery > 0
        ? new HotKeySampler(this.#l2, {
            sampleEvery: this.#options.hotKeysSampleEvery,
            flushMs: this.#options.hotKeysFlushMs,
            now: this.#options.now,
          })
        : undefined;
    this.#changes = new EngineChanges({
      l2: this.#l2,
      existence: this.#options.existence,
      now: this.#options.now,
      host: {
        evict: (keys) => this.#invalidateLocal(keys),
        applied: (change, local) => this.#applied(change, local),
        flush: (reason) => this.#flush(reason),
      },
    });
    if (this.#l2 !== undefined) {
      const fleet = new FleetLoader(this.#l2, this.#options.clock, this.#options.observer);
      this.#fleet = fleet;
      const changes = this.#changes;
      // The one subscription: lease hints, changes and resets all arrive here.
      this.#unsubscribe = this.#l2.onEvent((event) => {
        if (event.type === 'change') changes.fromFeed(event.change);
        else if (event.type === 'reset') changes.reset(event.reason);
        else fleet.deliver(event);
      });
    }
  }

  /** The engine's clock, so shells compute Age and max-age on the same time base as the entries. */
  now(): number {
    return this.#options.now();
  }

  /** The one clock of the engine's time decisions, for helpers that run on it (warm start). */
  get clock(): Clock {
    return this.#options.clock;
  }

  /** How long past freshness entries are served while one refresh runs, so shells can state it (stale-while-revalidate). */
  staleWindows(): { staleWhileRevalidateMs: number; negativeStaleWhileRevalidateMs: number } {
    return {
      staleWhileRevalidateMs: this.#options.staleTtlMs,
      negativeStaleWhileRevalidateMs: this.#options.negativeStaleTtlMs,
    };
  }

  /**
   * A fresh L1 entry, synchronously, or `undefined`. Like lru-cache's `peek`, it has no side
   * effects: no refresh-ahead, no count for the hot-key record (see `hit`).
   */
  peek(key: string): CacheEntry<V> | undefined {
    return this.#fresh(key, this.#options.now());
  }

  /**
   * The hot path of the HTTP shells (and the first step of `get`): a fresh L1 entry as `peek`
   * finds it, synchronously, with no promise and no allocation, counted as a read for the
   * fleet's hot-key record and perhaps refreshed ahead of expiry (XFetch); `undefined` on a miss.
   */
  hit(key: string): CacheEntry<V> | undefined {
    const now = this.#options.now();
    const entry = this.#fresh(key, now);
    if (entry === undefined) return undefined;
    // The refresh is an ordinary background load, so with a shared tier it takes the key's lease.
    if (!this.#flights.has(key) && this.#refreshAhead.due(entry, now)) this.#refresh(key, entry.freshUntil);
    this.#hotKeys?.hit(key, now, entry.kind === 'found');
    return entry;
  }

  #fresh(key: string, now: number): StoredEntry<V> | undefined {
    const entry = this.#l1.get(key);
    if (entry === undefined || now >= entry.freshUntil) return undefined;
    if (this.#l2 !== undefined && !this.#trusted(entry, now)) return undefined;
    return entry;
  }

  /**
   * The entries of several keys, each looked up exactly as `get` does (L1, the key's one load in
   * flight, the shared tier and its lease, the loader), so concurrent single and multiple lookups
   * of a key share one load, across the fleet too. Keys asked twice are looked up once. The map
   * holds the keys in the order first asked, each with its lookup or the error of that key alone
   * (a ProxyError: not found is a lookup of a `missing` entry, not an error). Never rejects.
   */
  getMany(keys: Iterable<string>, options?: GetOptions): Promise<Map<string, Lookup<V> | ProxyError>> {
    return getMany((key, getOptions) => this.get(key, getOptions), keys, options);
  }

  /**
   * The fleet's hottest keys, hottest first, from the record every instance counts its lookups
   * into (`hotKeysSampleEvery`); `[]` without a shared tier or while it is unreachable.
   */
  async hottestKeys(count: number): Promise<string[]> {
    // Read whether or not this instance samples: the record is the fleet's.
    if (this.#l2 === undefined || count <= 0) return [];
    const keys = await this.#l2.hottestKeys(count);
    return keys === UNAVAILABLE ? [] : keys;
  }

  /**
   * Fills L1 with the shared tier's entries of `keys` (warm start): never an origin call, never a
   * lease. Keys without a fresh, decodable entry, already in L1 or invalidated while being read
   * are skipped. Resolves with how many were filled (0 without a shared tier or while unreachable).
   */
  fillFromShared(keys: readonly string[]): Promise<number> {
    const signal = this.#closing.signal;
    if (this.#sharedFill === undefined || keys.length === 0 || signal.aborted) return Promise.resolve(0);
    return this.#sharedFill.fill(keys, signal);
  }

  /**
   * The entry for `key`: from L1 when fresh (or stale within the
   * stale-while-revalidate window), otherwise from the one load in flight for
   * it, started here if there is none. Every concurrent caller of a key gets
   * the same entry or the same error; errors are never cached. When the load
   * fails or is slow and a stale entry is still kept, that entry is served.
   */
  get(key: string, options?: GetOptions): Promise<Lookup<V>> {
    const fresh = this.hit(key);
    if (fresh !== undefined) return Promise.resolve({ entry: fresh, outcome: 'hit' });
    if (this.#closing.signal.aborted) return Promise.reject(closedError());
    const now = this.#options.now();
    let stale: StoredEntry<V> | undefined = this.#l1.get(key);
    if (stale !== undefined && this.#l2 !== undefined && !this.#trusted(stale, now))
      return this.#check(key, stale, options?.signal);
    if (stale !== undefined) {
      if (now < stale.freshUntil + this.#staleWindow(stale)) {
        this.#refresh(key, now);
        return Promise.resolve({ entry: stale, outcome: 'stale' });
      }
      if (now >= stale.usableUntil) {
        this.#l1.delete(key);
        stale = undefined;
      }
    }
    const signal = options?.signal;
    // The one coalescing point: everything a miss costs (the existence check, the budget, the
    // shared tier, the origin) happens inside the flight, once per load. A key with a stale copy
    // existed, so its flight does not ask the filter.
    const askExistence = stale === undefined;
    const { flight, started } = this.#flights.join(key, options?.client, (flight) =>
      this.#fill(key, flight, now, undefined, askExistence),
    );
    if (stale === undefined) return this.#flights.wait(flight, started, signal);
    return waitOrServeStale(
      this.#flights.waitList(flight),
      started,
      signal,
      stale,
      this.#options.clock,
      this.#options.softTimeoutMs,
    );
  }

  /**
   * Invalidates `keys` everywhere: deletes their L2 entries and voids any
   * outstanding lease (so a load that began before the change cannot write
   * its value back), appends the change to the shared tier's feed (resolving
   * once it was acknowledged), and drops them from L1 and fences loads in
   * flight here, as every other instance does when it reads the change.
   * Later calls load afresh. Without a shared tier, this instance only.
   */
  invalidate(keys: string | readonly string[], options: InvalidateOptions = {}): Promise<InvalidationResult> {
    return this.#changes.invalidate(typeof keys === 'string' ? [keys] : keys, options);
  }

  /** Aborts loads in flight (their callers get CLOSED) and drops L1. Idempotent. */
  close(): Promise<void> {
    // Every caller waits for the same close, a second one too.
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    // The lookups counted since the last flush still count for the instances starting next.
    await this.#hotKeys?.flush();
    this.#unsubscribe();
    this.#changes.close();
    this.#fleet?.close();
    this.#closing.abort(closedError());
    await this.#flights.drain();
    this.#l1.clear();
  }

  /** Point-in-time counters for health and metrics. */
  stats(): EngineStats {
    const l2 = this.#l2 === undefined ? 'disabled' : this.#l2.healthy ? 'ok' : 'degraded';
    let feed: EngineStats['feed'];
    if (this.#l2 !== undefined) {
      const { lagMs, lagEntries } = this.#l2.feedStatus();
      feed = { lagMs, lagEntries, lagging: lagMs > this.#options.feedMaxLagMs };
    }
    return {
      l1Entries: this.#l1.size,
      l1Bytes: this.#l1.bytes,
      l1ArenaBytes: this.#l1.arenaBytes,
      inFlight: this.#flights.size,
      waiting: this.#flights.waiting(),
      l2,
      feed,
    };
  }

  /**
   * Whether an L1 entry may be served without asking the shared tier: every change appended up
   * to `feedMaxLagMs` ago is known, through the feed or because the entry was checked since. While
   * Redis is unreachable no one can append, so L1 serves within its TTL as without a tier.
   */
  #trusted(entry: StoredEntry<V>, now: number): boolean {
    const maxLag = this.#options.feedMaxLagMs;
    return now - entry.checkedAt <= maxLag || this.#l2!.feedLagMs() <= maxLag || !this.#l2!.healthy;
  }

  /** Checks an L1 entry the feed can no longer vouch for against the shared tier, through one flight per key. */
  #check(key: string, entry: StoredEntry<V>, signal: AbortSignal | undefined): Promise<Lookup<V>> {
    const { flight, started } = this.#flights.join(key, undefined, (flight) =>
      this.#fill(key, flight, this.#options.now(), entry, false),
    );
    return this.#flights.wait(flight, started, signal);
  }

  /** A change is applied here (its copies gone): waits on other instances' loads of its keys look again, and it is counted. */
  #applied(change: FeedChange, local: boolean): void {
    this.#changes.learnFrom(change);
    this.#fleet!.deliver({ type: 'change', change });
    this.#options.observer.changeApplied?.({ change, appliedAt: this.#options.now(), local });
  }

  /**
   * Every change applied here (after its copies are gone, so a lookup now loads the new profile)
   * and every L1 flush, in the order applied per shard. Returns the unsubscribe function.
   */
  onChange(listener: (event: EngineChange) => void): () => void {
    return this.#changes.onChange(listener);
  }

  /** Where this instance stands in the feed, per shard (without a shared tier: its own local feed). */
  feedPositions(): FeedPosition[] {
    return this.#changes.feedPositions();
  }

  /** The oldest position a shard keeps; without a shared tier every position of this process is kept ('0-0'). */
  oldestPosition(shard: number): Promise<string | undefined | Unavailable> {
    return this.#changes.oldestPosition(shard);
  }

  /** The feed shard of a key (0 without a shared tier). */
  shardOf(key: string): number {
    return this.#changes.shardOf(key);
  }

  /** Changes may have been missed: nothing in L1 can be vouched for. Refills come from L2 first. */
  #flush(reason: FeedResetReason): boolean {
    // Joining late matters only if something was cached (or is being loaded) before.
    if (reason === 'joined' && this.#l1.size === 0 && this.#flights.size === 0) return false;
    this.#l1.clear();
    this.#sharedFill?.changed();
    this.#flights.fenceAll();
    this.#fleet!.deliver({ type: 'reset', reason, shard: -1 });
    this.#options.observer.feedReset?.(reason);
    return true;
  }

  #staleWindow(entry: CacheEntry<V>): number {
    return entry.kind === 'found' ? this.#options.staleTtlMs : this.#options.negativeStaleTtlMs;
  }

  /** Starts a background load unless one is already running; nobody waits on it. */
  #refresh(key: string, notBefore: number): void {
    if (this.#flights.has(key) || this.#closing.signal.aborted) return;
    this.#flights.start(key, true, undefined, (flight) => this.#fill(key, flight, notBefore, undefined, false));
  }

  /** Drops `keys` from L1 and fences their loads in flight, in this process only. */
  #invalidateLocal(keys: readonly string[]): void {
    for (const key of keys) {
      this.#l1.delete(key);
      this.#sharedFill?.changed(key);
      this.#flights.fence(key);
    }
  }

  /**
   * The load behind a flight. `notBefore`: an L2 entry is only taken if it stays fresh past this
   * instant (now for a miss; the current entry's expiry for an early refresh).
   */
  async #fill(
    key: string,
    flight: Flight<V>,
    notBefore: number,
    checking: StoredEntry<V> | undefined,
    askExistence: boolean,
  ): Promise<Filled<V>> {
    const signal = this.#closing.signal;
    let filled: Filled<V>;
    let cacheable = true;
    try {
      const existence = askExistence ? this.#options.existence : undefined;
      if (existence !== undefined) {
        const verdict = existence.check(key);
        if ((verdict === 'absent' || verdict === 'maybe' ? verdict : await verdict) === 'absent') {
          return { entry: filteredEntry(key, this.#options.now(), this.#options), source: 'filtered' };
        }
      }
      // Not a tick later than before when nothing is charged: loads start when they always did.
      const loadOrigin = (): Promise<CacheEntry<V>> =>
        this.#options.originBudget !== undefined && flight.clients.length > 0
          ? chargeOriginCall(this.#options.originBudget, flight.clients).then(() => this.#loadFromOrigin(key))
          : this.#loadFromOrigin(key);
      if (this.#fleet === undefined) {
        filled = { entry: await loadOrigin(), source: 'origin' };
      } else {
        const result = await this.#fleet.load(key, {
          loadOrigin,
          fromEnvelope: (fields) => envelopeEntry(fields, notBefore, this.#options),
          isFenced: () => flight.fenced,
          signal,
          keepWhenUnavailable: checking,
        });
        filled = result;
        cacheable = result.cacheable;
      }
    } catch (error) {
      throw signal.aborted ? signal.reason : toProxyError(error);
    }
    if (signal.aborted) throw signal.reason;
    const now = this.#options.now();
    if (filled.entry.kind === 'found') this.#hotKeys?.loaded(key, now);
    if (cacheable && !flight.fenced && filled.entry.usableUntil > now) {
      (filled.entry as StoredEntry<V>).checkedAt = now;
      this.#l1.set(key, filled.entry);
    }
    return filled;
  }

  async #loadFromOrigin(key: string): Promise<CacheEntry<V>> {
    const o = this.#options;
    const started = o.now();
    let loaded: V | NotFound;
    try {
      loaded = await o.load(key, { signal: this.#closing.signal });
    } catch (error) {
      // The loader is the upstream here; a throw of the proxy's own code after it is INTERNAL (#fill's toProxyError).
      throw toLoaderError(error);
    }
    const now = o.now();
    if (loaded !== NOT_FOUND) o.existence?.learn(key);
    this.#refreshAhead.loaded(now - started);
    return loadedEntry(key, loaded, now, o);
  }
}

function closedError(): ProxyError {
  return new ProxyError('CLOSED', 'the cache is closed');
}

export function createCoalescingCache<V>(options: EngineOptions<V>): CoalescingCache<V> {
  return new CoalescingCache<V>(options);
}
