import type { SharedTier } from '../shared-tier/contract.js';
import type { ProxyError } from '../errors.js';
import type { EngineObserver } from './observer.js';
import { SYSTEM_CLOCK, type Clock } from '../util/clock.js';
import {
  clockOption,
  defaultsOf,
  definedOnly,
  fractionSpec,
  functionOption,
  integerOption,
  integerSpec,
  knownOptions,
  OptionError,
  specOption,
} from '../util/options.js';

export { definedOnly };

/** Returned by a loader when the key does not exist at the source; the engine caches it as a negative entry. */
export const NOT_FOUND: unique symbol = Symbol.for('group-profile-proxy.not-found');
export type NotFound = typeof NOT_FOUND;

export interface LoadContext {
  /** Aborted when the engine closes. Never aborted because one caller went away. */
  readonly signal: AbortSignal;
}

/**
 * Consulted on a miss before any load (ExistenceFilter): a key it says is `absent` is answered as
 * not found (outcome `filtered`) with no load and nothing cached. It learns every key a load
 * found and every key a change announces.
 */
export interface ExistenceCheck {
  check(key: string): 'maybe' | 'absent' | Promise<'maybe' | 'absent'>;
  learn(key: string): void;
}

/**
 * Charged when a load is about to call the origin (MissBudget): `true` when `client` may, else the
 * error (429) to fail with. Hits, collapsed waits, shared-tier hits and stale answers never reach it.
 */
export interface OriginBudget {
  take(client: string): true | ProxyError | Promise<true | ProxyError>;
}

/** Fetches one key from the source of truth. Throw a ProxyError to choose the status callers see. */
export type Loader<V> = (key: string, context: LoadContext) => Promise<V | NotFound>;

export interface EngineOptions<V> {
  /** The source of truth. Required. Called at most once at a time per key. */
  load: Loader<V>;
  /** Encodes a loaded value into the bytes served and cached. Default: UTF-8 JSON. */
  serialize?: (value: V) => Buffer;
  /** Decodes the stored bytes back into a value (entry.value, L2 reads). Default: JSON.parse; set it whenever `serialize` is not JSON. */
  deserialize?: (body: Buffer) => V;
  /** Shared tier (RedisTier, InMemoryTier) for fleet-wide single loads and invalidation. Default: none (L1 only). The caller closes it. */
  l2?: SharedTier;
  /** Body served for a negative entry. Default: a JSON `{"error":{"code":"GROUP_NOT_FOUND",...}}`. */
  notFoundBody?: (key: string) => Buffer;
  /** Freshness of a found entry, in ms, before jitter. Default 60000. */
  ttlMs?: number;
  /** Uniform jitter applied to every TTL, as a fraction in [0, 0.5]. Default 0.1 (±10%). */
  ttlJitter?: number;
  /** Freshness of a negative entry, in ms, before jitter. Default 30000. */
  negativeTtlMs?: number;
  /** After freshness, how long an entry is served at once while one background refresh runs (stale-while-revalidate), ms. Default 300000. */
  staleTtlMs?: number;
  /** The same for negative entries, ms. Default 30000. */
  negativeStaleTtlMs?: number;
  /**
   * After freshness, how long an entry is kept to be served when the origin fails, is too slow or
   * the breaker is open (stale-if-error), ms. At least the stale windows. Default 3600000.
   */
  maxStaleMs?: number;
  /** With a stale entry at hand, how long a lookup waits for the origin before answering with it, ms. Default 200. */
  softTimeoutMs?: number;
  /**
   * Refresh-ahead (probabilistic early expiration, XFetch): a hit with `left` ms of freshness
   * starts one background refresh with probability e^(-left/s), where s is this option or the
   * recent origin load time if that is longer. A key read r times a second is refreshed about
   * s·ln(r·s) before it expires, so it never expires while read; a key read rarely expires as
   * usual. With a shared tier the refresh takes the lease: one refresh per key for the fleet. ms;
   * 0 = off. Default 500.
   */
  refreshAheadMs?: number;
  /**
   * With a shared tier: every load that found a key, and one hit in this many (counted as this
   * many), go into the fleet's record of its hottest keys (what a starting instance warms from);
   * 0 = nothing counted. A counted lookup costs a Map update. Default 8.
   */
  hotKeysSampleEvery?: number;
  /** With a shared tier: how often the counted lookups are added to the fleet's record, ms (one bounded write). Default 10000. */
  hotKeysFlushMs?: number;
  /** Longest a caller waits for a load before giving up with 504 WAIT_TIMEOUT, ms. Default 10000. */
  waitTimeoutMs?: number;
  /**
   * With a shared tier: once the change feed has not been read for this long (a dropped or stuck
   * reader while Redis answers), an L1 entry not checked against the shared tier for as long is
   * checked before it is served (an L2 read, never an origin call), ms. Bounds how stale a profile
   * can be served while changes cannot be heard. Default 2000.
   */
  feedMaxLagMs?: number;
  /** L1 bound on entries. Default 100000. */
  l1MaxEntries?: number;
  /** L1 bound on bytes (body bytes plus `l1EntryOverheadBytes` each). Default 256 MiB. */
  l1MaxBytes?: number;
  /** Fixed bytes counted per L1 entry on top of its body. Default 400. */
  l1EntryOverheadBytes?: number;
  /** Answers keys known not to exist without a load (cache penetration): an ExistenceFilter. Default: none. */
  existence?: ExistenceCheck;
  /**
   * A per-client budget for origin calls (MissBudget): a load about to call the origin is charged
   * to a client waiting on it (GetOptions.client) that has budget left; only when none has does it
   * fail with the budget's error. Loads with no client (refreshes, warm start) are free. Default: none.
   */
  originBudget?: OriginBudget;
  /** Hooks for metrics. Default: none. */
  observer?: EngineObserver;
  /**
   * The one source of time for every decision of the engine: TTLs, wait deadlines, the soft
   * timeout, lease waits, polls and heartbeats. Default: the system clock. Injectable for tests
   * (ManualClock) instead of sleeping.
   */
  clock?: Clock;
  /** Shortcut for a clock whose `now` is this, with the system's timers. Ignored when `clock` is set. */
  now?: () => number;
  /** Random source in [0, 1) for TTL jitter. Default `Math.random`. Injectable for tests. */
  random?: () => number;
}

