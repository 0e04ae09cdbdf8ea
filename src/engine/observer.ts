import type { FeedChange, FeedResetReason } from '../shared-tier/contract.js';

/**
 * Where a load got its entry: the shared tier directly, another instance's load, this instance's
 * origin call, or (`l1`) the L1 entry it was checking, kept because the shared tier was unreachable.
 */
export type FleetSource = 'l2' | 'fleet' | 'origin' | 'l1';

/** A change from the feed (or appended here) that this instance applied. */
export interface ChangeAppliedEvent {
  change: FeedChange;
  /** On the engine's clock; minus `change.appendedAt`, the propagation latency. */
  appliedAt: number;
  /** True for a change this instance appended itself (applied before `invalidate` returned). */
  local: boolean;
}

/** A load the engine ran, once it settled. */
export interface LoadSettledEvent {
  /** Callers that shared this one load (0 for a background refresh): the coalescing factor. */
  waiters: number;
  /** Where the entry came from; `undefined` when the load failed. */
  source: FleetSource | undefined;
  /** True when the load was a background refresh (stale-while-revalidate or early refresh). */
  background: boolean;
}

/** Lease protocol events: waited on another instance, took a lease after waiting, loaded alone past the wait deadline. */
export type LeaseEvent = 'wait' | 'takeover' | 'deadline';

/**
 * Hooks for metrics and tracing. Called synchronously on the engine's paths,
 * so implementations must be cheap and must not throw.
 */
export interface EngineObserver {
  loadSettled?(event: LoadSettledEvent): void;
  lease?(event: LeaseEvent): void;
  changeApplied?(event: ChangeAppliedEvent): void;
  /** L1 was flushed: the feed position could not be replayed. */
  feedReset?(reason: FeedResetReason): void;
}
