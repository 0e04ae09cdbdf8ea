import CircuitBreaker from 'opossum';
import { definedOnly } from '../engine/options.js';
import { ProxyError } from '../errors.js';
import { LoopStall } from '../util/loop-stall.js';
import { AdaptiveLimit, GROWTH } from './adaptive-limit.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import {
  clockOption,
  defaultsOf,
  functionOption,
  integerOption,
  integerSpec,
  OptionError,
  specOption,
} from '../util/options.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Why a call was shed: its expected wait was over the queue timeout, it waited that long, or the queue was full. */
export type ShedReason = 'expected_wait' | 'queue_timeout' | 'queue_full';
export const SHED_REASONS: readonly ShedReason[] = ['expected_wait', 'queue_timeout', 'queue_full'];

export interface OriginGuardOptions {
  /**
   * `adaptive`: the limit on calls in progress follows the upstream's latency between `minConcurrency` and
   * `maxConcurrency` (AdaptiveLimit); `fixed`: it is `maxConcurrency`. Default adaptive.
   */
  concurrency?: 'adaptive' | 'fixed';
  /** Origin calls in progress at most (a batch counts as one): the adaptive limit's ceiling. Default 1000. */
  maxConcurrency?: number;
  /** The adaptive limit's floor. Default 4. */
  minConcurrency?: number;
  /** Where the adaptive limit starts. Default 20. */
  initialConcurrency?: number;
  /** Calls waiting for a slot at most: a memory bound, generous on purpose (the expected wait decides first). Default 10000. */
  maxQueue?: number;
  /**
   * Longest wait for a slot, ms: a call expected to wait longer (calls ahead vs. measured throughput) is shed at
   * once with 503 OVERLOADED, one still waiting then is shed. Default 2000, as the upstream timeout's default.
   */
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
  /** Told of every call shed with 503 OVERLOADED. */
  onShed?: (reason: ShedReason) => void;
  /** Time for call durations, queue deadlines and the stall probe. Default: the system clock. */
  clock?: Clock;
}

/** Default and range of every numeric option, declared once (the sidecar's settings read them too). */
export const ORIGIN_GUARD_OPTION_SPECS = {
  maxConcurrency: integerSpec(1000, 1, 100_000),
  minConcurrency: integerSpec(4, 1, 100_000),
  initialConcurrency: integerSpec(20, 1, 100_000),
  maxQueue: integerSpec(10_000, 0, 1_000_000),
  queueTimeoutMs: integerSpec(2000, 1, 600_000),
  breakerErrorPercent: integerSpec(50, 1, 99),
  breakerVolumeThreshold: integerSpec(20, 0, 1_000_000),
  breakerWindowMs: integerSpec(10_000, 10, 3_600_000),
  breakerResetMs: integerSpec(5000, 1, 3_600_000),
} as const;

export const ORIGIN_GUARD_DEFAULTS = defaultsOf(ORIGIN_GUARD_OPTION_SPECS);

/** Weight of the newest call in the running mean of call durations. */
const LATENCY_SMOOTHING = 0.2;
/** The no-load latency is the least seen over the last 30–60 s: an upstream slower for good is learnt within a minute. */
const MIN_LATENCY_WINDOW_MS = 30_000;
/** Failures that say the upstream is overloaded or down: the adaptive limit backs off on them. */
const DROPS = new Set(['UPSTREAM_STATUS', 'UPSTREAM_TIMEOUT', 'UPSTREAM_UNREACHABLE']);

/** Only the origin's own failures count toward opening the breaker: never 404s, rejected ids or local shedding. */
const ORIGIN_FAILURES = new Set([
  'UPSTREAM_STATUS',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_BAD_RESPONSE',
]);

type Call = () => Promise<unknown>;

export interface GuardStats {
  active: number;
  queued: number;
  shed: number;
  limit: number;
  latencyMs: number | undefined;
  minLatencyMs: number | undefined;
}

interface QueuedCall {
  readonly grant: () => void;
  readonly shed: () => void;
  /** `now()` past which the call is shed. */
  readonly deadline: number;
}

/**
 * Protects the origin: an opossum circuit breaker on the failure rate, then a bound on concurrent calls. With
 * every slot busy a call queues only if the calls ahead can drain within `queueTimeoutMs` at the measured
 * throughput (the limit ÷ mean call duration): a healthy upstream drains a burst, a slow one has its excess shed at
 * once. Queueing is the proxy's own time: it ends in 503 OVERLOADED and never reaches the breaker.
 */