export type ResolvedEngineOptions<V> = Required<
  Omit<EngineOptions<V>, 'l2' | 'observer' | 'existence' | 'originBudget'>
> &
  Pick<EngineOptions<V>, 'l2' | 'existence' | 'originBudget'> & { observer: EngineObserver };

function resolveClock(clock: unknown, now: unknown): Clock {
  if (clock !== undefined || now === undefined) return clockOption('clock', clock);
  const read = functionOption<() => number>('now', now);
  return { now: read, setTimeout: SYSTEM_CLOCK.setTimeout, clearTimeout: SYSTEM_CLOCK.clearTimeout };
}

const DAY_MS = 86_400_000;

/** Default and range of every numeric engine option, declared once (the sidecar's settings read them too). */
export const ENGINE_OPTION_SPECS = {
  ttlMs: integerSpec(60_000, 1, DAY_MS),
  ttlJitter: fractionSpec(0.1, 0, 0.5),
  negativeTtlMs: integerSpec(30_000, 0, DAY_MS),
  staleTtlMs: integerSpec(300_000, 0, DAY_MS),
  negativeStaleTtlMs: integerSpec(30_000, 0, DAY_MS),
  /** Also at least both stale windows (checked with them). */
  maxStaleMs: integerSpec(3_600_000, 0, 7 * DAY_MS),
  softTimeoutMs: integerSpec(200, 0, 600_000),
  refreshAheadMs: integerSpec(500, 0, DAY_MS),
  hotKeysSampleEvery: integerSpec(8, 0, 1_000_000),
  hotKeysFlushMs: integerSpec(10_000, 100, DAY_MS),
  waitTimeoutMs: integerSpec(10_000, 1, 3_600_000),
  feedMaxLagMs: integerSpec(2000, 1, DAY_MS),
  l1MaxEntries: integerSpec(100_000, 1, 100_000_000),
  l1MaxBytes: integerSpec(256 * 1024 * 1024, 1024, 64 * 1024 * 1024 * 1024),
  l1EntryOverheadBytes: integerSpec(400, 0, 1024 * 1024),
} as const;

