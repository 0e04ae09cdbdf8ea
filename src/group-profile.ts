import { performance } from 'node:perf_hooks';
import { CoalescingCache } from './engine/engine.js';
import { NOT_FOUND, type EngineOptions, type Loader } from './engine/options.js';
import { ProxyError, type ErrorCode } from './errors.js';
import type { ProxyMetrics, OriginOutcome } from './metrics/metrics.js';
import { AutoBatchLoader } from './origin/auto-batch.js';
import { BatchLoader, type LoadMany } from './origin/batch-loader.js';
import { HttpOrigin, meansNoBatchRoute, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';
import { OriginGuard, type OriginGuardOptions } from './resilience/origin-guard.js';
import { clockOption, OptionError } from './util/options.js';

/** With batching `auto`, after the upstream showed it has no batch route: single calls for a minute, then a batch probes again. */
const NO_BATCH_ROUTE_RETRY_MS = 60_000;

export interface GroupProfileCacheOptions extends Omit<EngineOptions<GroupProfile>, 'load'> {
  /** The group-profile service. Required. */
  upstream: HttpOriginOptions;
  /** Circuit breaker and concurrency bound around every upstream call. Defaults: see OriginGuardOptions. */
  guard?: OriginGuardOptions;
  /**
   * Batch misses into `GET {url}/groups?ids=...` calls (default: off); a batch counts once against the guard. `mode`
   * `auto` batches only while the upstream serves the batch route (AutoBatchLoader), `on` (the default) always.
   */
  batch?: { mode?: 'on' | 'auto'; windowMs?: number; maxIds?: number };
  /** Prometheus metrics to record into. Default: none. */
  metrics?: ProxyMetrics;
}

/** The engine preset for group profiles: an HTTP origin behind the breaker, the concurrency bound and the coalescing cache. */
export interface GroupProfileCache {
  readonly engine: CoalescingCache<GroupProfile>;
  readonly origin: HttpOrigin;
  readonly guard: OriginGuard;
  /** With `batch.mode` auto: whether misses go out in batches (undefined until a batch call has told). */
  batching(): boolean | undefined;
  /** Closes the engine, then the upstream connections. */
  close(): Promise<void>;
}

export function createGroupProfileCache(options: GroupProfileCacheOptions): GroupProfileCache {
  // Checked before anything reads it, so plain-JS callers (no options, `{}`, a bare URL string) get the OptionError, not a TypeError.
  const upstreamOption: unknown = (options as GroupProfileCacheOptions | undefined)?.upstream;
  if (typeof upstreamOption !== 'object' || upstreamOption === null)
    throw new OptionError('upstream', 'an object with a url', upstreamOption);
  const { upstream, guard: guardOptions, batch, metrics, ...engineOptions } = options;
  const origin = new HttpOrigin(upstream);
  // One clock for every time decision: the engine's TTLs and deadlines, the queue and the batch window.
  const clock = clockOption('clock', engineOptions.clock);
  const guard = new OriginGuard({
    ...guardOptions,
    clock,
    onBreakerChange: (state) => {
      metrics?.recordBreaker(state);
      guardOptions?.onBreakerChange?.(state);
    },
    onShed: (reason) => {
      metrics?.shedCalls.inc({ reason });
      guardOptions?.onShed?.(reason);
    },
  });
  const call = <T>(kind: 'single' | 'batch', run: () => Promise<T>): Promise<T> =>
    metrics === undefined ? guard.run(run) : measured(metrics, kind, () => guard.run(() => timed(metrics, kind, run)));
  const loadOne: Loader<GroupProfile> = (id, context) => call('single', () => origin.load(id, context));
  const loadMany: LoadMany<GroupProfile> = (ids, context) => {
    metrics?.batchSize.observe(ids.length);
    return call('batch', () => origin.loadMany(ids, context));
  };
  const mode = batch?.mode ?? 'on';
  if (mode !== 'on' && mode !== 'auto') throw new OptionError('batch.mode', "'on' or 'auto'", mode);
  const windowMs = batch?.windowMs;
  const maxKeys = batch?.maxIds;
  const autoBatch =
    batch !== undefined && mode === 'auto'
      ? new AutoBatchLoader<GroupProfile>({
          loadOne,
          loadMany,
          meansNoBatchRoute,
          windowMs,
          maxKeys,
          retryMs: NO_BATCH_ROUTE_RETRY_MS,
          clock,
        })
      : undefined;
  const load: Loader<GroupProfile> =
    autoBatch?.load ??
    (batch === undefined ? loadOne : new BatchLoader<GroupProfile>({ loadMany, windowMs, maxKeys, clock }).load);
  const observer = engineOptions.observer ?? metrics?.engineObserver;
  const engine = new CoalescingCache<GroupProfile>({ ...engineOptions, clock, observer, load });
  return {
    engine,
    origin,
    guard,
    batching: () => (autoBatch === undefined ? batch !== undefined : autoBatch.batching),
    async close() {
      await engine.close();
      guard.close();
      await origin.close();
    },
  };
}

/** Counts every attempted upstream call by outcome, including those the breaker or the bound refused. */
async function measured<T>(metrics: ProxyMetrics, kind: 'single' | 'batch', run: () => Promise<T>): Promise<T> {
  try {
    const result = await run();
    metrics.originCalls.inc({ kind, outcome: result === NOT_FOUND ? 'not_found' : 'ok' });
    return result;
  } catch (error) {
    metrics.originCalls.inc({ kind, outcome: outcomeOf(error) });
    throw error;
  }
}

/** Times only the calls that reached the service. */
async function timed<T>(metrics: ProxyMetrics, kind: 'single' | 'batch', run: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await run();
  } finally {
    metrics.originDuration.observe({ kind }, (performance.now() - started) / 1000);
  }
}

const OUTCOME_OF_CODE: Partial<Record<ErrorCode, OriginOutcome>> = {
  UPSTREAM_TIMEOUT: 'timeout',
  CIRCUIT_OPEN: 'circuit_open',
  OVERLOADED: 'shed',
};

function outcomeOf(error: unknown): OriginOutcome {
  return (error instanceof ProxyError && OUTCOME_OF_CODE[error.code]) || 'error';
}
