import type { RedisTierOptions } from '../shared-tier/redis/redis-tier.js';
import type { SidecarConfig } from './config.js';

export function redisConfigured(settings: SidecarConfig): boolean {
  return settings.redisUrl !== undefined || settings.redisClusterNodes !== undefined;
}

/** The RedisTier options the settings give, shared by the sidecar and the feed command. */
export function redisTierOptions(settings: SidecarConfig): RedisTierOptions {
  return {
    url: settings.redisUrl,
    clusterNodes: settings.redisClusterNodes?.split(',').map((node) => node.trim()),
    username: settings.redisUsername,
    password: settings.redisPassword,
    prefix: settings.redisPrefix,
    commandTimeoutMs: settings.redisCommandTimeoutMs,
    leaseTtlMs: settings.leaseTtlMs,
    leaseWaitMs: settings.leaseWaitMs,
    feedShards: settings.feedShards,
    feedMaxLen: settings.feedMaxLen,
    feedBlockMs: Math.max(10, Math.min(1000, Math.floor(settings.feedMaxLagMs / 2))),
  };
}
