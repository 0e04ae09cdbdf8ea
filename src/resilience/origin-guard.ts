import CircuitBreaker from 'opossum';
import { definedOnly } from '../engine/options.js';
import { ProxyError } from '../errors.js';
import { integerOption } from '../util/options.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface OriginGuardOptions {
  /** Origin calls in progress at most (a batch counts as one). Default 64. */
  maxConcurrency?: number;
  /** Calls waiting for a slot at most; beyond it new calls are shed with 503. Default 256. */
  maxQueue?: number;
  /** Longest wait for a slot, ms; then the call is shed with 503. Default 1000. */
  queueTimeoutMs?: number;
  /** Opens the breaker when more than this percentage of calls in the window failed (1–99). Default 50. */
  breakerErrorPercent?: number;
  /** Calls needed in the window before the breaker may open. Default 20. */
  breakerVolumeThreshold?: number;
  /** Rolling window of the failure rate, ms. Default 10000. */
  breakerWindowMs?: number;
  /** How long the breaker stays open before a half-open probe, ms. Default 5000. */
  breakerResetMs?: number;
  /** Told of every breaker transition. */
  onBreakerChange?: (state: BreakerState) => void;
}

export const ORIGIN_GUARD_DEFAULTS = {
  maxConcurrency: 64,
  maxQueue: 256,
  queueTimeoutMs: 1000,
  breakerErrorPercent: 50,
  breakerVolumeThreshold: 20,
  breakerWindowMs: 10_000,
  breakerResetMs: 5000,
} as const;

/** Only the origin's own failures count toward opening the breaker: never 404s, rejected ids or local shedding. */
const ORIGIN_FAILURES = new Set(['UPSTREAM_STATUS', 'UPSTREAM_TIMEOUT', 'UPSTREAM_UNREACHABLE', 'UPSTREAM_BAD_RESPONSE']);

type Call = () => Promise<unknown>;

/**
 * Protects the origin: an opossum circuit breaker on the failure rate, then a
 * bound on concurrent calls with a bounded, deadline-limited queue. Every
 * origin call (single or batch) goes through `run`.
 */
export class OriginGuard {
  readonly #breaker: CircuitBreaker<[Call], unknown>;
  readonly #maxConcurrency: number;
  readonly #maxQueue: number;
  readonly #queueTimeoutMs: number;
  readonly #retryAfterSeconds: number;
  readonly #queue: { grant: () => void }[] = [];
  #active = 0;
  #shed = 0;

  constructor(options: OriginGuardOptions = {}) {
    const o = { ...ORIGIN_GUARD_DEFAULTS, ...definedOnly(options) };
    this.#maxConcurrency = integerOption('maxConcurrency', o.maxConcurrency, 1, 100_000);
    this.#maxQueue = integerOption('maxQueue', o.maxQueue, 0, 1_000_000);
    this.#queueTimeoutMs = integerOption('queueTimeoutMs', o.queueTimeoutMs, 1, 600_000);
    const resetMs = integerOption('breakerResetMs', o.breakerResetMs, 1, 3_600_000);
    this.#retryAfterSeconds = Math.max(1, Math.ceil(resetMs / 1000));
    this.#breaker = new CircuitBreaker((call: Call) => call(), {
      timeout: false, // the origin client enforces its own hard timeout
      errorThresholdPercentage: integerOption('breakerErrorPercent', o.breakerErrorPercent, 1, 99),
      volumeThreshold: integerOption('breakerVolumeThreshold', o.breakerVolumeThreshold, 0, 1_000_000),
      rollingCountTimeout: integerOption('breakerWindowMs', o.breakerWindowMs, 10, 3_600_000),
      rollingCountBuckets: 10,
      resetTimeout: resetMs,
      errorFilter: (error: unknown) => !(error instanceof ProxyError && ORIGIN_FAILURES.has(error.code)),
    });
    const notify = o.onBreakerChange;
    if (notify !== undefined) {
      this.#breaker.on('open', () => notify('open'));
      this.#breaker.on('halfOpen', () => notify('half-open'));
      this.#breaker.on('close', () => notify('closed'));
    }
  }

  /**
   * Runs one origin call under the concurrency bound, then the breaker. The
   * bound sits outside the breaker so that shed calls never reach it: opossum
   * counts a filtered error as a success, and shedding would keep a hanging
   * upstream's failure rate below the threshold.
   */
  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#breaker.opened) throw this.#circuitOpen();
    return this.#limited(async () => {
      try {
        return (await this.#breaker.fire(call)) as T;
      } catch (error) {
        if ((error as { code?: string }).code === 'EOPENBREAKER') throw this.#circuitOpen();
        throw error;
      }
    });
  }

  #circuitOpen(): ProxyError {
    return new ProxyError('CIRCUIT_OPEN', 'the upstream is failing; calls are paused', 503, { retryAfterSeconds: this.#retryAfterSeconds });
  }

  get breakerState(): BreakerState {
    return this.#breaker.opened ? 'open' : this.#breaker.halfOpen ? 'half-open' : 'closed';
  }

  stats(): { active: number; queued: number; shed: number } {
    return { active: this.#active, queued: this.#queue.length, shed: this.#shed };
  }

  /** Stops the breaker's timers. */
  close(): void {
    this.#breaker.shutdown();
  }

  async #limited<T>(call: () => Promise<T>): Promise<T> {
    if (this.#active < this.#maxConcurrency) this.#active++;
    else await this.#waitForSlot();
    try {
      return await call();
    } finally {
      // Hand the slot straight to the next waiter, so a newcomer cannot slip in between.
      const next = this.#queue.shift();
      if (next !== undefined) next.grant();
      else this.#active--;
    }
  }

  #waitForSlot(): Promise<void> {
    if (this.#queue.length >= this.#maxQueue) return Promise.reject(this.#overloaded());
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const index = this.#queue.indexOf(waiter);
        if (index !== -1) this.#queue.splice(index, 1);
        reject(this.#overloaded());
      }, this.#queueTimeoutMs);
      this.#queue.push(waiter);
    });
  }

  #overloaded(): ProxyError {
    this.#shed++;
    return new ProxyError('OVERLOADED', 'too many upstream calls in progress; retry shortly', 503, { retryAfterSeconds: 1 });
  }
}
