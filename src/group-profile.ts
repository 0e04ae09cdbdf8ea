import { CoalescingCache } from './engine/engine.js';
import type { EngineOptions } from './engine/options.js';
import { HttpOrigin, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';

export interface GroupProfileCacheOptions extends Omit<EngineOptions<GroupProfile>, 'load'> {
  /** The group-profile service. Required. */
  upstream: HttpOriginOptions;
}

/** The engine preset for group profiles: an HTTP origin behind the coalescing cache. */
export interface GroupProfileCache {
  readonly engine: CoalescingCache<GroupProfile>;
  readonly origin: HttpOrigin;
  /** Closes the engine, then the upstream connections. */
  close(): Promise<void>;
}

export function createGroupProfileCache(options: GroupProfileCacheOptions): GroupProfileCache {
  const { upstream, ...engineOptions } = options;
  const origin = new HttpOrigin(upstream);
  const engine = new CoalescingCache<GroupProfile>({ ...engineOptions, load: origin.load });
  return {
    engine,
    origin,
    async close() {
      await engine.close();
      await origin.close();
    },
  };
}
