import { isErrorCode, STATUS_OF_CODE, type ErrorCode } from '../errors.js';
import { defaultsOf, integerSpec } from '../util/options.js';
import type { Unavailable } from './unavailable.js';

export { UNAVAILABLE, type Unavailable } from './unavailable.js';

/** Default and range of the options every shared tier takes (declared once here; see SharedTierOptions). */
export const SHARED_TIER_OPTION_SPECS = {
  leaseTtlMs: integerSpec(3000, 10, 600_000),
  leaseWaitMs: integerSpec(5000, 0, 600_000),
  /** Changes the feed keeps (per shard); an instance that falls further behind flushes its L1. About 100 bytes each. */
  feedMaxLen: integerSpec(100_000, 100, 100_000_000),
  hotKeysMax: integerSpec(10_000, 1, 1_000_000),
  hotWindowMs: integerSpec(600_000, 1000, 7 * 86_400_000),
} as const;

export const SHARED_TIER_DEFAULTS = defaultsOf(SHARED_TIER_OPTION_SPECS);

/** Options both tiers take. */
export interface SharedTierOptions {
  /** How long a lease protects one load, ms; if its holder dies, another instance takes over after this. Default 3000. */
  leaseTtlMs?: number;
  /** How long an instance waits for another's load before loading by itself, ms. Default 5000. */
  leaseWaitMs?: number;
  /** Keys the fleet's record of its hottest keys keeps per window (a starting instance warms from it). Default 10000. */
  hotKeysMax?: number;
  /** Length of a window of the hot-key record, ms; reads of the current and the previous window count. Default 600000. */
  hotWindowMs?: number;
  /** Which ids of a change are valid keys; others are dropped (and counted). Default: canonical group ids. */
  isValidKey?: (key: string) => boolean;
}

export interface BitsWriteOptions {
  /** The bitmap expires this long after the write, ms (renewed by every write with it). Default: never. */
  ttlMs?: number;
  /** Set nothing when the bitmap does not exist (a late writer must not recreate a dropped one). */
  onlyIfExists?: boolean;
}

export const MAX_CHANGE_IDS = 1000;

/** The stored bytes, the lease (this caller now loads the key for everyone), or another's lease and its time left. */
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
  /** The producer deleted the shared copies (entries, leases) first, as a proxy does; else the first reader does. */
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

/** A lease holder stored the key, or its load failed upstream (waiters share it). Best-effort: a loss costs a poll. */
export type LeaseHint =
  | { type: 'filled'; id: string }
  | { type: 'failed'; id: string; code: ErrorCode; status: number; message: string };

/**
 * Why an instance flushes its L1: its position cannot be replayed (`epoch`: feed recreated; `trimmed`: fell behind
 * the retention), or it had none (`joined`: it served while Redis was unreachable, before the feed was readable).
 */
export type FeedResetReason = 'epoch' | 'trimmed' | 'joined';

/**
 * What an instance hears: another instance's lease hint (`from`: the sender); each change once, in feed order per
 * shard, own ones included (applied when appended, their place in the feed learnt here); `reset`: changes may have
 * been missed on a shard (storage recreated, or feed trimmed past this position), so every local copy is suspect.
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
  /** The entry, or the lease under `token` if none (with `force`, even over one: the caller found it unusable). */
  lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable>;
  /** Stores `bytes`, ending the lease, only while `token` holds it (else `fenced`); `awaited`: someone waits (hint). */
  fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<FillResult | Unavailable>;
  /** Gives up the lease after a failed load, if `token` still holds it; true when someone waited on it. */
  releaseLease(key: string, token: string): Promise<boolean>;
  /** Keeps the lease of `token` alive for another `leaseTtlMs` while its holder loads. */
  extendLease(key: string, token: string): Promise<void>;
  /**
   * Deletes the entries and voids the leases (fencing their fills). With the change's `position`, only where no change
   * at or after it did so already: the instances applying one change delete once. False when unreachable.
   */
  deleteKeys(keys: readonly string[], position?: string): Promise<boolean>;
  /** The stored bytes of each key (`undefined` where there is none), without taking leases: for warming L1. */
  readEntries(keys: readonly string[]): Promise<(Buffer | undefined)[] | Unavailable>;
  close(): Promise<void>;
}

/** The durable, ordered change feed, and lease hints beside it. */
export interface ChangeFeed {
  /** Appends `change`, split by shard; resolves with the parts once all are acknowledged, UNAVAILABLE if any failed. */
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
  shardOf(key: string): number;
}

/** The fleet's record of its hottest keys (warm start). */
export interface HotKeyRecord {
  /** Adds sampled read counts in one bounded write (the coldest keys past `hotKeysMax` go). False when unreachable. */
  recordReads(counts: ReadonlyMap<string, number>): Promise<boolean>;
  /** The fleet's hottest keys, hottest first, at most `count` (reads of this and the previous window summed). */
  hottestKeys(count: number): Promise<string[] | Unavailable>;
}