export class OriginGuard {
  readonly #breaker: CircuitBreaker<[Call], unknown>;
  readonly #maxConcurrency: number;
  readonly #adaptive: AdaptiveLimit | undefined;
  readonly #onShed: ((reason: ShedReason) => void) | undefined;
  readonly #maxQueue: number;
  readonly #queueTimeoutMs: number;
  readonly #retryAfterSeconds: number;
  readonly #clock: Clock;
  /** FIFO of waiting calls; entries before `#head` are gone. Deadlines ascend, so one timer serves all. */
  #queue: QueuedCall[] = [];
  #head = 0;
  #timer: TimerHandle | undefined;
  #active = 0;
  #shed = 0;
  /** Running mean of the upstream's own duration of calls that ran, ms; undefined until the first one ends. */
  #latencyMs: number | undefined;
  readonly #loop: LoopStall;

  constructor(options: OriginGuardOptions = {}) {
    const o = { ...ORIGIN_GUARD_DEFAULTS, ...definedOnly(options) };
    const S = ORIGIN_GUARD_OPTION_SPECS;
    this.#maxConcurrency = specOption('maxConcurrency', o.maxConcurrency, S.maxConcurrency);
    this.#clock = clockOption('clock', o.clock);
    const mode = o.concurrency ?? 'adaptive';
    if (mode !== 'adaptive' && mode !== 'fixed') throw new OptionError('concurrency', "'adaptive' or 'fixed'", mode);
    if (mode === 'adaptive') {
      // The default floor gives way to a lower ceiling; a floor asked for must fit under it.
      const floor = options.minConcurrency ?? Math.min(S.minConcurrency.default, this.#maxConcurrency);
      const min = integerOption('minConcurrency', floor, S.minConcurrency.min, this.#maxConcurrency);
      this.#adaptive = new AdaptiveLimit({
        min,
        max: this.#maxConcurrency,
        initial: specOption('initialConcurrency', o.initialConcurrency, S.initialConcurrency),
        minLatencyWindowMs: MIN_LATENCY_WINDOW_MS,
        clock: this.#clock,
      });
    }
    this.#onShed =
      o.onShed === undefined ? undefined : functionOption<(reason: ShedReason) => void>('onShed', o.onShed);
    this.#maxQueue = specOption('maxQueue', o.maxQueue, S.maxQueue);
    this.#queueTimeoutMs = specOption('queueTimeoutMs', o.queueTimeoutMs, S.queueTimeoutMs);
    this.#loop = new LoopStall(this.#clock);
    const resetMs = specOption('breakerResetMs', o.breakerResetMs, S.breakerResetMs);
    this.#retryAfterSeconds = Math.max(1, Math.ceil(resetMs / 1000));
    this.#breaker = new CircuitBreaker((call: Call) => call(), {
      timeout: false, // the origin client enforces its own hard timeout
      errorThresholdPercentage: specOption('breakerErrorPercent', o.breakerErrorPercent, S.breakerErrorPercent),
      volumeThreshold: specOption('breakerVolumeThreshold', o.breakerVolumeThreshold, S.breakerVolumeThreshold),
      rollingCountTimeout: specOption('breakerWindowMs', o.breakerWindowMs, S.breakerWindowMs),
      rollingCountBuckets: 10,
      resetTimeout: resetMs,
      errorFilter: (error: unknown) => !(error instanceof ProxyError && ORIGIN_FAILURES.has(error.code)),
    });
    if (o.onBreakerChange !== undefined) {
      const notify = functionOption<(state: BreakerState) => void>('onBreakerChange', o.onBreakerChange);
      this.#breaker.on('open', () => notify('open'));
      this.#breaker.on('halfOpen', () => notify('half-open'));
      this.#breaker.on('close', () => notify('closed'));
    }
  }

  /**
   * Runs one origin call under the concurrency bound, then the breaker: shed calls never reach it, since opossum
   * counts a filtered error as a success and shedding would keep a hanging upstream below the threshold.
   */
  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#breaker.opened) throw this.#circuitOpen();
    if (this.#active < this.limit) this.#active++;
    else await this.#waitForSlot();
    this.#loop.acquire();
    const started = this.#clock.now();
    const stalledBefore = this.#loop.stalledMs();
    const inFlight = this.#active;
    let ran = false;
    let dropped = false;
    try {
      return (await this.#breaker.fire(() => {
        ran = true;
        return call();
      })) as T;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'EOPENBREAKER') throw this.#circuitOpen();
      dropped = code !== undefined && DROPS.has(code);
      throw error;
    } finally {
      // Only calls that reached the upstream measure it; and an answer that waited for a busy
      // event loop measures the proxy, not the upstream.
      const wallMs = this.#clock.now() - started;
      if (ran) this.#observe(Math.max(0, wallMs - (this.#loop.stalledMs() - stalledBefore)), wallMs, inFlight, dropped);
      this.#release();
      this.#loop.release();
    }
  }

  #circuitOpen(): ProxyError {
    return new ProxyError('CIRCUIT_OPEN', 'the upstream is failing; calls are paused', {
      retryAfterSeconds: this.#retryAfterSeconds,
    });
  }

  get breakerState(): BreakerState {
    return this.#breaker.opened ? 'open' : this.#breaker.halfOpen ? 'half-open' : 'closed';
  }

  /** Calls that may be in progress now: the adaptive limit, or `maxConcurrency` when fixed. */
  get limit(): number {
    return this.#adaptive?.limit ?? this.#maxConcurrency;
  }

  /**
   * `latencyMs`: the running mean of call durations admission works from; `minLatencyMs`: the no-load latency the
   * adaptive limit works from (both undefined before the first call ends).
   */
  stats(): GuardStats {
    return {
      active: this.#active,
      queued: this.#queue.length - this.#head,
      shed: this.#shed,
      limit: this.limit,
      latencyMs: this.#latencyMs,
      minLatencyMs: this.#adaptive?.minLatencyMs,
    };
  }

  /** Stops the breaker's timers and the queue's. */
  close(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#breaker.shutdown();
  }

  /** Hands the slot straight to the next waiter, so a newcomer cannot slip in between; none when the limit fell. */
  #release(): void {
    const next = this.#active <= this.limit ? this.#dequeue() : undefined;
    if (next !== undefined) next.grant();
    else this.#active--;
  }

  #waitForSlot(): Promise<void> {
    const queued = this.#queue.length - this.#head;
    if (queued >= this.#maxQueue) return Promise.reject(this.#overloaded('queue_full'));
    if (this.#expectedWaitMs(queued) > this.#queueTimeoutMs) return Promise.reject(this.#overloaded('expected_wait'));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({
        grant: resolve,
        shed: () => reject(this.#overloaded('queue_timeout')),
        deadline: this.#clock.now() + this.#queueTimeoutMs,
      });
      this.#timer ??= this.#clock.setTimeout(this.#expire, this.#queueTimeoutMs);
    });
  }

  /** How long a call with `ahead` calls queued before it can expect to wait for a slot, ms (0 while nothing is measured). */
  #expectedWaitMs(ahead: number): number {
    const latency = this.#latencyMs;
    if (latency === undefined) return 0;
    let limit = this.limit;
    if (this.#adaptive?.growing !== true) return ((ahead + 1) * latency) / limit;
    // A limit still growing (by half a round trip while the upstream has room) drains the queue sooner.
    let left = ahead + 1;
    let rounds = 0;
    for (; left > limit && rounds < 100; rounds++) {
      left -= limit;
      limit = Math.min(this.#maxConcurrency, limit * GROWTH);
    }
    return (rounds + left / limit) * latency;
  }

  /**
   * A call that ran took `durationMs` of the upstream's time with `inFlight` calls out: updates the mean admission
   * works from and the adaptive limit; a limit that grew lets queued calls start at once.
   */
  #observe(durationMs: number, wallMs: number, inFlight: number, dropped: boolean): void {
    const previous = this.#latencyMs;
    if (!dropped)
      this.#latencyMs = previous === undefined ? durationMs : previous + LATENCY_SMOOTHING * (durationMs - previous);
    if (this.#adaptive === undefined) return;
    this.#adaptive.sample(durationMs, inFlight, dropped, wallMs);
    // The caller's own slot is still counted: it is released (and perhaps handed on) after this.
    while (this.#active < this.limit) {
      const next = this.#dequeue();
      if (next === undefined) break;
      this.#active++;
      next.grant();
    }
  }

  #dequeue(): QueuedCall | undefined {
    if (this.#head === this.#queue.length) return undefined;
    const next = this.#queue[this.#head++]!;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return next;
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.deadline <= now) this.#dequeue()!.shed();
    const next = this.#queue[this.#head];
    if (next !== undefined) this.#timer = this.#clock.setTimeout(this.#expire, Math.max(1, next.deadline - now));
  };

  #overloaded(reason: ShedReason): ProxyError {
    this.#shed++;
    this.#onShed?.(reason);
    return new ProxyError('OVERLOADED', 'too many upstream calls in progress; retry shortly', {
      retryAfterSeconds: 1,
    });
  }
}
