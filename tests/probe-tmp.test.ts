import { it } from 'vitest';
import { RedisTier } from '../src/l2/redis-tier.js';
import { startRedisServer } from './helpers/redis-server.js';
it('probe', async () => {
  const server = await startRedisServer(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']);
  await server.stop();
  const t0 = Date.now();
  const tier = new RedisTier({ clusterNodes: [`127.0.0.1:${server.port}`], onHealthChange: (h, e) => console.log(Date.now() - t0, 'health', h, e?.message) });
  await new Promise((r) => setTimeout(r, 300));
  await server.start();
  console.log(Date.now() - t0, 'started', server.cli('CLUSTER', 'ADDSLOTSRANGE', '0', '16383'));
  for (let i = 0; i < 100 && !tier.healthy; i++) { await new Promise((r) => setTimeout(r, 100)); if (i % 5 === 0) console.log(Date.now() - t0, server.cli('CLUSTER', 'INFO').split('\n')[0]); }
  console.log(Date.now() - t0, 'healthy', tier.healthy);
  await tier.close(); await server.stop();
}, 20000);