/** Plain bitmaps and small shared marks: the fleet's Bloom filter of existing groups. */
export interface FleetBitmaps {
  /** Sets bits in one round trip (bit 0 the most significant of byte 0, as SETBIT). False when unreachable. */
  setBits(name: string, positions: readonly number[], options?: BitsWriteOptions): Promise<boolean>;
  /** Whether every bit is set; `missing` when the storage lost the bitmap (which must not read as "not set"). */
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

/** What `takeToken` did: `allowed` false when the bucket was empty; `tokens` is what is left. */
export type TokenTake = { allowed: boolean; tokens: number };

/** Token buckets: the per-client budget of origin-bound misses. */
export interface FleetBuckets {
  /** Takes one token in one round trip (`burst` at most, refilled at `perSecond`). */
  takeToken(bucket: string, burst: number, perSecond: number): Promise<TokenTake | Unavailable>;
}

/**
 * The tier a fleet shares (Redis or memory): opaque entries, one lease per key, hints and the ordered change feed.
 * Best-effort: an unreachable storage answers UNAVAILABLE (or false), never throws, so the engine falls back to
 * per-process caching. One small interface per concern, so each component takes only what it uses;
 * tests/shared-tier.contract.test.ts holds every implementation to the same behaviour.
 */
export interface SharedTier extends EntryStore, ChangeFeed, HotKeyRecord, FleetBitmaps, FleetBuckets {}

/**
 * A lease hint read from storage, or `undefined`. Anyone who can write there can send one, so only a documented
 * error code with its documented status passes: a peer can never make clients see anything else.
 */
export function parseLeaseHint(value: unknown): (LeaseHint & { from?: string }) | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const m = value as Record<string, unknown>;
  const from = typeof m.from === 'string' ? m.from : undefined;
  if (typeof m.id !== 'string' || m.id.length === 0 || m.id.length > 64) return undefined;
  if (m.type === 'filled') return { type: 'filled', id: m.id, from };
  const status = Number(m.status);
  if (m.type !== 'failed' || !isErrorCode(m.code) || status !== STATUS_OF_CODE[m.code] || status < 500)
    return undefined;
  const message = typeof m.message === 'string' && m.message !== '' ? m.message.slice(0, 500) : 'load failed';
  return { type: 'failed', id: m.id, code: m.code, status, message, from };
}

/** Which keys (ids of a change) a tier takes. */
type KeyCheck = (key: string) => boolean;

/** The canonical group id: what a feed entry's ids must look like unless a tier is told otherwise. */
export const CANONICAL_GROUP_ID = /^[1-9][0-9]{0,15}$/;

/** Checks a change before it is appended (a TypeError names what is wrong); drops duplicate ids, keeping the order. */
export function checkChange(change: Change, isValidKey: KeyCheck): Change {
  if (change === null || typeof change !== 'object') throw new TypeError('a change must be an object {ids, kind}');
  if (change.kind !== 'changed' && change.kind !== 'deleted')
    throw new TypeError(`change kind must be "changed" or "deleted", got ${JSON.stringify(change.kind)}`);
  if (!Array.isArray(change.ids) || change.ids.length === 0 || change.ids.length > MAX_CHANGE_IDS)
    throw new TypeError(`a change carries 1 to ${MAX_CHANGE_IDS} ids`);
  for (const id of change.ids)
    if (typeof id !== 'string' || !isValidKey(id)) throw new TypeError(`invalid id in change: ${JSON.stringify(id)}`);
  if (change.version !== undefined && (typeof change.version !== 'string' || change.version.length > 128))
    throw new TypeError('a change version is a string of up to 128 characters');
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

/** The position after `last` at `now`, as Redis numbers stream entries (`now-0`, or `last`'s next sequence number). */
export function nextPosition(last: string, now: number): string {
  const [lastMs = 0, lastSeq = 0] = last.split('-').map(Number);
  return now > lastMs ? `${now}-0` : `${lastMs}-${lastSeq + 1}`;
}

/** The time part of a position, ms since the epoch. */
export function timeOfPosition(position: string): number {
  return Number(position.slice(0, position.indexOf('-')));
}

/** The read counts a tier records: valid keys with a positive whole count; anything else is dropped. */
export function countedReads(counts: ReadonlyMap<string, number>, isValidKey: KeyCheck): [string, number][] {
  return [...counts].filter(([key, reads]) => isValidKey(key) && Number.isInteger(reads) && reads > 0);
}

/** Merges the read counts of two windows of the hot-key record into the `count` hottest keys, hottest first (ties: lower key first). */
export function hottestOf(
  windows: readonly Iterable<[string, number]>[],
  count: number,
  isValidKey: KeyCheck,
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
