import { randomUUID } from 'node:crypto';
import { definedOnly, functionOption, integerOption, OptionError, specOption } from '../../util/options.js';
import { takeToken, type TokenBucket } from '../../util/token-bucket.js';
import {
  CANONICAL_GROUP_ID,
  checkChange,
  comparePositions,
  countedReads,
  hottestOf,
  nextPosition,
  timeOfPosition,
  SHARED_TIER_DEFAULTS,
  SHARED_TIER_OPTION_SPECS,
  UNAVAILABLE,
  type Change,
  type FeedChange,
  type FeedPosition,
  type FeedStatus,
  type BitsWriteOptions,
  type LeaseHint,
  type FillResult,
  type SharedLookup,
  type SharedTier,
  type SharedTierOptions,
  type TokenTake,
  type TierEvent,
  type Unavailable,
} from '../contract.js';

export interface InMemoryTierOptions extends SharedTierOptions {
  /** Instances on one store share entries, leases and events, as on one Redis. Default: a store of its own. */
  store?: InMemoryTierStore;
}

export interface InMemoryTierStoreOptions {
  /** Entries kept at most; the oldest stored goes first. Default 100000. */
  maxEntries?: number;
  /** Changes the feed keeps; a reader further behind gets a reset. Default 100000. */
  feedMaxLen?: number;
  /** Clock in ms for entry and lease expiry. Default `Date.now`. Injectable for tests. */
  now?: () => number;
}

interface Timed<T> {
  readonly value: T;
  expiresAt: number;
}

/** A lease: its holder's token, and whether another lookup found it held (the fill then announces itself). */
interface Lease extends Timed<string> {
  waited?: boolean;
}

interface LoggedChange {
  readonly change: FeedChange;
  /** How many changes the feed had taken in once this one was appended (1 for the first). */
  readonly ordinal: number;
}

/** What several InMemoryTier instances share: entries, leases, the change feed and who hears hints. */
export class InMemoryTierStore {
  readonly #entries = new Map<string, Timed<Buffer>>();
  readonly #leases = new Map<string, Lease>();
  readonly #markers = new Map<string, string>();
  /** The hot-key record: read counts per window. */
  readonly #reads = new Map<number, Map<string, number>>();
  /** Plain bitmaps, grown as bits are set (bit 0 the most significant of byte 0, as Redis). */
  readonly #bitmaps = new Map<string, Uint8Array>();
  readonly #marks = new Map<string, Timed<string>>();
  readonly #buckets = new Map<string, TokenBucket>();
  /** @internal The instances on this store: they hear its news and each other's hints. */
  readonly members = new Set<InMemoryTier>();
  readonly #maxEntries: number;
  readonly #feedMaxLen: number;
  #log: LoggedChange[] = [];
  #added = 0;
  #lastPosition = '0-0';
  #epoch = randomUUID();
  readonly now: () => number;

