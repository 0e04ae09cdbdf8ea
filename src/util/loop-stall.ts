import { SYSTEM_CLOCK, type Clock, type TimerHandle } from './clock.js';

/** Period of the probe timer, ms: coarse, it only has to see stalls that matter against upstream latencies. */
const PROBE_MS = 10;

/**
 * The event loop's stall, summed from how late a coarse timer fires while held: a call's duration minus the stall
 * during it is the upstream's share, so a burst that keeps the proxy busy does not read as a slow upstream.
 */
export class LoopStall {
  readonly #clock: Clock;
  #stalled = 0;
  #last = 0;
  #holders = 0;
  #timer: TimerHandle | undefined;

  constructor(clock: Clock = SYSTEM_CLOCK) {
    this.#clock = clock;
  }

  /** Starts the probe for one more holder; pair with release(). Idle instances have no probe at all. */
  acquire(): void {
    if (this.#holders++ > 0) return;
    this.#last = this.#clock.now();
    this.#arm();
  }

  release(): void {
    if (this.#holders === 0 || --this.#holders > 0) return;
    this.#stalled = this.stalledMs();
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Stall so far, ms, the stretch since the probe last ran included. */
  stalledMs(): number {
    if (this.#timer === undefined) return this.#stalled;
    return this.#stalled + Math.max(0, this.#clock.now() - this.#last - PROBE_MS);
  }

  readonly #probe = (): void => {
    const now = this.#clock.now();
    this.#stalled += Math.max(0, now - this.#last - PROBE_MS);
    this.#last = now;
    this.#arm();
  };

  #arm(): void {
    const timer = this.#clock.setTimeout(this.#probe, PROBE_MS);
    // Never what keeps a process alive.
    (timer as Partial<NodeJS.Timeout>).unref?.();
    this.#timer = timer;
  }
}
