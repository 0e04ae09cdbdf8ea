import { randomUUID } from 'node:crypto';
import { ProxyError, toProxyError } from '../errors.js';
import { UNAVAILABLE, type SharedTier, type TierEvent } from '../shared-tier/contract.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { CacheEntry } from './entry.js';
import { decodeEnvelope, encodeEnvelope, type EnvelopeFields } from './envelope.js';
import type { EngineObserver, FleetSource } from './observer.js';

export type { FleetSource };

export interface FleetLoadResult<V> {
  entry: CacheEntry<V>;
  source: FleetSource;
  /** False when the entry must not go into L1: the load was fenced by an invalidation. */
  cacheable: boolean;
}

export interface FleetLoadHooks<V> {
  /** Calls the origin and builds the entry. */
  loadOrigin(): Promise<CacheEntry<V>>;
  /** Turns a decoded envelope into an entry, or `undefined` when it is unusable here (stale, undecodable value). */
  fromEnvelope(fields: EnvelopeFields): CacheEntry<V> | undefined;
  /** True once an invalidation fenced this load. */
  isFenced(): boolean;
  /** Aborted when the engine closes: stop waiting on other instances. */
  signal: AbortSignal;
  /** For a check of an L1 entry against the shared tier: the entry to keep when the tier is unreachable (never an origin call then). */
  keepWhenUnavailable?: CacheEntry<V>;
}

/** Longest sleep between two looks at the shared tier while another instance holds the lease (events may be lost). */
const MAX_POLL_MS = 250;

/**
 * Fleet-wide single load, after the leases of "Scaling Memcache at Facebook":
 * the instance that takes `lease:{id}` loads from the origin and writes L2 with
 * a compare-and-set on its token, then announces the fill; the others wait for
 * the announcement (or the lease's end), then read L2. A holder that dies
 * loses the lease when it expires and another instance takes over; a waiter
 * past its deadline loads by itself rather than fail.
 */
export class FleetLoader {
  readonly #tier: SharedTier;
  readonly #clock: Clock;
  /** Per key: usually one listener (per-process singleflight), two when an invalidation restarted a load. */
  readonly #listeners = new Map<string, Set<(event: TierEvent) => void>>();
  readonly #observer: EngineObserver;

  constructor(tier: SharedTier, clock: Clock, observer: EngineObserver = {}) {
    this.#tier = tier;
    this.#clock = clock;
    this.#observer = observer;
  }