  constructor(options: InMemoryTierStoreOptions = {}) {
    const o = definedOnly(options);
    this.#maxEntries = integerOption('maxEntries', o.maxEntries ?? 100_000, 1, 100_000_000);
    this.#feedMaxLen = specOption('feedMaxLen', o.feedMaxLen ?? SHARED_TIER_DEFAULTS.feedMaxLen, {
      ...SHARED_TIER_OPTION_SPECS.feedMaxLen,
      min: 1,
    });
    this.now = o.now === undefined ? Date.now : functionOption('now', o.now);
  }

  /** Forgets everything, as a Redis restarted without persistence: readers find a new epoch. */
  restart(): void {
    this.#entries.clear();
    this.#leases.clear();
    this.#markers.clear();
    this.#reads.clear();
    this.#bitmaps.clear();
    this.#marks.clear();
    this.#buckets.clear();
    this.#log = [];
    this.#added = 0;
    this.#epoch = randomUUID();
    for (const member of this.members) member.wake();
  }

  /** Keeps only the newest `maxLen` changes, as XTRIM does (for tests of readers left behind). */
  trim(maxLen: number): void {
    if (this.#log.length > maxLen) this.#log.splice(0, this.#log.length - maxLen);
  }

  /** @internal */ get epoch(): string {
    return this.#epoch;
  }

  /** @internal */ get added(): number {
    return this.#added;
  }

  /** @internal */ append(change: Change, producer: string): FeedChange {
    const position = nextPosition(this.#lastPosition, this.now());
    this.#lastPosition = position;
    const logged: FeedChange = {
      ...change,
      ids: [...change.ids],
      shard: 0,
      position,
      appendedAt: timeOfPosition(position),
      producer,
      replayed: false,
    };
    this.#log.push({ change: logged, ordinal: ++this.#added });
    this.trim(this.#feedMaxLen);
    for (const member of this.members) member.wake();
    return logged;
  }

  /** @internal The changes after `ordinal`, or 'trimmed' when some of them are no longer kept. */
  changesAfter(ordinal: number): LoggedChange[] | 'trimmed' {
    const first = this.oldestOrdinal();
    if (ordinal + 1 < first) return 'trimmed';
    return this.#log.slice(ordinal + 1 - first);
  }

  /** @internal The position of the change with `ordinal` ('0-0' before the first; the last one known if trimmed). */
  positionAt(ordinal: number): string {
    if (ordinal === 0) return '0-0';
    return this.#log[ordinal - this.oldestOrdinal()]?.change.position ?? this.#lastPosition;
  }

  /** @internal The ordinal of the oldest change kept (one past the last when none is). */
  oldestOrdinal(): number {
    return this.#log[0]?.ordinal ?? this.#added + 1;
  }

  /** @internal */ oldestPosition(): string | undefined {
    return this.#log[0]?.change.position;
  }

  /** @internal True (and remembered) unless a change at or after `position` was applied to `key` already. */
  markChange(key: string, position: string): boolean {
    const marker = this.#markers.get(key);
    if (marker !== undefined && comparePositions(marker, position) >= 0) return false;
    this.#markers.set(key, position);
    return true;
  }

  /** @internal Adds read counts to `window`, keeps its `max` hottest keys, and forgets windows before the previous one. */
  recordReads(window: number, counts: ReadonlyMap<string, number>, max: number): void {
    for (const old of this.#reads.keys()) if (old < window - 1) this.#reads.delete(old);
    const reads = this.#reads.get(window) ?? new Map<string, number>();
    for (const [key, count] of counts) reads.set(key, (reads.get(key) ?? 0) + count);
    this.#reads.set(window, reads.size > max ? new Map([...reads].sort((a, b) => b[1] - a[1]).slice(0, max)) : reads);
  }

  /** @internal */ setBits(name: string, positions: readonly number[], onlyIfExists: boolean): void {
    if (onlyIfExists && !this.#bitmaps.has(name)) return;
    let bitmap = this.#bitmaps.get(name) ?? new Uint8Array(0);
    const needed = Math.max(0, ...positions.map((position) => (position >>> 3) + 1));
    if (needed > bitmap.length) {
      const grown = new Uint8Array(Math.max(needed, bitmap.length * 2));
      grown.set(bitmap);
      bitmap = grown;
    }
    this.#bitmaps.set(name, bitmap);
    for (const position of positions) bitmap[position >>> 3] = bitmap[position >>> 3]! | (0x80 >>> (position & 7));
  }

  /** @internal */ testBits(name: string, positions: readonly number[]): boolean | 'missing' {
    const bitmap = this.#bitmaps.get(name);
    if (bitmap === undefined) return 'missing';
    return positions.every((position) => ((bitmap[position >>> 3] ?? 0) & (0x80 >>> (position & 7))) !== 0);
  }

  /** @internal */ countBits(name: string): number {
    let count = 0;
    for (const byte of this.#bitmaps.get(name) ?? []) for (let b = byte; b !== 0; b &= b - 1) count++;
    return count;
  }

  /** @internal */ deleteBits(name: string): void {
    this.#bitmaps.delete(name);
  }

  /** @internal The token bucket of TAKE_TOKEN, in memory. */
  takeToken(bucket: string, burst: number, perSecond: number): TokenTake {
    const now = this.now();
    const state = this.#buckets.get(bucket) ?? { tokens: burst, at: now };
    this.#buckets.set(bucket, state);
    const allowed = takeToken(state, now, burst, perSecond);
    return { allowed, tokens: state.tokens };
  }

  /** @internal */ mark(name: string): string | undefined {
    return this.#live(this.#marks, name)?.value;
  }

  /** @internal */ setMark(name: string, value: string, ttlMs: number, onlyIfAbsent: boolean): boolean {
    if (onlyIfAbsent && this.mark(name) !== undefined) return false;
    this.#marks.set(name, { value, expiresAt: this.now() + ttlMs });
    return true;
  }

  /** @internal */ readsOf(window: number): ReadonlyMap<string, number> {
    return this.#reads.get(window) ?? new Map();
  }

  /** @internal A copy of the stored bytes: no caller may alias the store's. */
  entry(key: string): Buffer | undefined {
    const bytes = this.#live(this.#entries, key)?.value;
    return bytes === undefined ? undefined : Buffer.from(bytes);
  }

  /** @internal */ lease(key: string): Lease | undefined {
    return this.#live(this.#leases, key);
  }

  /** @internal */ setLease(key: string, token: string, ttlMs: number): void {
    this.#leases.set(key, { value: token, expiresAt: this.now() + ttlMs });
  }

  /** @internal */ deleteLease(key: string): void {
    this.#leases.delete(key);
  }

  /** @internal Deletes the entry and voids the lease. */
  deleteKey(key: string): void {
    this.#entries.delete(key);
    this.#leases.delete(key);
  }

  /** @internal */ setEntry(key: string, bytes: Buffer, expiryMs: number): void {
    this.#entries.delete(key); // re-inserted last: the map's order is the eviction order
    this.#entries.set(key, { value: Buffer.from(bytes), expiresAt: this.now() + expiryMs });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
  }

  /** @internal */ broadcast(from: InMemoryTier, event: TierEvent): void {
    for (const member of this.members) if (member !== from) member.receive(event);
  }

  #live<T>(map: Map<string, Timed<T>>, key: string): Timed<T> | undefined {
    const found = map.get(key);
    if (found === undefined || found.expiresAt > this.now()) return found;
    map.delete(key);
    return undefined;
  }
}

/**
 * The shared tier in process memory, held to RedisTier's contract tests: for tests, and for one process that wants
 * fleet semantics (leases, fenced invalidation) without Redis. Events arrive on a later microtask, as over a network.
 */
export class InMemoryTier implements SharedTier {
  readonly instanceId = randomUUID();
  readonly leaseTtlMs: number;
  readonly leaseWaitMs: number;
  readonly #store: InMemoryTierStore;
  readonly #listeners = new Set<(event: TierEvent) => void>();
  readonly #isValidKey: (key: string) => boolean;
  readonly #hotKeysMax: number;
  readonly #hotWindowMs: number;
  #closed = false;
  // The feed reader's state: the epoch and ordinal of its position, and whether it reads.
  #epoch: string;
  #ordinal: number;
  #suspended = false;
  #lastReadAt: number;
  #draining = false;

  constructor(options: InMemoryTierOptions = {}) {
    const o = { ...SHARED_TIER_DEFAULTS, ...definedOnly(options) };
    this.leaseTtlMs = specOption('leaseTtlMs', o.leaseTtlMs, SHARED_TIER_OPTION_SPECS.leaseTtlMs);
    this.leaseWaitMs = specOption('leaseWaitMs', o.leaseWaitMs, SHARED_TIER_OPTION_SPECS.leaseWaitMs);
    if (o.store !== undefined && !(o.store instanceof InMemoryTierStore))
      throw new OptionError('store', 'an InMemoryTierStore', o.store);
    this.#store = o.store ?? new InMemoryTierStore();
    this.#isValidKey =
      o.isValidKey === undefined ? (key) => CANONICAL_GROUP_ID.test(key) : functionOption('isValidKey', o.isValidKey);
    this.#hotKeysMax = specOption('hotKeysMax', o.hotKeysMax, SHARED_TIER_OPTION_SPECS.hotKeysMax);
    this.#hotWindowMs = specOption('hotWindowMs', o.hotWindowMs, SHARED_TIER_OPTION_SPECS.hotWindowMs);
    this.#epoch = this.#store.epoch;
    this.#ordinal = this.#store.added;
    this.#lastReadAt = this.#store.now();
    this.#store.members.add(this);
  }

  get healthy(): boolean {
    return !this.#closed;
  }

  async lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    const store = this.#store;
    const bytes = mode === 'read' ? store.entry(key) : undefined;
    if (bytes !== undefined) return { type: 'hit', bytes };
    const held = store.lease(key);
    if (held === undefined) {
      store.setLease(key, token, this.leaseTtlMs);
      return { type: 'leased' };
    }
    held.waited = true; // the holder's fill announces itself
    return { type: 'held', pttlMs: Math.max(0, held.expiresAt - store.now()) };
  }

  async fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<FillResult | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    const held = this.#store.lease(key);
    if (held?.value !== token) return 'fenced';
    this.#store.setEntry(key, bytes, Math.max(1, expiryMs));
    this.#store.deleteLease(key);
    return held.waited === true ? 'awaited' : 'stored';
  }

  async releaseLease(key: string, token: string): Promise<boolean> {
    const held = this.#closed ? undefined : this.#store.lease(key);
    if (held?.value !== token) return false;
    this.#store.deleteLease(key);
    return held.waited === true;
  }

  async extendLease(key: string, token: string): Promise<void> {
    const held = this.#closed ? undefined : this.#store.lease(key);
    if (held?.value === token) held.expiresAt = this.#store.now() + this.leaseTtlMs;
  }

  async deleteKeys(keys: readonly string[], position?: string): Promise<boolean> {
    if (this.#closed) return false;
    for (const key of keys)
      if (position === undefined || this.#store.markChange(key, position)) this.#store.deleteKey(key);
    return true;
  }

  async appendChange(input: Change): Promise<FeedChange[] | Unavailable> {
    const change = checkChange(input, this.#isValidKey);
    if (this.#closed) return UNAVAILABLE;
    return [this.#store.append(change, this.instanceId)];
  }

  async recordReads(counts: ReadonlyMap<string, number>): Promise<boolean> {
    if (this.#closed) return false;
    this.#store.recordReads(this.#window(), new Map(countedReads(counts, this.#isValidKey)), this.#hotKeysMax);
    return true;
  }

  async hottestKeys(count: number): Promise<string[] | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    const window = this.#window();
    const reads = [this.#store.readsOf(window), this.#store.readsOf(window - 1)];
    return hottestOf(reads, Math.min(count, this.#hotKeysMax), this.#isValidKey);
  }

  async readEntries(keys: readonly string[]): Promise<(Buffer | undefined)[] | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    return keys.map((key) => this.#store.entry(key));
  }

  #window(): number {
    return Math.floor(this.#store.now() / this.#hotWindowMs);
  }

  /** Bitmaps in memory do not expire (`ttlMs` is ignored): a test store lives as long as its tests. */
  async setBits(name: string, positions: readonly number[], options: BitsWriteOptions = {}): Promise<boolean> {
    if (this.#closed) return false;
    this.#store.setBits(name, positions, options.onlyIfExists === true);
    return true;
  }

  async testBits(name: string, positions: readonly number[]): Promise<boolean | 'missing' | Unavailable> {
    return this.#closed ? UNAVAILABLE : this.#store.testBits(name, positions);
  }

  async countBits(name: string): Promise<number | Unavailable> {
    return this.#closed ? UNAVAILABLE : this.#store.countBits(name);
  }

  async deleteBits(name: string): Promise<boolean> {
    if (this.#closed) return false;
    this.#store.deleteBits(name);
    return true;
  }

  async takeToken(bucket: string, burst: number, perSecond: number): Promise<TokenTake | Unavailable> {
    return this.#closed ? UNAVAILABLE : this.#store.takeToken(bucket, burst, perSecond);
  }

  async readMark(name: string): Promise<string | undefined | Unavailable> {
    return this.#closed ? UNAVAILABLE : this.#store.mark(name);
  }

  async writeMark(name: string, value: string, ttlMs: number, onlyIfAbsent = false): Promise<boolean> {
    return !this.#closed && this.#store.setMark(name, value, Math.max(1, ttlMs), onlyIfAbsent);
  }

  async hint(hint: LeaseHint): Promise<boolean> {
    if (this.#closed) return false;
    this.#store.broadcast(this, { ...hint, from: this.instanceId });
    return true;
  }

  feedStatus(): FeedStatus {
    const lagEntries = Math.max(0, this.#store.added - this.#ordinal);
    return { lagMs: this.feedLagMs(), lagEntries, skipped: {}, resumes: 0 };
  }

  feedPositions(): FeedPosition[] {
    return [{ shard: 0, epoch: this.#epoch, position: this.#store.positionAt(this.#ordinal) }];
  }

  async oldestPosition(): Promise<string | undefined | Unavailable> {
    return this.#closed ? UNAVAILABLE : this.#store.oldestPosition();
  }

  shardOf(): number {
    return 0;
  }

  feedLagMs(): number {
    return this.#suspended ? this.#store.now() - this.#lastReadAt : 0;
  }

  /** Resolves at once: the in-memory feed has a position from the start. */
  async whenFeedReady(): Promise<void> {}

  /** @internal For tests: a reader that cannot read (its position stays, its lag grows). */
  suspendFeed(): void {
    this.#suspended = true;
  }

  /** @internal For tests: the reader reads again, from its position. */
  resumeFeed(): void {
    this.#suspended = false;
    this.wake();
  }

  /** @internal The store's news: new changes, or a restart. */
  wake(): void {
    if (this.#closed || this.#draining) return;
    this.#draining = true;
    queueMicrotask(() => {
      this.#draining = false;
      this.#drain();
    });
  }

  #drain(): void {
    if (this.#closed || this.#suspended) return;
    const store = this.#store;
    this.#lastReadAt = store.now();
    if (this.#epoch !== store.epoch) {
      this.#epoch = store.epoch;
      this.#ordinal = 0;
      this.#emit({ type: 'reset', reason: 'epoch', shard: 0 });
    }
    let changes = store.changesAfter(this.#ordinal);
    if (changes === 'trimmed') {
      // As the Redis reader does: reset, then apply again what the feed still keeps.
      this.#ordinal = store.oldestOrdinal() - 1;
      this.#emit({ type: 'reset', reason: 'trimmed', shard: 0 });
      changes = store.changesAfter(this.#ordinal);
      if (changes === 'trimmed') return;
    }
    for (const { change, ordinal } of changes) {
      if (this.#closed || this.#suspended) return;
      this.#ordinal = ordinal;
      this.#emit({ type: 'change', change: { ...change, ids: [...change.ids] } });
    }
  }

  onEvent(listener: (event: TierEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** @internal The store's delivery of another instance's event. */
  receive(event: TierEvent): void {
    if (this.#closed) return;
    queueMicrotask(() => {
      if (!this.#closed) this.#emit(event);
    });
  }

  #emit(event: TierEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#store.members.delete(this);
  }
}
