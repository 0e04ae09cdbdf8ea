import { isErrorCode, STATUS_OF_CODE, type ErrorCode } from '../errors.js';
import { defaultsOf, integerSpec } from '../util/options.js';
import type { Unavailable } from './unavailable.js';

export { UNAVAILABLE, type Unavailable } from './unavailable.js';

/** Default and range of the options every shared tier takes (declared once here). */
export const SHARED_TIER_OPTION_SPECS = {
  /** How long a lease protects one load, ms; if its holder dies, another instance takes over after this. */
  leaseTtlMs: integerSpec(3000, 10, 600_000),
  /** How long an instance waits for another's load before loading by itself, ms. */
  leaseWaitMs: integerSpec(5000, 0, 600_000),
  /** Changes the feed keeps (per shard); an instance that falls further behind flushes its L1. About 100 bytes each. */
  feedMaxLen: integerSpec(100_000, 100, 100_000_000),
  /** Keys the fleet's record of its hottest keys keeps (per window): what a starting instance can warm from. */
  hotKeysMax: integerSpec(10_000, 1, 1_000_000),
  /** The record of hot keys counts reads per window of this length, ms; the current and the previous window count. */
  hotWindowMs: integerSpec(600_000, 1000, 7 * 86_400_000),
} as const;

export const SHARED_TIER_DEFAULTS = defaultsOf(SHARED_TIER_OPTION_SPECS);

/** How `setBits` writes. */
export interface BitsWriteOptions {
  /** The bitmap expires this long after the write, ms (renewed by every write with it). Default: never. */
  ttlMs?: number;
  /** Set nothing when the bitmap does not exist (a late writer must not recreate a dropped one). */
  onlyIfExists?: boolean;
}

/** Most ids one change may carry. */
export const MAX_CHANGE_IDS = 1000;

/**
 * What a lookup in the shared tier found: the stored bytes, the lease (this
 * caller now loads the key for everyone), or another instance's lease with
 * the time it has left.
 */
export type SharedLookup = { type: 'hit'; bytes: Buffer } | { type: 'leased' } | { type: 'held'; pttlMs: number };

/** `changed`: the profiles changed; `deleted`: the groups are gone (dissolved). Both make every copy go. */
export type ChangeKind = 'changed' | 'deleted';

/** A change of some profiles, as a producer appends it to the feed. */
export interface Change {
  /** Cache keys (canonical group ids), 1 to MAX_CHANGE_IDS. */
  ids: readonly string[];
  kind: ChangeKind;
  /** The source's version or `updatedAt` of the change, if it has one (carried, never interpreted). */
  version?: string;
  /**
   * True when the producer deleted the shared copies (entries and leases) before appending, as a
   * proxy does: readers then only evict their own copies. Producers outside the proxy leave it
   * unset, and the first reader to apply the change deletes them.
   */
  sharedCopiesDeleted?: boolean;
}

/** A change as the feed delivers it: where it sits in the feed and who appended it. */
export interface FeedChange extends Change {
  ids: string[];
  /** The feed shard holding the change (every id of a change is on the same shard). */
  shard: number;
  /** Its position on the shard (a Redis stream id, `ms-seq`): ordered, unique per shard. */
  position: string;
  /** When the storage accepted it, ms since the epoch (the position's time part). */
  appendedAt: number;
  /** The appending instance or service, `''` when it gave none. */
  producer: string;
  /** True when read while catching up after the reader had lost its connection. */
  replayed: boolean;
}

/**
 * Hints between the instances sharing a tier, best-effort (a lost hint costs
 * a poll, never correctness):
 * - `filled`: a lease holder stored the key (waiters read it now);
 * - `failed`: a lease holder's load failed with an upstream error (waiters share it).
 */
export type LeaseHint =
  | { type: 'filled'; id: string }
  | { type: 'failed'; id: string; code: ErrorCode; status: number; message: string };

