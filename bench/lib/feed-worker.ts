/**
 * One proxy instance for the `changes` benchmark, in a process of its own: an
 * engine over a RedisTier reading the feed. Prints `ready` once its readers
 * have positions, then, after `EXPECT` changes from other producers, one JSON
 * line with each change's propagation latency (append → applied), ms.
 */
import { CoalescingCache } from '../../src/engine/engine.js';
import { RedisTier } from '../../src/shared-tier/redis/redis-tier.js';

const expected = Number(process.env.EXPECT);
const latencies: number[] = [];
const tier = new RedisTier({ url: process.env.REDIS_URL!, prefix: process.env.REDIS_PREFIX!, commandTimeoutMs: 1000 });
const engine = new CoalescingCache({
  load: async (key) => ({ id: key }),
  l2: tier,
  observer: {
    changeApplied: ({ change, appliedAt, local }) => {
      if (local) return;
      latencies.push(appliedAt - change.appendedAt);
      if (latencies.length === expected) {
        process.stdout.write(`${JSON.stringify({ latencies })}\n`);
        void engine
          .close()
          .then(() => tier.close())
          .then(() => process.exit(0));
      }
    },
  },
});
await tier.whenFeedReady();
process.stdout.write('ready\n');
