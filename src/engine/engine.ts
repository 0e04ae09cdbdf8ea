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
import { FleetLoader, type FleetSource } from './fleet-load.js';
import type { CacheEntry, StoredEntry } from './entry.js';
import { decodeEnvelope } from './envelope.js';
import type { Clock } from '../util/clock.js';
import { EngineChanges } from './changes.js';
import { envelopeEntry, filteredEntry, loadedEntry } from './entries.js';
import { HotKeySampler } from './hot-keys.js';
import { getMany } from './many.js';
import { L1Cache } from './l1.js';
import {
  NOT_FOUND,
  type NotFound,
  resolveEngineOptions,
  type EngineOptions,
  type ResolvedEngineOptions,
} from './options.js';
import type {
  EngineChange,
  EngineStats,
  GetOptions,
  InvalidateOptions,
  InvalidationResult,
  Lookup,
  LookupOutcome,
} from './types.js';
import { waitOrServeStale, WaitList } from './wait-list.js';

// The public types live in types.ts; importers of the engine find them here too.
export type * from './types.js';

interface Filled<V> {
  entry: CacheEntry<V>;
  /** Where the entry came from; `filtered`: the existence filter answered, nothing was loaded. */
  source: FleetSource | 'filtered';
}

/** One load in progress for one key: the single coalescing point of the engine. */
interface Flight<V> {
  promise: Promise<Filled<V>>;
  /** Callers that waited on this load, the starter included (0 for a background refresh). */
  waiters: number;
  /** Set by invalidate(): the result must not be cached, it may predate the change. */
  fenced: boolean;
  /** Callers waiting without a stale fallback; made by the first of them. */
  waitList: WaitList<Lookup<V>> | undefined;
  /** Clients waiting on the load (the starter's first, a few at most): the origin call is charged to one with budget. */
  clients: string[];
}

/** Clients a load remembers to charge its origin call to. */
const MAX_CHARGEABLE_CLIENTS = 16;

const OUTCOME_OF_SOURCE: Record<Filled<unknown>['source'], LookupOutcome> = {
  origin: 'miss',
  l2: 'l2-hit',
  fleet: 'collapsed',
  l1: 'hit',
  filtered: 'filtered',
};

const noop = (): void => {};

/** Refresh-ahead draws only within this many scales of expiry: past it e^(-left/s) < 5e-5. */
const REFRESH_AHEAD_REACH = 10;

/**
 * The HTTP-free heart of the proxy: L1 lookup, then exactly one in-flight
 * load per key shared by every concurrent caller (and, with L2, by the whole
 * fleet), then the source. Entries live fresh, then stale-while-revalidate,
 * then as a stale-if-error fallback until `maxStaleMs` past freshness.
 */