/**
 * Why an instance must flush its L1: its feed position can no longer be replayed (`epoch`: the
 * feed was recreated; `trimmed`: it fell behind the retention), or it had none (`joined`: the feed
 * became readable only after the instance had been serving without it, Redis being unreachable).
 */
export type FeedResetReason = 'epoch' | 'trimmed' | 'joined';

/**
 * What an instance hears from the shared tier:
 * - a lease hint from another instance (`from` is the sender; never one's own);
 * - `change`: a change from the feed, in feed order per shard, each exactly once, own changes
 *   included (`producer` is this instance: it applied them when it appended them, and learns their
 *   place in the feed here);
 * - `reset`: changes may have been missed on a shard (the storage was recreated empty, or the feed
 *   was trimmed past this instance's position): every copy held locally is suspect.
 */
export type TierEvent =
  | (LeaseHint & { from?: string })
  | { type: 'change'; change: FeedChange }
  | { type: 'reset'; reason: FeedResetReason; shard: number };

/** A reader's place on one shard: the stream's epoch (a new one after a recreation) and the last position read. */
export interface FeedPosition {
  shard: number;
  epoch: string;
  position: string;
}

/** The feed as this instance reads it, for health and metrics. */
export interface FeedStatus {
  /** Time since the last read that reached every shard, ms (0 while no listener reads the feed). */
  lagMs: number;
  /** Changes appended but not yet read, summed over shards, as of the last read. */
  lagEntries: number;
  /** Entries skipped as malformed (unknown kind, bad ids, garbage), by reason, since start. */
  skipped: Readonly<Record<string, number>>;
  /** Times a reader resumed from its position after losing its connection. */
  resumes: number;
}

/** What a fill under a lease did: stored (with or without a waiter), or fenced. */
export type FillResult = 'stored' | 'awaited' | 'fenced';

/** Entries and their leases: one load per key for the whole fleet (the engine's miss path). */
export interface EntryStore {
  /** Distinguishes this instance's hints and changes from others'. */
  readonly instanceId: string;
  /** How long a lease protects one load, ms. */
  readonly leaseTtlMs: number;
  /** How long an instance waits for another's load before loading by itself, ms. */
  readonly leaseWaitMs: number;
  /** False while the storage is known to be unreachable. */
  readonly healthy: boolean;
  /**
   * The entry of `key`, or the lease under `token` when there is none (or, with
   * `force`, whatever is stored: the caller found it unusable), or the state of
   * another holder's lease.
   */
  lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable>;
  /**
   * Stores `bytes` for `expiryMs` and ends the lease, only while `token` still holds it: `fenced`
   * when it does not (voided or lost); `awaited` when another lookup found the lease held (someone
   * waits for the fill, so it is worth a hint), in the same round trip.
   */
  fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<FillResult | Unavailable>;
  /** Gives up the lease after a failed load, if `token` still holds it; true when someone waited on it. */
  releaseLease(key: string, token: string): Promise<boolean>;
  /** Keeps the lease of `token` alive for another `leaseTtlMs` while its holder loads. */
  extendLease(key: string, token: string): Promise<void>;
  /**
   * Deletes the entries of `keys` and voids their leases (a fill under a voided lease fails).
   * With `position` (of the change on the keys' shard), only for keys no change at or after it has
   * done so already: the instances applying one change delete once, not once each. False when unreachable.
   */
  deleteKeys(keys: readonly string[], position?: string): Promise<boolean>;
  /** The stored bytes of each key (`undefined` where there is none), without taking leases: for warming L1. */
  readEntries(keys: readonly string[]): Promise<(Buffer | undefined)[] | Unavailable>;
  close(): Promise<void>;
}

