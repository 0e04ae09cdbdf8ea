import type { ProxyError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import type { CacheEntry } from './entry.js';
import type { FleetSource } from './fleet-load.js';
import type { EngineObserver } from './observer.js';
import type { OriginBudget } from './options.js';
import type { Lookup, LookupOutcome } from './types.js';
import { WaitList } from './wait-list.js';

export interface Filled<V> {
  entry: CacheEntry<V>;
  /** `filtered`: the existence filter answered, nothing was loaded. */
  source: FleetSource | 'filtered';
}

/** One load in progress for one key: the single coalescing point of the engine. */
export interface Flight<V> {
  promise: Promise<Filled<V>>;
  /** Callers that waited on this load, the starter included (0 for a background refresh). */
  waiters: number;
  /** Set by an invalidation: the result must not be cached, it may predate the change. */
  fenced: boolean;
  /** Callers waiting without a stale fallback; made by the first of them. */
  waitList: WaitList<Lookup<V>> | undefined;
  /** Clients waiting on the load (the starter's first, a few at most): the origin call is charged to one with budget. */
  clients: string[];
}

/** Clients a load remembers to charge its origin call to. */
const MAX_CHARGEABLE_CLIENTS = 16;

const OUTCOME_OF_SOURCE: Record<Filled<unknown>['source'], LookupOutcome> = {
  origin: 'miss',
  l2: 'l2-hit',
  fleet: 'collapsed',
  l1: 'hit',
  filtered: 'filtered',
};

/** The engine's loads in flight, at most one per key, and the callers that wait on them. */
export class Flights<V> {
  readonly #flights = new Map<string, Flight<V>>();
  readonly #waitTimeoutMs: number;
  readonly #clock: Clock;
  readonly #observer: EngineObserver;

  constructor(waitTimeoutMs: number, clock: Clock, observer: EngineObserver) {
    this.#waitTimeoutMs = waitTimeoutMs;
    this.#clock = clock;
    this.#observer = observer;
  }

  has(key: string): boolean {
    return this.#flights.has(key);
  }

  get size(): number {
    return this.#flights.size;
  }

  /** Callers waiting on loads now. */
  waiting(): number {
    let waiting = 0;
    for (const flight of this.#flights.values()) waiting += flight.waiters;
    return waiting;
  }

  /** The caller joins the key's load in flight; `load` starts one when there is none. */
  join(
    key: string,
    client: string | undefined,
    load: (flight: Flight<V>) => Promise<Filled<V>>,
  ): { flight: Flight<V>; started: boolean } {
    let flight = this.#flights.get(key);
    const started = flight === undefined;
    if (flight === undefined) flight = this.start(key, false, client, load);
    else if (client !== undefined && flight.clients.length < MAX_CHARGEABLE_CLIENTS && !flight.clients.includes(client))
      flight.clients.push(client);
    flight.waiters++;
    return { flight, started };
  }

  /** Starts the key's load; `background`: a refresh nobody waits on. */
  start(
    key: string,
    background: boolean,
    client: string | undefined,
    load: (flight: Flight<V>) => Promise<Filled<V>>,
  ): Flight<V> {
    const flight: Flight<V> = {
      promise: undefined as unknown as Promise<Filled<V>>,
      waiters: 0,
      fenced: false,
      waitList: undefined,
      clients: client === undefined ? [] : [client],
    };
    flight.promise = load(flight).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    const observe = this.#observer.loadSettled;
    // Also keeps a failure nobody waits for from becoming an unhandled rejection.
    flight.promise.then(
      // A filtered key was not loaded: it is the existence filter's to count.
      (filled) =>
        filled.source === 'filtered'
          ? undefined
          : observe?.({ waiters: flight.waiters, source: filled.source, background }),
      () => observe?.({ waiters: flight.waiters, source: undefined, background }),
    );
    this.#flights.set(key, flight);
    return flight;
  }

  /** The load of `key` must not be cached (a change came); later callers start a new one. */
  fence(key: string): void {
    const flight = this.#flights.get(key);
    if (flight === undefined) return;
    flight.fenced = true;
    this.#flights.delete(key);
  }

  /** Fences every load (a reset: their results may predate changes missed) and forgets them. */
  fenceAll(): void {
    for (const flight of this.#flights.values()) flight.fenced = true;
    this.#flights.clear();
  }

  /** Forgets every load, unfenced (a load that ends still fills the shared tier for the fleet); resolves once they settled. */
  drain(): Promise<void> {
    const pending = [...this.#flights.values()].map((flight) => flight.promise.catch(() => undefined));
    this.#flights.clear();
    return Promise.all(pending).then(() => undefined);
  }

  /** Waits for the flight's answer, with the caller's own deadline and abort signal. */
  wait(flight: Flight<V>, first: boolean, signal: AbortSignal | undefined): Promise<Lookup<V>> {
    return this.waitList(flight).wait(first, signal);
  }

  waitList(flight: Flight<V>): WaitList<Lookup<V>> {
    if (flight.waitList !== undefined) return flight.waitList;
    const list = new WaitList<Lookup<V>>(this.#waitTimeoutMs, this.#clock);
    flight.waitList = list;
    flight.promise.then(
      // One answer object for the starter and one shared by every collapsed caller.
      (filled) =>
        list.resolveAll(
          { entry: filled.entry, outcome: OUTCOME_OF_SOURCE[filled.source] },
          // Every waiter of a filtered key hears the filter's answer (404, nothing cached).
          { entry: filled.entry, outcome: filled.source === 'filtered' ? 'filtered' : 'collapsed' },
        ),
      (error: unknown) => list.rejectAll(error),
    );
    return list;
  }
}

/**
 * Charges a load's origin call to the first of its clients with budget left; fails with the
 * budget's error only when none has any, so one client over budget cannot fail a shared load.
 */
export async function chargeOriginCall(budget: OriginBudget, clients: readonly string[]): Promise<void> {
  let refusal: ProxyError | undefined;
  for (const client of clients) {
    const verdict = await budget.take(client);
    if (verdict === true) return;
    refusal ??= verdict;
  }
  if (refusal !== undefined) throw refusal;
}
