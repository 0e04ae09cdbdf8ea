import type { TestProject } from 'vitest/node';
import { startRedisCluster, startRedisServer } from './helpers/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterNodes: string[];
  }
}

/** One standalone redis-server and one 3-master Redis Cluster on loopback, shared by the suites that need them. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const standalone = await startRedisServer();
  const cluster = await startRedisCluster(3);
  project.provide('redisUrl', standalone.url);
  project.provide('redisClusterNodes', cluster.nodes);
  return async () => {
    await standalone.stop();
    await cluster.stop();
  };
}