export const ENGINE_DEFAULTS = defaultsOf(ENGINE_OPTION_SPECS);

export function defaultSerialize(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function defaultNotFoundBody(key: string): Buffer {
  return Buffer.from(
    JSON.stringify({ error: { code: 'GROUP_NOT_FOUND', message: `group ${key} does not exist` } }),
    'utf8',
  );
}

/** Every option the engine takes: the numeric ones of the specs and the parts it is given. */
const ENGINE_OPTION_NAMES: readonly string[] = [
  ...Object.keys(ENGINE_OPTION_SPECS),
  ...([
    'load',
    'serialize',
    'deserialize',
    'l2',
    'existence',
    'originBudget',
    'notFoundBody',
    'observer',
    'clock',
    'now',
    'random',
  ] satisfies (keyof EngineOptions<unknown>)[]),
];

export function resolveEngineOptions<V>(options: EngineOptions<V>): ResolvedEngineOptions<V> {
  // Renamed, and now on by default: an old configuration must not be taken silently.
  if (typeof options === 'object' && options !== null && 'earlyRefreshMs' in options) {
    throw new OptionError(
      'earlyRefreshMs',
      'nothing: it was replaced by refreshAheadMs (probabilistic refresh-ahead, on by default; 0 turns it off)',
      (options as Record<string, unknown>).earlyRefreshMs,
    );
  }
  knownOptions('the engine', options, ENGINE_OPTION_NAMES);
  const o = { ...ENGINE_DEFAULTS, ...definedOnly(options) };
  const S = ENGINE_OPTION_SPECS;
  const clock = resolveClock(o.clock, o.now);
  const numbers = {} as { -readonly [K in keyof typeof S]: number };
  for (const name of Object.keys(S) as (keyof typeof S)[])
    if (name !== 'maxStaleMs') numbers[name] = specOption(name, o[name], S[name]);
  // Stale-if-error keeps an entry at least as long as stale-while-revalidate serves it.
  const { staleTtlMs, negativeStaleTtlMs } = numbers;
  const maxStaleMin = Math.max(S.maxStaleMs.min, staleTtlMs, negativeStaleTtlMs);
  numbers.maxStaleMs = integerOption('maxStaleMs', o.maxStaleMs, maxStaleMin, S.maxStaleMs.max);
  return {
    ...numbers,
    load: functionOption('load', o.load),
    serialize: o.serialize === undefined ? defaultSerialize : functionOption('serialize', o.serialize),
    deserialize:
      o.deserialize === undefined
        ? (body: Buffer) => JSON.parse(body.toString('utf8')) as V
        : functionOption('deserialize', o.deserialize),
    l2: partOption('l2', o.l2, ['lookupOrLease', 'onEvent'], 'a SharedTier (RedisTier or InMemoryTier)'),
    existence: partOption(
      'existence',
      o.existence,
      ['check', 'learn'],
      'an ExistenceFilter (an object with check and learn)',
    ),
    originBudget: partOption('originBudget', o.originBudget, ['take'], 'a MissBudget (an object with take)'),
    notFoundBody: o.notFoundBody === undefined ? defaultNotFoundBody : functionOption('notFoundBody', o.notFoundBody),
    observer: partOption('observer', o.observer, [], 'an object of hooks') ?? {},
    clock,
    now: () => clock.now(),
    random: o.random === undefined ? Math.random : functionOption('random', o.random),
  };
}

/** `value` when unset or an object with each of `methods`; otherwise an OptionError naming the option. */
function partOption<T>(
  name: string,
  value: T | undefined,
  methods: readonly string[],
  expected: string,
): T | undefined {
  const valid =
    value === undefined ||
    (typeof value === 'object' &&
      value !== null &&
      methods.every((method) => typeof (value as Record<string, unknown>)[method] === 'function'));
  if (!valid) throw new OptionError(name, expected, value);
  return value;
}