  /**
   * An event from the tier, passed on by the engine's one subscription (a change once applied):
   * the waits on the keys it concerns look at the shared tier again. A reset wakes every wait.
   */
  deliver(event: TierEvent): void {
    const ids =
      event.type === 'change' ? event.change.ids : event.type === 'reset' ? [...this.#listeners.keys()] : [event.id];
    for (const id of ids) for (const listener of this.#listeners.get(id) ?? []) listener(event);
  }

  /** Stops every wait on other instances (the tier itself belongs to the caller). */
  close(): void {
    this.#listeners.clear();
  }

  async load<V>(key: string, hooks: FleetLoadHooks<V>): Promise<FleetLoadResult<V>> {
    const tier = this.#tier;
    const token = randomUUID();
    const clock = this.#clock;
    const deadline = clock.now() + tier.leaseWaitMs;
    let mode: 'read' | 'force' = 'read';
    let waited = false;
    for (;;) {
      if (hooks.signal.aborted) throw hooks.signal.reason;
      // Listen before looking, so an announcement landing between the two is not missed.
      const news = this.#listen(key, hooks.signal);
      const found = await tier.lookupOrLease(key, token, mode);
      if (found === UNAVAILABLE) {
        news.cancel();
        if (hooks.keepWhenUnavailable !== undefined)
          return { entry: hooks.keepWhenUnavailable, source: 'l1', cacheable: false };
        return { entry: await hooks.loadOrigin(), source: 'origin', cacheable: true };
      }
      if (found.type === 'hit') {
        news.cancel();
        const fields = decodeEnvelope(found.bytes);
        const entry = fields === undefined ? undefined : hooks.fromEnvelope(fields);
        if (entry !== undefined) return { entry, source: waited ? 'fleet' : 'l2', cacheable: true };
        mode = 'force'; // foreign, truncated, other format or stale: take the lease and overwrite it
        continue;
      }
      if (found.type === 'leased') {
        news.cancel();
        if (waited) this.#observer.lease?.('takeover');
        return this.#loadAsHolder(key, token, hooks);
      }
      const remaining = deadline - clock.now();
      if (remaining <= 0) {
        news.cancel();
        this.#observer.lease?.('deadline');
        return { entry: await hooks.loadOrigin(), source: 'origin', cacheable: true };
      }
      if (!waited) this.#observer.lease?.('wait');
      waited = true;
      const message = await news.wait(Math.min(remaining, found.pttlMs + 1, MAX_POLL_MS));
      if (message?.type === 'failed') throw new ProxyError(message.code, message.message);
      mode = 'read';
    }
  }

  async #loadAsHolder<V>(key: string, token: string, hooks: FleetLoadHooks<V>): Promise<FleetLoadResult<V>> {
    const tier = this.#tier;
    let entry: CacheEntry<V>;
    // Keep the lease alive while loading, so a load slower than LEASE_TTL_MS is not mistaken for a
    // fenced one (its write-back would fail) and no other instance starts a second load.
    const heartbeat = this.#every(
      Math.max(5, Math.floor(tier.leaseTtlMs / 3)),
      () => void tier.extendLease(key, token),
    );
    try {
      entry = await hooks.loadOrigin();
    } catch (error) {
      heartbeat.stop();
      const awaited = await tier.releaseLease(key, token);
      const failure = toProxyError(error);
      // Local conditions (our breaker, our shedding, our clients' budget, shutdown) are not the origin's answer: the
      // waiters elsewhere retry under their own lease instead of sharing our error. Nobody waiting: no hint.
      if (
        awaited &&
        failure.code !== 'CLOSED' &&
        failure.code !== 'INTERNAL' &&
        failure.code !== 'CIRCUIT_OPEN' &&
        failure.code !== 'OVERLOADED' &&
        failure.code !== 'RATE_LIMITED'
      ) {
        void tier.hint({
          type: 'failed',
          id: key,
          code: failure.code,
          status: failure.status,
          message: failure.message,
        });
      }
      throw error;
    }
    heartbeat.stop();
    if (hooks.isFenced()) {
      await tier.releaseLease(key, token);
      return { entry, source: 'origin', cacheable: false };
    }
    const expiryMs = entry.usableUntil - this.#clock.now();
    const stored = await tier.fillIfLeased(key, token, encodeEnvelope(entry), expiryMs);
    // Announced only to instances that wait: a fill nobody waits on costs no hint and wakes no feed
    // reader (the waiters also look again every MAX_POLL_MS, so a lost hint costs latency only).
    if (stored === 'awaited') void tier.hint({ type: 'filled', id: key });
    // fenced: an invalidation voided the lease while we loaded, so our value may predate the change.
    return { entry, source: 'origin', cacheable: stored !== 'fenced' };
  }

  /** Runs `task` every `ms` on the clock until stopped. */
  #every(ms: number, task: () => void): { stop(): void } {
    let timer: TimerHandle | undefined;
    let stopped = false;
    const tick = (): void => {
      if (stopped) return;
      task();
      timer = this.#clock.setTimeout(tick, ms);
    };
    timer = this.#clock.setTimeout(tick, ms);
    return {
      stop: () => {
        stopped = true;
        this.#clock.clearTimeout(timer);
      },
    };
  }

  #listen(key: string, signal: AbortSignal): { wait(ms: number): Promise<TierEvent | undefined>; cancel(): void } {
    let received: TierEvent | undefined;
    let deliver: ((message: TierEvent | undefined) => void) | undefined;
    const listener = (message: TierEvent): void => {
      if (deliver !== undefined) deliver(message);
      else received ??= message;
    };
    let set = this.#listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(key, set);
    }
    set.add(listener);
    const cancel = (): void => {
      const current = this.#listeners.get(key);
      current?.delete(listener);
      if (current?.size === 0) this.#listeners.delete(key);
    };
    return {
      cancel,
      wait: (ms) => {
        if (received !== undefined) {
          cancel();
          return Promise.resolve(received);
        }
        return new Promise((resolve) => {
          const onAbort = (): void => deliver!(undefined); // the loop then sees the aborted signal
          const timer = this.#clock.setTimeout(() => deliver!(undefined), ms);
          signal.addEventListener('abort', onAbort, { once: true });
          deliver = (message) => {
            this.#clock.clearTimeout(timer);
            signal.removeEventListener('abort', onAbort);
            cancel();
            resolve(message);
          };
        });
      },
    };
  }
}
