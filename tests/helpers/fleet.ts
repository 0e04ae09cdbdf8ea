import { randomBytes } from 'node:crypto';
import { CoalescingCache } from '../../src/engine/engine.js';
import { RedisTier, type RedisTierOptions } from '../../src/shared-tier/redis/redis-tier.js';
import { HttpOrigin, type GroupProfile } from '../../src/origin/http-origin.js';
import {
  startMockBackend,
  type RunningMockBackend,
  type StartMockBackendOptions,
} from '../../src/mock-backend/server.js';
import type { EngineOptions } from '../../src/engine/options.js';

export interface Instance {
  engine: CoalescingCache<GroupProfile>;
  tier: RedisTier;
  origin: HttpOrigin;
}

export interface Fleet {
  backend: RunningMockBackend;
  instances: Instance[];
  prefix: string;
  /** Adds one more instance on the same Redis and prefix. */
  add(): Instance;
  close(): Promise<void>;
}

/** A unique key prefix, so tests sharing one Redis never see each other's keys. */
export function uniquePrefix(): string {
  return `t${randomBytes(4).toString('hex')}:`;
}

/** `count` proxy engines (each with its own upstream pool and Redis connections) sharing one Redis and one mock backend. */
export async function startFleet(
  count: number,
  redis: Pick<RedisTierOptions, 'url' | 'clusterNodes'>,
  options: {
    backend?: StartMockBackendOptions;
    tier?: Partial<RedisTierOptions>;
    engine?: Partial<EngineOptions<GroupProfile>>;
  } = {},
): Promise<Fleet> {
  const backend = await startMockBackend({ latencyMs: 100, latencyJitterMs: 0, ...options.backend });
  const prefix = uniquePrefix();
  const instances: Instance[] = [];
  const add = (): Instance => {
    // One test process plays a whole fleet on 2 cores, so Redis replies can lag well past the
    // production default of 50 ms; a generous deadline keeps the counts deterministic.
    const tier = new RedisTier({ ...redis, prefix, commandTimeoutMs: 2000, ...options.tier });
    const origin = new HttpOrigin({ url: backend.url });
    const engine = new CoalescingCache<GroupProfile>({ load: origin.load, l2: tier, ...options.engine });
    const instance = { engine, tier, origin };
    instances.push(instance);
    return instance;
  };
  for (let i = 0; i < count; i++) add();
  // The engines subscribed in their constructors; their feed readers start at the streams' ends.
  await Promise.all(
    instances.map(async ({ tier }) => {
      await waitUntilHealthy(tier);
      await tier.whenFeedReady();
    }),
  );
  return {
    backend,
    instances,
    prefix,
    add,
    async close() {
      for (const { engine, tier, origin } of instances) {
        await engine.close();
        await tier.close();
        await origin.close();
      }
      await backend.close();
    },
  };
}

export async function waitUntilHealthy(tier: RedisTier, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!tier.healthy) {
    if (Date.now() > deadline) throw new Error('Redis tier did not become healthy');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
