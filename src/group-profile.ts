import { CoalescingCache } from './engine/engine.js';
import type { EngineOptions, Loader } from './engine/options.js';
import { HttpOrigin, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';
import { OriginGuard, type OriginGuardOptions } from './resilience/origin-guard.js';
import { BatchLoader } from './origin/batch-loader.js';

export interface GroupProfileCacheOptions extends Omit<EngineOptions<GroupProfile>, 'load'> {
  /** The group-profile service. Required. */
  upstream: HttpOriginOptions;
  /** Circuit breaker and concurrency bound around every upstream call. Defaults: see OriginGuardOptions. */
  guard?: OriginGuardOptions;
  /**
   * Batch misses of distinct ids into `GET {url}/groups?ids=...` calls. Default: off (one call per id).
   * A batch counts once against the concurrency bound and the breaker.
   */
  batch?: { windowMs?: number; maxIds?: number };
}

/** The engine preset for group profiles: an HTTP origin behind the coalescing cache. */
export interface GroupProfileCache {
  readonly engine: CoalescingCache<GroupProfile>;
  readonly origin: HttpOrigin;
  readonly guard: OriginGuard;
  /** Closes the engine, then the upstream connections. */
  close(): Promise<void>;
}

export function createGroupProfileCache(options: GroupProfileCacheOptions): GroupProfileCache {
  const { upstream, guard: guardOptions, batch, ...engineOptions } = options;
  const origin = new HttpOrigin(upstream);
  const guard = new OriginGuard(guardOptions);
  const load: Loader<GroupProfile> =
    batch === undefined
      ? (id, context) => guard.run(() => origin.load(id, context))
      : new BatchLoader<GroupProfile>({
          loadMany: (ids, context) => guard.run(() => origin.loadMany(ids, context)),
          windowMs: batch.windowMs,
          maxKeys: batch.maxIds,
        }).load;
  const engine = new CoalescingCache<GroupProfile>({ ...engineOptions, load });
  return {
    engine,
    origin,
    guard,
    async close() {
      await engine.close();
      guard.close();
      await origin.close();
    },
  };
}
