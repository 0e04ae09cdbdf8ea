import { CoalescingCache } from './engine/engine.js';
import type { EngineOptions } from './engine/options.js';
import { HttpOrigin, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';
import { OriginGuard, type OriginGuardOptions } from './resilience/origin-guard.js';

export interface GroupProfileCacheOptions extends Omit<EngineOptions<GroupProfile>, 'load'> {
  /** The group-profile service. Required. */
  upstream: HttpOriginOptions;
  /** Circuit breaker and concurrency bound around every upstream call. Defaults: see OriginGuardOptions. */
  guard?: OriginGuardOptions;
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
  const { upstream, guard: guardOptions, ...engineOptions } = options;
  const origin = new HttpOrigin(upstream);
  const guard = new OriginGuard(guardOptions);
  const engine = new CoalescingCache<GroupProfile>({ ...engineOptions, load: (id, context) => guard.run(() => origin.load(id, context)) });
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
