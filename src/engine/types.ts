import type { ProxyError } from '../errors.js';
import type { ChangeKind, FeedChange, FeedResetReason } from '../shared-tier/contract.js';
import type { CacheEntry } from './entry.js';

/** The engine's public types: what a lookup answers, an invalidation reaches, and the stats report. */

/**
 * How a lookup was answered, for Cache-Status and metrics:
 * - `hit`: a fresh entry from L1;
 * - `l2-hit`: a fresh entry from the shared L2 tier;
 * - `miss`: this call started the load that went to the origin;
 * - `collapsed`: this call waited on a load another call (or another instance) had started;
 * - `stale`: a stale entry served at once while one background refresh runs (stale-while-revalidate);
 * - `stale-if-error`: a stale entry served because the load failed, was shed or the breaker is open;
 * - `stale-timeout`: a stale entry served because the origin was slower than the soft timeout;
 * - `filtered`: the existence filter knows the key does not exist: a not-found entry made for this
 *   answer, with no load and nothing cached.
 */
export type LookupOutcome =
  | 'hit'
  | 'l2-hit'
  | 'miss'
  | 'collapsed'
  | 'stale'
  | 'stale-if-error'
  | 'stale-timeout'
  | 'filtered';

export interface Lookup<V> {
  readonly entry: CacheEntry<V>;
  readonly outcome: LookupOutcome;
  /** For `stale-if-error`: the failure the stale entry stands in for. */
  readonly error?: ProxyError;
}

export interface GetOptions {
  /** Abandons this caller's wait only; the shared load goes on for the others. */
  signal?: AbortSignal;
  /** Who asks, for the origin budget (`originBudget`): the client address or key. Default: nobody (never charged). */
  client?: string;
}

/** What an invalidation reached. */
export interface InvalidationResult {
  /** Whether a shared tier is configured, so there is a fleet to tell. */
  sharedTier: boolean;
  /**
   * True once the change is in the fleet's feed. False without a shared tier (this instance only,
   * and that is all there is), or when the append failed: other instances keep their copies until
   * they expire.
   */
  fleet: boolean;
  /** Where the change sits in the feed, per shard (none without a shared tier). */
  positions: { shard: number; position: string }[];
}

/**
 * What the engine tells change listeners: a change applied here (from the feed, or appended by
 * this instance: `local`), or an L1 flush after which any key may have changed unseen.
 */
export type EngineChange =
  | { type: 'change'; change: FeedChange; local: boolean }
  | { type: 'reset'; reason: FeedResetReason }
  /** Invalidated here only: the feed could not take the change (Redis unreachable). No position. */
  | { type: 'unfed'; ids: string[] };

/** What changed, for the feed; `changed` by default. */
export interface InvalidateOptions {
  kind?: ChangeKind;
  /** The source's version or `updatedAt` of the change, carried to every instance. */
  version?: string;
}

/** Point-in-time counts, for gauges and health checks. */
export interface EngineStats {
  l1Entries: number;
  /** Bytes accounted against `l1MaxBytes`: body bytes plus the per-entry overhead. */
  l1Bytes: number;
  /** Memory L1's body arena holds, holes between replaced bodies included. */
  l1ArenaBytes: number;
  inFlight: number;
  /** Callers that joined the loads in flight (their starters included), waiting or gone since. */
  waiting: number;
  l2: 'disabled' | 'ok' | 'degraded';
  /** The change feed as read here; `undefined` without a shared tier. */
  feed: { lagMs: number; lagEntries: number; lagging: boolean } | undefined;
}
