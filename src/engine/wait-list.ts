import { ProxyError, toProxyError } from '../errors.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { CacheEntry } from './entry.js';
import type { Lookup } from './types.js';

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
  /** clock.now() past which this caller gets WAIT_TIMEOUT. */
  readonly deadline: number;
  /** The caller that started the load (it gets `firstValue`). */
  readonly first: boolean;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

/**
 * The callers waiting on one load, each with its own deadline and optional
 * abort signal, under a single timer. Callers join in time order, so their
 * deadlines are sorted and the timer only ever waits for the earliest one.
 * A burst's thousand waiters cost a thousand small records, not a thousand
 * timers, promise chains and closures that would all outlive V8's young
 * generation while the load is out.
 */
export class WaitList<T> {
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #waiters: Waiter<T>[] = [];
  /** Waiters before this index are settled. */
  #next = 0;
  #timer: TimerHandle | undefined;
  #done = false;

  constructor(timeoutMs: number, clock: Clock) {
    this.#timeoutMs = timeoutMs;
    this.#clock = clock;
  }

  /** Waits for the load's value; rejects this caller alone on its deadline or its signal. */
  wait(first: boolean, signal: AbortSignal | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#done) throw new Error('WaitList.wait after the load settled');
      if (signal?.aborted) return reject(abortedError());
      const waiter: Waiter<T> = {
        resolve,
        reject,
        deadline: this.#clock.now() + this.#timeoutMs,
        first,
        signal,
        onAbort: undefined,
        settled: false,
      };
      if (signal !== undefined) {
        waiter.onAbort = () => this.#settle(waiter, abortedError());
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
      this.#timer ??= this.#clock.setTimeout(this.#expire, this.#timeoutMs);
    });
  }

  /** The load succeeded: the first caller gets `firstValue`, every other one `value`. */
  resolveAll(firstValue: T, value: T): void {
    this.#finish((waiter) => waiter.resolve(waiter.first ? firstValue : value));
  }

  rejectAll(error: unknown): void {
    this.#finish((waiter) => waiter.reject(error));
  }

  #finish(answer: (waiter: Waiter<T>) => void): void {
    this.#done = true;
    this.#clock.clearTimeout(this.#timer);
    for (let i = this.#next; i < this.#waiters.length; i++) {
      const waiter = this.#waiters[i]!;
      if (waiter.settled) continue;
      this.#disarm(waiter);
      answer(waiter);
    }
    this.#waiters.length = 0;
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    const waiters = this.#waiters;
    while (this.#next < waiters.length && waiters[this.#next]!.deadline <= now) {
      const waiter = waiters[this.#next++]!;
      if (!waiter.settled) this.#settle(waiter, waitTimeoutError(this.#timeoutMs));
    }
    if (this.#next < waiters.length)
      this.#timer = this.#clock.setTimeout(this.#expire, Math.max(1, waiters[this.#next]!.deadline - now));
  };

  #settle(waiter: Waiter<T>, error: ProxyError): void {
    if (waiter.settled) return;
    this.#disarm(waiter);
    waiter.reject(error);
  }

  #disarm(waiter: Waiter<T>): void {
    waiter.settled = true;
    if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort);
  }
}

/** Failures of one caller's wait (its deadline, its signal), as opposed to failures of the load. */
const callerFailures = new WeakSet<object>();

/** True for an error a WaitList gave one caller alone: the load itself may still succeed. */
export function isCallerFailure(error: unknown): boolean {
  return typeof error === 'object' && error !== null && callerFailures.has(error);
}

/** Marks an error as one caller's alone (see isCallerFailure). */
function callerFailure(error: ProxyError): ProxyError {
  callerFailures.add(error);
  return error;
}

/** 499: nginx's "client closed request"; nobody reads it, the client is gone. */
function abortedError(): ProxyError {
  return callerFailure(new ProxyError('ABORTED', 'the caller stopped waiting'));
}

function waitTimeoutError(timeoutMs: number): ProxyError {
  return callerFailure(new ProxyError('WAIT_TIMEOUT', `no answer within ${timeoutMs} ms`));
}

/**
 * A wait with a stale entry kept for emergencies: the load's answer if it comes within the soft
 * timeout, the stale entry if the load fails (the breaker and shedding included) or is slower;
 * the load goes on in the background. The caller's own deadline or signal, or a closing cache,
 * is never answered with the stale entry.
 */
export function waitOrServeStale<V>(
  list: WaitList<Lookup<V>>,
  started: boolean,
  signal: AbortSignal | undefined,
  stale: CacheEntry<V>,
  clock: Clock,
  softTimeoutMs: number,
): Promise<Lookup<V>> {
  return new Promise((resolve, reject) => {
    // Whichever settles first wins; later calls to resolve or reject are no-ops.
    const soft = clock.setTimeout(() => resolve({ entry: stale, outcome: 'stale-timeout' }), softTimeoutMs);
    list.wait(started, signal).then(
      (lookup) => {
        clock.clearTimeout(soft);
        resolve(lookup);
      },
      (error: unknown) => {
        clock.clearTimeout(soft);
        const failure = toProxyError(error);
        if (isCallerFailure(error) || failure.code === 'CLOSED') reject(failure);
        else resolve({ entry: stale, outcome: 'stale-if-error', error: failure });
      },
    );
  });
}
