/** Where a load got its entry: the shared tier directly, another instance's load, or this instance's origin call. */
export type FleetSource = 'l2' | 'fleet' | 'origin';

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
}
