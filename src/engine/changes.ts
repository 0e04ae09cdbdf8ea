import { randomUUID } from 'node:crypto';
import {
  nextPosition,
  UNAVAILABLE,
  type ChangeFeed,
  type EntryStore,
  type FeedChange,
  type FeedPosition,
  type FeedResetReason,
  type Unavailable,
} from '../shared-tier/contract.js';
import type { ExistenceCheck } from './options.js';
import type { EngineChange, InvalidateOptions, InvalidationResult } from './types.js';

/** What applying a change does to the engine's own state (L1, the loads in flight). */
export interface ChangeHost {
  /** Drops `keys` from L1 and fences their loads in flight, in this process only. */
  evict(keys: readonly string[]): void;
  /** A change is applied here: waits on other instances' loads of its keys look again, and it is counted. */
  applied(change: FeedChange, local: boolean): void;
  /** Nothing in L1 can be vouched for (changes may have been missed): flush it; false when there was nothing to. */
  flush(reason: FeedResetReason): boolean;
}

/**
 * The engine's side of changes: invalidations it makes, and changes it reads from the fleet's
 * feed, applied one shard at a time in feed order and told to change listeners (the push hub).
 * Without a shared tier, invalidations get positions of a feed of this process's own.
 */
export class EngineChanges {
  readonly #l2: (EntryStore & ChangeFeed) | undefined;
  readonly #host: ChangeHost;
  readonly #existence: ExistenceCheck | undefined;
  readonly #now: () => number;
  readonly #listeners = new Set<(event: EngineChange) => void>();
  /** Per shard: the change being applied, so the next waits its turn (see fromFeed). */
  readonly #applying = new Map<number, Promise<void>>();
  readonly #localFeed = { epoch: randomUUID(), last: '0-0' };

  constructor(options: {
    l2: (EntryStore & ChangeFeed) | undefined;
    host: ChangeHost;
    existence: ExistenceCheck | undefined;
    now: () => number;
  }) {
    this.#l2 = options.l2;
    this.#host = options.host;
    this.#existence = options.existence;
    this.#now = options.now;
  }

  /** See CoalescingCache.invalidate. */
  async invalidate(keys: readonly string[], options: InvalidateOptions): Promise<InvalidationResult> {
    const list = [...new Set(keys)];
    const l2 = this.#l2;
    if (l2 === undefined) {
      this.#host.evict(list);
      const change = this.#localChange(list, options);
      this.learnFrom(change);
      this.#notify({ type: 'change', change, local: true });
      return { sharedTier: false, fleet: false, positions: [] };
    }
    // The shared copies first, so readers only evict theirs: one delete per change for the fleet.
    const deleted = await l2.deleteKeys(list);
    // Then ours, before the append: this instance's reader may deliver the change before the
    // append is acknowledged, and it skips own changes (they are applied here already).
    this.#host.evict(list);
    const parts = deleted
      ? await l2.appendChange({
          ids: list,
          kind: options.kind ?? 'changed',
          version: options.version,
          sharedCopiesDeleted: true,
        })
      : UNAVAILABLE;
    if (parts === UNAVAILABLE) {
      this.#notify({ type: 'unfed', ids: list });
      return { sharedTier: true, fleet: false, positions: [] };
    }
    // Applied here (read-your-writes); change listeners hear of it from the feed, in order.
    for (const part of parts) this.#host.applied(part, true);
    return { sharedTier: true, fleet: true, positions: parts.map(({ shard, position }) => ({ shard, position })) };
  }

  /**
   * A change read from the feed. Changes of one shard are applied and told to listeners one after
   * another, in feed order, though applying one may wait on Redis: a listener never sees a later
   * change of a shard before an earlier one.
   */
  fromFeed(change: FeedChange): void {
    const before = this.#applying.get(change.shard) ?? Promise.resolve();
    const next = before.then(() => this.#apply(change));
    this.#applying.set(change.shard, next);
    void next.finally(() => {
      if (this.#applying.get(change.shard) === next) this.#applying.delete(change.shard);
    });
  }

  /** The feed was reset (recreated, trimmed past us, joined late): flush, and tell listeners. */
  reset(reason: FeedResetReason): void {
    if (this.#host.flush(reason)) this.#notify({ type: 'reset', reason });
  }

  /** A changed group exists: one created since the existence filter's fill is known from here on. */
  learnFrom(change: FeedChange): void {
    const existence = this.#existence;
    if (existence !== undefined && change.kind === 'changed') for (const id of change.ids) existence.learn(id);
  }

  onChange(listener: (event: EngineChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  feedPositions(): FeedPosition[] {
    return this.#l2?.feedPositions() ?? [{ shard: 0, epoch: this.#localFeed.epoch, position: this.#localFeed.last }];
  }

  oldestPosition(shard: number): Promise<string | undefined | Unavailable> {
    return this.#l2?.oldestPosition(shard) ?? Promise.resolve('0-0');
  }

  shardOf(key: string): number {
    return this.#l2?.shardOf(key) ?? 0;
  }

  close(): void {
    this.#listeners.clear();
  }

  /** The shared copies first, then L1 and the loads in flight (own changes are applied already). */
  async #apply(change: FeedChange): Promise<void> {
    const own = change.producer === this.#l2!.instanceId;
    if (!own) {
      // L2 first: evicting L1 before the delete would let a request refill L1 from the old L2 value.
      if (change.sharedCopiesDeleted !== true) await this.#l2!.deleteKeys(change.ids, change.position);
      this.#host.evict(change.ids);
      this.#host.applied(change, false);
    }
    this.#notify({ type: 'change', change, local: own });
  }

  #notify(event: EngineChange): void {
    for (const listener of this.#listeners) listener(event);
  }

  #localChange(ids: string[], options: InvalidateOptions): FeedChange {
    const now = this.#now();
    const position = nextPosition(this.#localFeed.last, now);
    this.#localFeed.last = position;
    const change: FeedChange = {
      ids,
      kind: options.kind ?? 'changed',
      shard: 0,
      position,
      appendedAt: now,
      producer: 'local',
      replayed: false,
    };
    if (options.version !== undefined) change.version = options.version;
    return change;
  }
}
