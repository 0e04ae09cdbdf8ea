import { randomUUID } from 'node:crypto';
import { definedOnly, functionOption, integerOption, OptionError, specOption } from '../util/options.js';
import { SHARED_TIER_DEFAULTS, SHARED_TIER_OPTION_SPECS, UNAVAILABLE, type SharedLookup, type SharedTier, type TierEvent, type Unavailable } from '../util/shared-tier.js';

export interface InMemoryTierOptions {
  /**
   * Instances made on one store share its entries, leases and events, as
   * instances sharing one Redis do. Default: a store of the instance's own.
   */
  store?: InMemoryTierStore;
  /** How long a lease protects one load, ms. Default 3000. */
  leaseTtlMs?: number;
  /** How long an instance waits for another's load before loading by itself, ms. Default 5000. */
  leaseWaitMs?: number;
}

export interface InMemoryTierStoreOptions {
  /** Entries kept at most; the oldest stored goes first. Default 100000. */
  maxEntries?: number;
  /** Clock in ms for entry and lease expiry. Default `Date.now`. Injectable for tests. */
  now?: () => number;
}

interface Timed<T> {
  readonly value: T;
  expiresAt: number;
}

/** What several InMemoryTier instances share: entries, leases and who hears events. */
export class InMemoryTierStore {
  readonly #entries = new Map<string, Timed<Buffer>>();
  readonly #leases = new Map<string, Timed<string>>();
  readonly #members = new Set<InMemoryTier>();
  readonly #maxEntries: number;
  readonly now: () => number;

  constructor(options: InMemoryTierStoreOptions = {}) {
    const o = definedOnly(options);
    this.#maxEntries = integerOption('maxEntries', o.maxEntries ?? 100_000, 1, 100_000_000);
    this.now = o.now === undefined ? Date.now : functionOption('now', o.now);
  }

  /** @internal */ join(tier: InMemoryTier): void {
    this.#members.add(tier);
  }

  /** @internal */ leave(tier: InMemoryTier): void {
    this.#members.delete(tier);
  }

  /** @internal */ entry(key: string): Buffer | undefined {
    return this.#live(this.#entries, key)?.value;
  }

  /** @internal */ lease(key: string): Timed<string> | undefined {
    return this.#live(this.#leases, key);
  }

  /** @internal */ setLease(key: string, token: string, ttlMs: number): void {
    this.#leases.set(key, { value: token, expiresAt: this.now() + ttlMs });
  }

  /** @internal */ deleteLease(key: string): void {
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

  /** @internal */ deleteEntry(key: string): void {
    this.#entries.delete(key);
  }

  /** @internal */ broadcast(from: InMemoryTier, event: TierEvent): void {
    for (const member of this.#members) if (member !== from) member.receive(event);
  }

  #live<T>(map: Map<string, Timed<T>>, key: string): Timed<T> | undefined {
    const found = map.get(key);
    if (found === undefined) return undefined;
    if (found.expiresAt > this.now()) return found;
    map.delete(key);
    return undefined;
  }
}

/**
 * The shared tier in process memory, with the semantics of RedisTier (the
 * same contract tests hold both to): entries with expiry, leases fenced by
 * token, events to every other instance of the same store. For tests, and for
 * a single process that wants fleet semantics (leases, fenced invalidation)
 * without Redis. Events are delivered on a later microtask, as over a network.
 */
export class InMemoryTier implements SharedTier {
  readonly instanceId = randomUUID();
  readonly leaseTtlMs: number;
  readonly leaseWaitMs: number;
  readonly #store: InMemoryTierStore;
  readonly #listeners = new Set<(event: TierEvent) => void>();
  #closed = false;

  constructor(options: InMemoryTierOptions = {}) {
    const o = { ...SHARED_TIER_DEFAULTS, ...definedOnly(options) };
    this.leaseTtlMs = specOption('leaseTtlMs', o.leaseTtlMs, SHARED_TIER_OPTION_SPECS.leaseTtlMs);
    this.leaseWaitMs = specOption('leaseWaitMs', o.leaseWaitMs, SHARED_TIER_OPTION_SPECS.leaseWaitMs);
    if (o.store !== undefined && !(o.store instanceof InMemoryTierStore)) throw new OptionError('store', 'an InMemoryTierStore', o.store);
    this.#store = o.store ?? new InMemoryTierStore();
    this.#store.join(this);
  }

  get healthy(): boolean {
    return !this.#closed;
  }

  async lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    const store = this.#store;
    if (mode === 'read') {
      const bytes = store.entry(key);
      if (bytes !== undefined) return { type: 'hit', bytes: Buffer.from(bytes) };
    }
    const held = store.lease(key);
    if (held === undefined) {
      store.setLease(key, token, this.leaseTtlMs);
      return { type: 'leased' };
    }
    return { type: 'held', pttlMs: Math.max(0, held.expiresAt - store.now()) };
  }

  async fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<boolean | Unavailable> {
    if (this.#closed) return UNAVAILABLE;
    if (this.#store.lease(key)?.value !== token) return false;
    this.#store.setEntry(key, bytes, Math.max(1, expiryMs));
    this.#store.deleteLease(key);
    return true;
  }

  async releaseLease(key: string, token: string): Promise<void> {
    if (!this.#closed && this.#store.lease(key)?.value === token) this.#store.deleteLease(key);
  }

  async extendLease(key: string, token: string): Promise<void> {
    const held = this.#closed ? undefined : this.#store.lease(key);
    if (held?.value === token) held.expiresAt = this.#store.now() + this.leaseTtlMs;
  }

  async deleteKeys(keys: readonly string[]): Promise<boolean> {
    if (this.#closed) return false;
    for (const key of keys) {
      this.#store.deleteEntry(key);
      this.#store.deleteLease(key);
    }
    return true;
  }

  async publish(event: TierEvent): Promise<boolean> {
    if (this.#closed) return false;
    this.#store.broadcast(this, { ...event, from: this.instanceId });
    return true;
  }

  onEvent(listener: (event: TierEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** @internal The store's delivery of another instance's event. */
  receive(event: TierEvent): void {
    if (this.#closed) return;
    queueMicrotask(() => {
      if (this.#closed) return;
      for (const listener of this.#listeners) listener(event);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#store.leave(this);
  }
}
