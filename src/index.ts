/** group-profile-proxy, a query-coalescing cache for group-profile lookups; importing it has no side effects. */
export {
  CoalescingCache,
  createCoalescingCache,
  type EngineChange,
  type EngineStats,
  type GetOptions,
  type Lookup,
  type LookupOutcome,
} from './engine/engine.js';
export type { CacheEntry, EntryKind } from './engine/entry.js';
export { createKeyedCache, type KeyedCache, type KeyedCacheOptions } from './engine/keyed.js';
export {
  warmStart,
  WARM_START_DEFAULTS,
  type WarmStartOptions,
  type WarmStartResult,
  type WarmTarget,
} from './engine/warm-start.js';
export { MULTI_GET_DEFAULTS } from './http/multi-get.js';
export {
  ExistenceFilter,
  EXISTENCE_FILTER_DEFAULTS,
  type ExistenceFilterOptions,
  type ExistenceFilterStats,
  type ExportIds,
  type IdPage,
} from './penetration/existence-filter.js';
export { MissBudget, MISS_BUDGET_DEFAULTS, type MissBudgetOptions } from './penetration/miss-budget.js';
export { bloomShape, type BloomShape } from './penetration/bloom.js';
export type {
  EngineObserver,
  LoadSettledEvent,
  LeaseEvent,
  ChangeAppliedEvent,
} from './engine/observer.js';
export { ProxyMetrics, type ProxyMetricsOptions, type GaugeSources } from './metrics/metrics.js';
export {
  OriginGuard,
  ORIGIN_GUARD_DEFAULTS,
  type OriginGuardOptions,
  type BreakerState,
} from './resilience/origin-guard.js';
export {
  BatchLoader,
  BATCH_DEFAULTS,
  type BatchLoaderOptions,
  type LoadMany,
  type BatchResult,
} from './origin/batch-loader.js';
export {
  NOT_FOUND,
  ENGINE_DEFAULTS,
  type EngineOptions,
  type Loader,
  type LoadContext,
  type NotFound,
  type ExistenceCheck,
  type OriginBudget,
} from './engine/options.js';
export { ProxyError, isProxyError, toLoaderError, type ErrorCode, type ProxyErrorOptions } from './errors.js';
export { OptionError } from './util/options.js';
export { parseGroupId, DEFAULT_MAX_GROUP_ID } from './ids.js';
export { HttpOrigin, HTTP_ORIGIN_DEFAULTS, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';
export { createGroupProfileCache, type GroupProfileCache, type GroupProfileCacheOptions } from './group-profile.js';
export { groupProfileRoutes, type GroupProfileRoutesOptions, type EngineReader } from './http/routes.js';
export { createProxyApp, type ProxyAppOptions } from './http/app.js';
export { adminRoutes, type AdminRoutesOptions } from './http/admin.js';
export { groupEventRoutes, type EventRoutesOptions } from './http/events.js';
export {
  PushHub,
  PUSH_DEFAULTS,
  type PushHubOptions,
  type PushEvent,
  type PushEventType,
  type PushSink,
  type PushObserver,
  type Subscription,
} from './push/hub.js';
export { startMockBackend, type RunningMockBackend, type StartMockBackendOptions } from './mock-backend/server.js';
export { createMockBackend, type MockBackend, type MockBackendOptions } from './mock-backend/app.js';
export { encodeEntry, encodeError, type EncodedResponse } from './http/respond.js';
export {
  RedisTier,
  REDIS_TIER_DEFAULTS,
  type RedisTierOptions,
  type FeedNotice,
} from './shared-tier/redis/redis-tier.js';
export { feedShardKeys, shardOfKey, type FeedShardKeys } from './shared-tier/redis/feed-keys.js';
export {
  InMemoryTier,
  InMemoryTierStore,
  type InMemoryTierOptions,
  type InMemoryTierStoreOptions,
} from './shared-tier/memory/in-memory-tier.js';
export { ManualClock, SYSTEM_CLOCK, type Clock, type TimerHandle } from './util/clock.js';
export {
  SHARED_TIER_DEFAULTS,
  UNAVAILABLE,
  parseLeaseHint,
  type Change,
  type ChangeKind,
  type FeedChange,
  type FeedResetReason,
  type FeedStatus,
  type LeaseHint,
  type SharedTier,
  type EntryStore,
  type ChangeFeed,
  type HotKeyRecord,
  type FleetBitmaps,
  type FleetBuckets,
  type FillResult,
  type SharedLookup,
  type TierEvent,
  type Unavailable,
} from './shared-tier/contract.js';
export type { InvalidationResult, InvalidateOptions } from './engine/engine.js';
export { startSidecar, type RunningSidecar } from './server/sidecar.js';
export { SETTINGS, configFromEnv, ConfigError, type SidecarConfig } from './server/config.js';
