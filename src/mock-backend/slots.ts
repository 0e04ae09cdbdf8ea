/**
 * The mock's capacity: at most `capacity` calls are served at once, the rest wait their turn in order, so past it
 * latency grows with the queue, as a real server's does (0 = no limit).
 */
export class Slots {
  readonly #capacity: number;
  #busy = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Resolves once the call may be served: true, or false when `signal` aborted while it waited. */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (this.#capacity === 0 || this.#busy < this.#capacity) {
      this.#busy++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const grant = (): void => {
        signal.removeEventListener('abort', onAbort);
        this.#busy++;
        resolve(true);
      };
      const onAbort = (): void => {
        const index = this.#waiting.indexOf(grant);
        if (index >= 0) this.#waiting.splice(index, 1);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  release(): void {
    this.#busy--;
    this.#waiting.shift()?.();
  }
}
