import { parseGroupId } from '../ids.js';
import { feedShardKeys } from '../shared-tier/redis/feed-keys.js';
import { defaultFeedShards } from '../shared-tier/redis/redis-tier-options.js';
import { UNAVAILABLE } from '../shared-tier/contract.js';
import { redisTierOptions, redisConfigured } from './redis-options.js';
import type { SidecarConfig } from './config.js';
import type { CliCommand } from './cli-args.js';

type Output = { write(text: string): unknown };
export type FeedCommand = Extract<CliCommand, { run: 'feed-keys' | 'invalidate' }>;

/** How long the command waits for Redis to answer before giving up, ms. */
const CONNECT_WAIT_MS = 5000;

/** The operator's side of the change feed, with the proxies' own configuration; resolves to the exit code. */
export async function runFeedCommand(
  config: SidecarConfig,
  command: FeedCommand,
  io: { out: Output; err: Output },
): Promise<number> {
  if (!redisConfigured(config)) {
    io.err.write(
      'group-profile-proxy: the change feed lives in Redis: set REDIS_URL or REDIS_CLUSTER_NODES as the proxies have it (without Redis, invalidation stays local to one instance: POST /admin/invalidate on it)\n',
    );
    return 2;
  }
  if (command.run === 'feed-keys') {
    const shards = config.feedShards ?? defaultFeedShards(config.redisClusterNodes !== undefined);
    for (const keys of feedShardKeys(config.redisPrefix, shards)) io.out.write(`${keys.shard}\t${keys.changes}\n`);
    return 0;
  }
  const invalid = command.ids.find((id) => parseGroupId(id, config.maxGroupId) === undefined);
  if (invalid !== undefined) {
    io.err.write(
      `group-profile-proxy: invalid group id ${JSON.stringify(invalid)}: expected a canonical decimal id in [1, ${config.maxGroupId}]\n`,
    );
    return 2;
  }
  const { RedisTier } = await import('../shared-tier/redis/redis-tier.js');
  const tier = new RedisTier({
    ...redisTierOptions(config),
    commandTimeoutMs: Math.max(config.redisCommandTimeoutMs, 1000),
  });
  try {
    // Refused credentials or database: a configuration error (exit 1) at once, not a retry.
    await tier.verifyServer(CONNECT_WAIT_MS);
    const deadline = Date.now() + CONNECT_WAIT_MS;
    while (!tier.healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const parts = tier.healthy
      ? await tier.appendChange({ ids: command.ids, kind: command.kind, version: command.version })
      : UNAVAILABLE;
    if (parts === UNAVAILABLE) {
      io.err.write(
        'group-profile-proxy: Redis did not acknowledge the change (unreachable?): nothing was appended, retry\n',
      );
      return 1;
    }
    const appended = parts.map(({ shard, position, ids, kind, version }) => ({ shard, position, ids, kind, version }));
    io.out.write(`${JSON.stringify({ appended })}\n`);
    return 0;
  } finally {
    await tier.close();
  }
}
