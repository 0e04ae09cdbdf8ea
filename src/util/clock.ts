/** What a timer of a Clock returns, to clear it with. */
export type TimerHandle = object;

/** The one source of time for every time decision of the engine and its guards, so tests need not sleep. */
export interface Clock {
  /** Milliseconds since the epoch (entries shared through a tier carry absolute times). */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** Date.now and the global timers (looked up at each call, so fake timers installed later apply too). */
export const SYSTEM_CLOCK: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (callback: () => void, ms: number): TimerHandle => setTimeout(callback, ms),
  clearTimeout: (handle: TimerHandle | undefined): void => clearTimeout(handle as NodeJS.Timeout | undefined),
});

type ManualTimer = { readonly at: number; readonly callback: () => void };

/** A clock that moves only when told: `advance(ms)` runs the timers due on the way, in order, each at its time. */
export class ManualClock implements Clock {
  #now: number;
  readonly #timers = new Set<ManualTimer>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, ms), callback };
    this.#timers.add(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    this.#timers.delete(handle as ManualTimer);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, running the timers due meanwhile (and those they set, if due). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      // A Set iterates in insertion order: of timers due together, the first set runs first.
      for (const timer of this.#timers)
        if (timer.at <= target && (next === undefined || timer.at < next.at)) next = timer;
      if (next === undefined) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = target;
  }
}
