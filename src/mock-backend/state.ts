/** Mutable state of one mock backend: counters, fault mode and touched revisions. */
import { DEFAULT_SLOW_LATENCY_MS, type MockMode } from './modes.js';
import { sleep } from './wait.js';

export interface MockStats {
  /** Every request to /groups* (single and batch, valid or not). */
  calls: number;
  singleCalls: number;
  batchCalls: number;
  /** Distinct ids requested through batch calls, summed over calls. */
  batchIds: number;
  /** Pages of the id export served (GET /group-ids); not in `calls`. */
  exportCalls: number;
  /** Times each id was requested (single and batch; once per batch call). */
  byId: Record<string, number>;
  /** /groups* requests currently waiting or being answered. */
  inFlight: number;
  /** Highest inFlight since creation or the last reset. */
  maxInFlight: number;
  mode: MockMode;
}

const noCalls = () => ({ calls: 0, exportCalls: 0, singleCalls: 0, batchCalls: 0, batchIds: 0 });

export class MockState {
  #counts = noCalls();
  #byId = new Map<string, number>();
  #inFlight = 0;
  #maxInFlight = 0;
  #mode: MockMode = 'normal';
  #slowLatencyMs = DEFAULT_SLOW_LATENCY_MS;
  #flapCalls = 0;
  #revisions = new Map<number, number>();
  // Resolvers of requests parked in `hang` mode, released by any mode change.
  #modeWaiters = new Set<() => void>();

  get mode(): MockMode {
    return this.#mode;
  }

  get slowLatencyMs(): number {
    return this.#slowLatencyMs;
  }

  /** Counts a /groups* request at arrival and marks it in flight; call `leave` when answered. */
  arrive(kind: 'single' | 'batch' | 'export', ids: readonly string[]): void {
    const counts = this.#counts;
    if (kind === 'export') {
      counts.exportCalls++;
      return;
    }
    counts.calls++;
    if (kind === 'single') counts.singleCalls++;
    else {
      counts.batchCalls++;
      counts.batchIds += ids.length;
    }
    for (const id of ids) this.#byId.set(id, (this.#byId.get(id) ?? 0) + 1);
    this.#inFlight++;
    this.#maxInFlight = Math.max(this.#maxInFlight, this.#inFlight);
  }

  leave(): void {
    this.#inFlight--;
  }

  /** In `flapping` mode: true for the 1st, 3rd, 5th… call since the mode was set. */
  nextFlapFails(): boolean {
    this.#flapCalls++;
    return this.#flapCalls % 2 === 1;
  }

  setMode(mode: MockMode, slowLatencyMs = DEFAULT_SLOW_LATENCY_MS): void {
    this.#mode = mode;
    this.#slowLatencyMs = slowLatencyMs;
    this.#flapCalls = 0;
    for (const release of this.#modeWaiters) release();
    this.#modeWaiters.clear();
  }

  /** Waits for the next mode change; false when `ms` elapsed or `signal` aborted first. */
  async waitForModeChange(ms: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false;
    const changed = new AbortController();
    const release = (): void => changed.abort();
    this.#modeWaiters.add(release);
    const onClientGone = (): void => {
      this.#modeWaiters.delete(release);
      changed.abort();
    };
    signal.addEventListener('abort', onClientGone, { once: true });
    try {
      await sleep(ms, changed.signal);
      return changed.signal.aborted && !signal.aborted;
    } finally {
      this.#modeWaiters.delete(release);
      signal.removeEventListener('abort', onClientGone);
    }
  }

  revisionOf(id: number): number {
    return this.#revisions.get(id) ?? 0;
  }

  touch(id: number): void {
    this.#revisions.set(id, this.revisionOf(id) + 1);
  }

  /** Zeroes counters and touched revisions and returns to `normal`; requests in flight stay counted. */
  reset(): void {
    this.#counts = noCalls();
    this.#byId.clear();
    this.#maxInFlight = this.#inFlight;
    this.#revisions.clear();
    this.setMode('normal');
  }

  stats(): MockStats {
    return {
      ...this.#counts,
      byId: Object.fromEntries(this.#byId),
      inFlight: this.#inFlight,
      maxInFlight: this.#maxInFlight,
      mode: this.#mode,
    };
  }
}
