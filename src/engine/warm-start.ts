import { setMaxListeners } from 'node:events';
import type { CoalescingCache } from './engine.js';
import { definedOnly, defaultsOf, integerSpec, OptionError, specOption } from '../util/options.js';

/** Default and range of every numeric warm-start option, declared once (the sidecar's settings read them too). */
export const WARM_START_OPTION_SPECS = {
  hottest: integerSpec(10_000, 0, 1_000_000),
  timeoutMs: integerSpec(5000, 0, 600_000),
  concurrency: integerSpec(16, 1, 10_000),
} as const;

export const WARM_START_DEFAULTS = defaultsOf(WARM_START_OPTION_SPECS);

export interface WarmStartOptions {
  /**
   * How many of the fleet's hottest keys (the record every instance counts its lookups into) to
   * fill L1 with from the shared tier: no origin call, no lease. 0 = none. Default 10000.
   */
  hottest?: number;
  /**
   * Keys to load as well, through the ordinary lookup (L1, the shared tier and its lease, then the
   * origin, in batches when the loader batches), `concurrency` at a time. Default: none.
   */
  keys?: readonly string[];
  /** Longest the warm start takes, ms; what is not done by then is left to the first requests. Default 5000. */
  timeoutMs?: number;
  /** Lookups of `keys` in flight at once, so a preload stays under the origin's concurrency bound. Default 16. */
  concurrency?: number;
}

export interface WarmStartResult {
  /** Hottest keys the fleet's record named. */
  hottest: number;
  /** Of those, filled into L1 from the shared tier. */
  filledFromShared: number;
  /** Of `keys`, looked up (from wherever) before the deadline. */
  preloaded: number;
  /** Of `keys`, failed (origin errors, shedding); they load again on their first request. */
  failed: number;
  /** True when the deadline cut the warm start short. */
  timedOut: boolean;
}

/** What warm start needs of an engine. */
export type WarmTarget = Pick<CoalescingCache<unknown>, 'hottestKeys' | 'fillFromShared' | 'get' | 'clock'>;

/** Hottest keys read from the shared tier per call: one answer of a few hundred KB at most. */
const SHARED_CHUNK = 500;

/**
 * Warms a starting instance: first L1 from the shared tier for the fleet's hottest keys (a new
 * instance joining a warm fleet), then `keys` through ordinary lookups (a list given by the
 * operator, the only warm start without a shared tier). Bounded in count and in time; never
 * rejects: whatever is not warm by the deadline loads on its first request as usual.
 */
export async function warmStart(engine: WarmTarget, options: WarmStartOptions = {}): Promise<WarmStartResult> {
  const o = { ...WARM_START_DEFAULTS, ...definedOnly(options) };
  const S = WARM_START_OPTION_SPECS;
  const hottest = specOption('hottest', o.hottest, S.hottest);
  const timeoutMs = specOption('timeoutMs', o.timeoutMs, S.timeoutMs);
  const concurrency = specOption('concurrency', o.concurrency, S.concurrency);
  const keys = o.keys ?? [];
  if (!Array.isArray(keys) || keys.some((key) => typeof key !== 'string'))
    throw new OptionError('keys', 'an array of keys (strings)', keys);

  const clock = engine.clock;
  const deadline = clock.now() + timeoutMs;
  const result: WarmStartResult = { hottest: 0, filledFromShared: 0, preloaded: 0, failed: 0, timedOut: false };
  const timeLeft = (): boolean => {
    if (clock.now() < deadline) return true;
    result.timedOut = true;
    return false;
  };
  // One deadline for the waits below: a slow origin or shared tier never holds the start past it.
  let expire: () => void = () => {};
  const expired = new Promise<void>((resolve) => (expire = resolve));
  const timer = clock.setTimeout(() => {
    result.timedOut = true;
    expire();
  }, timeoutMs);
  const stop = new AbortController();
  // Every lookup in flight listens on it: `concurrency` of them at once is by design, not a leak.
  setMaxListeners(0, stop.signal);
  try {
    const ranked = timeLeft() ? await Promise.race([engine.hottestKeys(hottest), expired.then(() => [])]) : [];
    result.hottest = ranked.length;
    for (let i = 0; i < ranked.length && timeLeft(); i += SHARED_CHUNK) {
      const filled = await Promise.race([
        engine.fillFromShared(ranked.slice(i, i + SHARED_CHUNK)),
        expired.then(() => 0),
      ]);
      result.filledFromShared += filled;
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length && timeLeft()) {
        const key = keys[next++]!;
        try {
          await engine.get(key, { signal: stop.signal });
          result.preloaded++;
        } catch {
          if (!stop.signal.aborted) result.failed++;
        }
      }
    };
    const workers = Array.from({ length: Math.min(concurrency, keys.length) }, worker);
    await Promise.race([Promise.all(workers), expired]);
  } finally {
    clock.clearTimeout(timer);
    // Waits still open stop here; their loads go on and fill L1 for the first requests.
    stop.abort();
  }
  return result;
}