export class CoalescingCache<V = unknown> {
  readonly #options: ResolvedEngineOptions<V>;
  readonly #l1: L1Cache<V>;
  readonly #flights = new Map<string, Flight<V>>();
  readonly #closing = new AbortController();
  readonly #l2: SharedTier | undefined;
  readonly #fleet: FleetLoader | undefined;
  readonly #unsubscribe: () => void = noop;
  /** Invalidations made here and changes read from the feed, applied in feed order. */
  readonly #changes: EngineChanges;
  /** The XFetch scale: `refreshAheadMs`, or the recent origin load time when longer; 0 = off. */
  #refreshScale: number;
  /** Moving average of origin load times, ms. */
  #loadMs = 0;
  /** Counts reads into the fleet's hot-key record: with a shared tier, and sampling on. */
  readonly #hotKeys: HotKeySampler | undefined;
  /** Keys being filled from the shared tier (warm start): an invalidation meanwhile takes its key out. */
  readonly #sharedFills = new Set<Set<string>>();
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
    this.#refreshScale = this.#options.refreshAheadMs;
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
    const scale = this.#refreshScale;
    if (scale !== 0 && entry.freshUntil - now < scale * REFRESH_AHEAD_REACH)
      this.#maybeRefreshAhead(key, entry, now, scale);
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
   * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention"): refresh with
   * probability e^(-left/scale), never in the first half of the entry's life. The refresh is an
   * ordinary background load, so with a shared tier it takes the key's lease.
   */
  #maybeRefreshAhead(key: string, entry: CacheEntry<V>, now: number, scale: number): void {
    const left = entry.freshUntil - now;
    if (this.#flights.has(key) || left * 2 > entry.freshUntil - entry.storedAt) return;
    if (left < -scale * Math.log(this.#options.random())) this.#refresh(key, entry.freshUntil);
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
  async fillFromShared(keys: readonly string[]): Promise<number> {
    if (this.#l2 === undefined || keys.length === 0 || this.#closing.signal.aborted) return 0;
    const unchanged = new Set(keys);
    this.#sharedFills.add(unchanged);
    let read: (Buffer | undefined)[] | Unavailable;
    try {
      read = await this.#l2.readEntries(keys);
    } finally {
      this.#sharedFills.delete(unchanged);
    }
    if (read === UNAVAILABLE || this.#closing.signal.aborted) return 0;
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
    const { flight, started } = this.#join(key, now, undefined, options?.client, stale === undefined);
    if (stale === undefined) return this.#waitListOf(flight).wait(started, signal);
    return waitOrServeStale(
      this.#waitListOf(flight),
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
    const pending = [...this.#flights.values()].map((flight) => flight.promise.catch(noop));
    this.#flights.clear();
    await Promise.all(pending);
    this.#l1.clear();
  }

  /** Point-in-time counters for health and metrics. */
  stats(): EngineStats {
    const l2 = this.#l2 === undefined ? 'disabled' : this.#l2.healthy ? 'ok' : 'degraded';
    let waiting = 0;
    for (const flight of this.#flights.values()) waiting += flight.waiters;
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
      waiting,
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
    const { flight, started } = this.#join(key, this.#options.now(), entry);
    return this.#waitListOf(flight).wait(started, signal);
  }

  /** The caller joins the key's load in flight, started here (checking `checking`, if given) when there is none. */
  #join(
    key: string,
    notBefore: number,
    checking?: StoredEntry<V>,
    client?: string,
    askExistence = false,
  ): { flight: Flight<V>; started: boolean } {
    let flight = this.#flights.get(key);
    let started = false;
    if (flight === undefined) {
      flight = this.#startFlight(key, notBefore, false, checking, client, askExistence);
      started = true;
    } else if (
      client !== undefined &&
      flight.clients.length < MAX_CHARGEABLE_CLIENTS &&
      !flight.clients.includes(client)
    ) {
      flight.clients.push(client);
    }
    flight.waiters++;
    return { flight, started };
  }

  /** Whether the origin call of `flight` is charged to a client: a load no client waits on is free. */
  #chargeable(flight: Flight<V>): boolean {
    return this.#options.originBudget !== undefined && flight.clients.length > 0;
  }

  /**
   * Charges the origin call of `flight` to the first of its clients with budget left; fails with
   * the budget's error only when none has one (so one client over budget cannot fail a load the
   * others wait on).
   */
  async #charge(flight: Flight<V>): Promise<void> {
    const budget = this.#options.originBudget!;
    let refusal: ProxyError | undefined;
    for (const client of flight.clients) {
      const verdict = await budget.take(client);
      if (verdict === true) return;
      refusal ??= verdict;
    }
    if (refusal !== undefined) throw refusal;
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
    for (const fill of this.#sharedFills) fill.clear();
    for (const flight of this.#flights.values()) flight.fenced = true;
    this.#flights.clear();
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
    this.#startFlight(key, notBefore, true);
  }

  /** Drops `keys` from L1 and fences their loads in flight, in this process only. */
  #invalidateLocal(keys: readonly string[]): void {
    for (const key of keys) {
      this.#l1.delete(key);
      for (const fill of this.#sharedFills) fill.delete(key);
      const flight = this.#flights.get(key);
      if (flight !== undefined) {
        flight.fenced = true;
        this.#flights.delete(key);
      }
    }
  }

  /**
   * `notBefore`: an L2 entry is only taken if it stays fresh past this instant
   * (now for a miss; the current entry's expiry for an early refresh).
   */
  #startFlight(
    key: string,
    notBefore: number,
    background = false,
    checking?: StoredEntry<V>,
    client?: string,
    askExistence = false,
  ): Flight<V> {
    const flight: Flight<V> = {
      promise: undefined as unknown as Promise<Filled<V>>,
      waiters: 0,
      fenced: false,
      waitList: undefined,
      clients: client === undefined ? [] : [client],
    };
    flight.promise = this.#fill(key, flight, notBefore, checking, askExistence).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    const observe = this.#options.observer.loadSettled;
    // Also keeps a failure nobody waits for from becoming an unhandled rejection.
    flight.promise.then(
      // A filtered key was not loaded: it is the existence filter's to count.
      (filled) =>
        filled.source === 'filtered'
          ? undefined
          : observe?.({ waiters: flight.waiters, source: filled.source, background }),
      () => observe?.({ waiters: flight.waiters, source: undefined, background }),
    );
    this.#flights.set(key, flight);
    return flight;
  }

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
        this.#chargeable(flight)
          ? this.#charge(flight).then(() => this.#loadFromOrigin(key))
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
    const took = now - started;
    this.#loadMs = this.#loadMs === 0 ? took : this.#loadMs + (took - this.#loadMs) * 0.2;
    if (o.refreshAheadMs !== 0) this.#refreshScale = Math.max(o.refreshAheadMs, this.#loadMs);
    return loadedEntry(key, loaded, now, o);
  }

  /** The flight's waiters, each with its own deadline and abort signal; all answered when the load settles. */
  #waitListOf(flight: Flight<V>): WaitList<Lookup<V>> {
    if (flight.waitList !== undefined) return flight.waitList;
    const list = new WaitList<Lookup<V>>(this.#options.waitTimeoutMs, this.#options.clock);
    flight.waitList = list;
    flight.promise.then(
      // One answer object for the starter and one shared by every collapsed caller.
      (filled) =>
        list.resolveAll(
          { entry: filled.entry, outcome: OUTCOME_OF_SOURCE[filled.source] },
          // Every waiter of a filtered key hears the filter's answer (404, nothing cached).
          { entry: filled.entry, outcome: filled.source === 'filtered' ? 'filtered' : 'collapsed' },
        ),
      (error: unknown) => list.rejectAll(error),
    );
    return list;
  }
}

function closedError(): ProxyError {
  return new ProxyError('CLOSED', 'the cache is closed');
}

export function createCoalescingCache<V>(options: EngineOptions<V>): CoalescingCache<V> {
  return new CoalescingCache<V>(options);
}
