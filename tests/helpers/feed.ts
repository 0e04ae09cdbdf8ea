import { Cluster, Redis } from 'ioredis';
import type { RedisTier } from '../../src/shared-tier/redis/redis-tier.js';

/** A raw ioredis client on the test Redis (standalone URL or Cluster seeds), for what the proxy never does. */
export function rawRedis(target: { url: string } | { clusterNodes: readonly string[] }): Redis | Cluster {
  return 'url' in target
    ? new Redis(target.url)
    : new Cluster(target.clusterNodes.map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) })));
}

/**
 * CLIENT KILL of the feed reader connections of `tier` (found by connection name), on every master
 * or only on the one serving `slot`. Returns how many were killed (0 while they are reconnecting).
 */
export async function killFeedConnections(raw: Redis | Cluster, tier: RedisTier, slot?: number): Promise<number> {
  let nodes: Redis[] = raw instanceof Cluster ? raw.nodes('master') : [raw];
  if (raw instanceof Cluster && slot !== undefined) {
    const owner = raw.slots[slot]?.[0];
    nodes = nodes.filter((node) => `${node.options.host}:${node.options.port}` === owner);
  }
  let killed = 0;
  for (const node of nodes) {
    const list = (await node.client('LIST')) as string;
    for (const line of list.split('\n')) {
      if (!line.includes(`name=gpp-feed:${tier.instanceId}`)) continue;
      const id = /(?:^| )id=(\d+)/.exec(line)?.[1];
      if (id !== undefined) killed += Number(await node.client('KILL', 'ID', id));
    }
  }
  return killed;
}
