/**
 * group-profile-proxy: a query-coalescing cache for group-profile lookups.
 * Importing this module has no side effects.
 */
export { CoalescingCache, createCoalescingCache, type GetOptions, type Lookup, type LookupOutcome } from './engine/engine.js';
export { type CacheEntry, type EntryKind } from './engine/entry.js';
export { NOT_FOUND, ENGINE_DEFAULTS, type EngineOptions, type Loader, type LoadContext, type NotFound } from './engine/options.js';
export { ProxyError, isProxyError, type ErrorCode } from './errors.js';
export { OptionError } from './util/options.js';
export { parseGroupId, DEFAULT_MAX_GROUP_ID } from './ids.js';
export { HttpOrigin, HTTP_ORIGIN_DEFAULTS, type GroupProfile, type HttpOriginOptions } from './origin/http-origin.js';
export { createGroupProfileCache, type GroupProfileCache, type GroupProfileCacheOptions } from './group-profile.js';
export { groupProfileRoutes, type GroupProfileRoutesOptions, type EngineReader } from './http/routes.js';
export { createProxyApp, type ProxyAppOptions } from './http/app.js';
export { encodeEntry, encodeError, type EncodedResponse } from './http/respond.js';
export { RedisTier, REDIS_TIER_DEFAULTS, type RedisTierOptions, type BusMessage } from './l2/redis-tier.js';
export { type InvalidationResult } from './engine/engine.js';
export { startSidecar, type RunningSidecar } from './server/sidecar.js';
export { SETTINGS, configFromEnv, ConfigError, type SidecarConfig } from './server/config.js';