/** The durable, ordered change feed, and lease hints beside it. */
export interface ChangeFeed {
  /**
   * Appends `change` to the feed, split by shard; resolves once the storage acknowledged every
   * part, with the parts as they will be delivered. UNAVAILABLE when any part could not be appended.
   */
  appendChange(change: Change): Promise<FeedChange[] | Unavailable>;
  /** Sends `hint` to every other instance, best-effort. False when unreachable. */
  hint(hint: LeaseHint): Promise<boolean>;
  /** Hints, changes and resets; the feed is read while anyone listens. Returns the unsubscribe function. */
  onEvent(listener: (event: TierEvent) => void): () => void;
  feedStatus(): FeedStatus;
  /** `feedStatus().lagMs` alone, cheap enough for every L1 hit. */
  feedLagMs(): number;
  /** Where this instance's reader stands on each shard (position `''` before its first read). */
  feedPositions(): FeedPosition[];
  /** The oldest position a shard still keeps (`undefined`: the shard is empty), to tell whether a position can be replayed. */
  oldestPosition(shard: number): Promise<string | undefined | Unavailable>;
  /** The feed shard of a key. */
  shardOf(key: string): number;
}

/** The fleet's record of its hottest keys (warm start). */
export interface HotKeyRecord {
  /**
   * Adds sampled read counts to the fleet's record of its hottest keys: one bounded write per call
   * (the coldest keys past `hotKeysMax` are dropped). False when unreachable.
   */
  recordReads(counts: ReadonlyMap<string, number>): Promise<boolean>;
  /** The fleet's hottest keys, hottest first, at most `count` (reads of this and the previous window summed). */
  hottestKeys(count: number): Promise<string[] | Unavailable>;
}

/** Plain bitmaps and small shared marks: the fleet's Bloom filter of existing groups. */
export interface FleetBitmaps {
  /**
   * Sets bits of the plain bitmap `name` (positions in bits, bit 0 the most significant of byte
   * 0, as SETBIT), in one round trip: the fleet's Bloom filter of existing groups. False when unreachable.
   */
  setBits(name: string, positions: readonly number[], options?: BitsWriteOptions): Promise<boolean>;
  /**
   * Whether every one of `positions` is set in bitmap `name`, in one round trip; `missing` when
   * there is no such bitmap (the storage lost it: a reader must not take that for "not set").
   */
  testBits(name: string, positions: readonly number[]): Promise<boolean | 'missing' | Unavailable>;
  /** Bits set in bitmap `name` (0 when it does not exist). */
  countBits(name: string): Promise<number | Unavailable>;
  /** Deletes bitmap `name`. False when unreachable. */
  deleteBits(name: string): Promise<boolean>;
  /** A small shared value (`undefined` when absent or expired): the Bloom filter's state and fill lock. */
  readMark(name: string): Promise<string | undefined | Unavailable>;
  /** Stores a small shared value for `ttlMs`; with `onlyIfAbsent`, only when none is stored (a lock). True when stored. */
  writeMark(name: string, value: string, ttlMs: number, onlyIfAbsent?: boolean): Promise<boolean>;
}

/** Token buckets: the per-client budget of origin-bound misses. */
export interface FleetBuckets {
  /**
   * Takes one token from the fleet's token bucket `bucket` (`burst` tokens at most, refilled at
   * `perSecond`), in one round trip: the per-client budget of origin-bound misses. `allowed` false
   * when it is empty; `tokens` is what is left.
   */
  takeToken(
    bucket: string,
    burst: number,
    perSecond: number,
  ): Promise<{ allowed: boolean; tokens: number } | Unavailable>;
}

/**
 * The tier shared by a fleet of instances, between the engine and its storage
 * (Redis standalone or Cluster, or memory): entries as opaque bytes, one lease
 * per key so one instance in the fleet loads it, lease hints, and the durable
 * ordered change feed. Every operation is best-effort: one that cannot reach
 * the storage answers UNAVAILABLE (or false) and never throws, so the engine
 * falls back to per-process caching. tests/shared-tier.contract.test.ts holds
 * every implementation to the same behaviour.
 *
 * It is the union of small interfaces, one per concern: each component takes only the one it uses.
 */
export interface SharedTier extends EntryStore, ChangeFeed, HotKeyRecord, FleetBitmaps, FleetBuckets {}

/**
 * A lease hint read from the shared storage, or `undefined`. Anyone who can
 * write to it can send one, so only a documented error code with its
 * documented status is taken: a peer can never make clients see anything else.
 */
