import { isErrorCode, STATUS_OF_CODE, type ErrorCode } from '../errors.js';
import { defaultsOf, integerSpec } from './options.js';
import type { Unavailable } from './unavailable.js';

export { UNAVAILABLE, type Unavailable } from './unavailable.js';

/** Default and range of the lease options every shared tier takes (declared once here). */
export const SHARED_TIER_OPTION_SPECS = {
  /** How long a lease protects one load, ms; if its holder dies, another instance takes over after this. */
  leaseTtlMs: integerSpec(3000, 10, 600_000),
  /** How long an instance waits for another's load before loading by itself, ms. */
  leaseWaitMs: integerSpec(5000, 0, 600_000),
} as const;

export const SHARED_TIER_DEFAULTS = defaultsOf(SHARED_TIER_OPTION_SPECS);

/**
 * What a lookup in the shared tier found: the stored bytes, the lease (this
 * caller now loads the key for everyone), or another instance's lease with
 * the time it has left.
 */
export type SharedLookup = { type: 'hit'; bytes: Buffer } | { type: 'leased' } | { type: 'held'; pttlMs: number };

/**
 * Change events between instances sharing a tier:
 * - `filled`: a lease holder stored the key (waiters read it now);
 * - `failed`: a lease holder's load failed with an upstream error (waiters share it);
 * - `invalidate`: the keys changed; `deleted` says whether the tier's copies are gone already
 *   (an event straight from the group-profile service has not deleted them).
 * `from` is the publishing instance: an instance never receives its own events.
 */
export type TierEvent =
  | { type: 'filled'; id: string; from?: string }
  | { type: 'failed'; id: string; code: ErrorCode; status: number; message: string; from?: string }
  | { type: 'invalidate'; ids: string[]; deleted?: boolean; from?: string };

/**
 * The tier shared by a fleet of instances, between the engine and its storage
 * (Redis standalone or Cluster, or memory): entries as opaque bytes, one lease
 * per key so one instance in the fleet loads it, and change events. Every
 * operation is best-effort: one that cannot reach the storage answers
 * UNAVAILABLE (or false) and never throws, so the engine falls back to
 * per-process caching. tests/shared-tier.contract.test.ts holds every
 * implementation to the same behaviour.
 */
export interface SharedTier {
  /** Distinguishes this instance's events from others'. */
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
  /** Stores `bytes` for `expiryMs` and ends the lease, only while `token` still holds it. False when fenced (voided or lost). */
  fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<boolean | Unavailable>;
  /** Gives up the lease after a failed load, if `token` still holds it. */
  releaseLease(key: string, token: string): Promise<void>;
  /** Keeps the lease of `token` alive for another `leaseTtlMs` while its holder loads. */
  extendLease(key: string, token: string): Promise<void>;
  /** Deletes the entries of `keys` and voids their leases (a fill under a voided lease fails). False when unreachable. */
  deleteKeys(keys: readonly string[]): Promise<boolean>;
  /** Sends `event` to every other instance. False when unreachable. */
  publish(event: TierEvent): Promise<boolean>;
  /** Events from other instances; returns the unsubscribe function. */
  onEvent(listener: (event: TierEvent) => void): () => void;
  close(): Promise<void>;
}

/**
 * A change event read from the shared storage, or `undefined`. Anyone who can
 * write to it can publish, so only a documented error code with its
 * documented status is taken: a peer can never make clients see anything else.
 */
export function parseTierEvent(value: unknown): TierEvent | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const m = value as Record<string, unknown>;
  const from = typeof m.from === 'string' ? m.from : undefined;
  if (m.type === 'filled' && typeof m.id === 'string') return { type: 'filled', id: m.id, from };
  if (m.type === 'failed' && typeof m.id === 'string' && isErrorCode(m.code) && m.status === STATUS_OF_CODE[m.code] && (m.status as number) >= 500) {
    return { type: 'failed', id: m.id, code: m.code, status: m.status, message: typeof m.message === 'string' ? m.message.slice(0, 500) : 'load failed', from };
  }
  if (m.type === 'invalidate' && Array.isArray(m.ids)) {
    const ids = m.ids.filter((id): id is string | number => typeof id === 'string' || typeof id === 'number').map(String);
    return { type: 'invalidate', ids, deleted: m.deleted === true, from };
  }
  return undefined;
}