export function parseLeaseHint(value: unknown): (LeaseHint & { from?: string }) | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const m = value as Record<string, unknown>;
  const from = typeof m.from === 'string' ? m.from : undefined;
  if (typeof m.id !== 'string' || m.id.length === 0 || m.id.length > 64) return undefined;
  if (m.type === 'filled') return { type: 'filled', id: m.id, from };
  const status = Number(m.status);
  if (m.type === 'failed' && isErrorCode(m.code) && status === STATUS_OF_CODE[m.code] && status >= 500) {
    return {
      type: 'failed',
      id: m.id,
      code: m.code,
      status,
      message: typeof m.message === 'string' && m.message !== '' ? m.message.slice(0, 500) : 'load failed',
      from,
    };
  }
  return undefined;
}

/** The canonical group id: what a feed entry's ids must look like unless a tier is told otherwise. */
export const CANONICAL_GROUP_ID = /^[1-9][0-9]{0,15}$/;

/**
 * Checks a change before it is appended; a TypeError names what is wrong.
 * Duplicate ids are dropped, the order kept.
 */
export function checkChange(change: Change, isValidKey: (key: string) => boolean): Change {
  if (change === null || typeof change !== 'object') throw new TypeError('a change must be an object {ids, kind}');
  if (change.kind !== 'changed' && change.kind !== 'deleted')
    throw new TypeError(`change kind must be "changed" or "deleted", got ${JSON.stringify(change.kind)}`);
  if (!Array.isArray(change.ids) || change.ids.length === 0 || change.ids.length > MAX_CHANGE_IDS) {
    throw new TypeError(`a change carries 1 to ${MAX_CHANGE_IDS} ids`);
  }
  for (const id of change.ids)
    if (typeof id !== 'string' || !isValidKey(id)) throw new TypeError(`invalid id in change: ${JSON.stringify(id)}`);
  if (change.version !== undefined && (typeof change.version !== 'string' || change.version.length > 128)) {
    throw new TypeError('a change version is a string of up to 128 characters');
  }
  const checked: Change = { ids: [...new Set(change.ids)], kind: change.kind };
  if (change.version !== undefined) checked.version = change.version;
  if (change.sharedCopiesDeleted === true) checked.sharedCopiesDeleted = true;
  return checked;
}

/** Compares two positions (`ms-seq`) of one shard: negative, 0 or positive. */
export function comparePositions(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}

/**
 * The position after `last` at `now` (ms), as Redis numbers stream entries: `now-0`, or the next
 * sequence number of `last`'s millisecond when the clock has not moved past it.
 */
export function nextPosition(last: string, now: number): string {
  const [lastMs = 0, lastSeq = 0] = last.split('-').map(Number);
  return now > lastMs ? `${now}-0` : `${lastMs}-${lastSeq + 1}`;
}

/** The time part of a position, ms since the epoch. */
export function timeOfPosition(position: string): number {
  return Number(position.slice(0, position.indexOf('-')));
}

/** The read counts a tier records: valid keys with a positive whole count; anything else is dropped. */
export function countedReads(
  counts: ReadonlyMap<string, number>,
  isValidKey: (key: string) => boolean,
): [string, number][] {
  return [...counts].filter(([key, reads]) => isValidKey(key) && Number.isInteger(reads) && reads > 0);
}

/** Merges the read counts of two windows of the hot-key record into the `count` hottest keys, hottest first (ties: lower key first). */
export function hottestOf(
  windows: readonly (ReadonlyMap<string, number> | Iterable<[string, number]>)[],
  count: number,
  isValidKey: (key: string) => boolean,
): string[] {
  const totals = new Map<string, number>();
  for (const window of windows) {
    for (const [key, reads] of window)
      if (Number.isFinite(reads) && reads > 0 && isValidKey(key)) totals.set(key, (totals.get(key) ?? 0) + reads);
  }
  return [...totals]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, count)
    .map(([key]) => key);
}
