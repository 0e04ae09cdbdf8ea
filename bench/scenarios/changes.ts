import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { CoalescingCache } from '../../src/engine/engine.js';
import { RedisTier } from '../../src/shared-tier/redis/redis-tier.js';
import { HttpOrigin, type GroupProfile } from '../../src/origin/http-origin.js';
import { startMockBackend } from '../../src/mock-backend/server.js';
import { UNAVAILABLE } from '../../src/shared-tier/contract.js';
import { startRedis } from '../lib/redis.js';
import type { Row } from '../lib/report.js';

export interface ChangesOptions {
  /** Changes appended for the append-rate measurement. */
  appends: number;
  /** Appends in flight at once from the one producer. */
  inFlight: number;
  /** Reader processes for the propagation measurement. */
  instances: number;
  /** Changes appended (paced) for the propagation measurement. */
  propagated: number;
  /** Seconds of changes and reads for the stale-read measurement. */
  seconds: number;
  /** Forced disconnects of the reading instance's feed connection during it. */
  kills: number;
}

export const CHANGES_DEFAULTS: ChangesOptions = {
  appends: 20_000,
  inFlight: 256,
  instances: 4,
  propagated: 2000,
  seconds: 10,
  kills: 20,
};

const WORKER = fileURLToPath(new URL('../lib/feed-worker.ts', import.meta.url));

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * The change feed on a loopback redis-server: (1) how fast one producer
 * appends, (2) append → applied latency on N reader processes, (3) stale
 * reads while the reading instance's feed connection is killed again and
 * again, against FEED_MAX_LAG_MS, and after it reconnected.
 */
export async function changes(options: Partial<ChangesOptions> = {}): Promise<Row[]> {
  const o = { ...CHANGES_DEFAULTS, ...options };
  const redis = await startRedis();
  const lines: string[] = ['| measurement | result | target |', '| --- | --- | --- |'];
  try {
    // 1. Append rate.
    const producer = new RedisTier({ url: redis.url, prefix: 'bench-rate:', commandTimeoutMs: 2000 });
    while (!producer.healthy) await new Promise((resolve) => setTimeout(resolve, 10));
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: o.inFlight }, async () => {
        while (next < o.appends) {
          const id = String(1 + (next++ % 100_000));
          if ((await producer.appendChange({ ids: [id], kind: 'changed' })) === UNAVAILABLE)
            throw new Error('Redis did not acknowledge an append');
        }
      }),
    );
    const rate = o.appends / ((performance.now() - started) / 1000);
    await producer.close();
    lines.push(
      `| append rate, one producer, ${o.inFlight} in flight | ${Math.round(rate).toLocaleString('en')} changes/s | ≥ 10,000/s |`,
    );

    // 2. Propagation on N reader processes.
    const prefix = 'bench-propagation:';
    const workers = Array.from({ length: o.instances }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
        env: { ...process.env, REDIS_URL: redis.url, REDIS_PREFIX: prefix, EXPECT: String(o.propagated) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const output = createInterface({ input: child.stdout! });
      const ready = new Promise<void>((resolve) => output.on('line', (line) => line === 'ready' && resolve()));
      const result = new Promise<number[]>((resolve) =>
        output.on(
          'line',
          (line) => line.startsWith('{') && resolve((JSON.parse(line) as { latencies: number[] }).latencies),
        ),
      );
      return { child, ready, result };
    });
    await Promise.all(workers.map((worker) => worker.ready));
    // The producer is a proxy instance too (POST /admin/invalidate does this): it deletes the shared
    // copies, appends, and the readers evict their own.
    const appenderTier = new RedisTier({ url: redis.url, prefix, commandTimeoutMs: 2000 });
    const appender = new CoalescingCache({ load: async (key) => ({ id: key }), l2: appenderTier });
    while (!appenderTier.healthy) await new Promise((resolve) => setTimeout(resolve, 10));
    for (let i = 0; i < o.propagated; i++) {
      await appender.invalidate(String(1 + (i % 1000)));
      if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5)); // ~1000-2000 changes/s, not a backlog
    }
    const all = (await Promise.all(workers.map((worker) => worker.result))).flat().sort((a, b) => a - b);
    await appender.close();
    await appenderTier.close();
    lines.push(
      `| propagation append → applied, ${o.instances} instances (processes), ${o.propagated} changes each | p50 ${quantile(all, 0.5)} ms, p99 ${quantile(all, 0.99)} ms, max ${all.at(-1)} ms | p99 ≤ 20 ms |`,
    );

    // 3. Stale reads while the victim's feed connection is killed, and after.
    lines.push(...(await staleReads(redis.url, o)));
  } finally {
    redis.stop();
  }
  console.log(`\n### changes\n\n${lines.join('\n')}\n`);
  return [];
}

async function staleReads(url: string, o: ChangesOptions): Promise<string[]> {
  const backend = await startMockBackend({ port: 0, host: '127.0.0.1', latencyMs: 0, latencyJitterMs: 0 });
  const prefix = 'bench-stale:';
  const maxLagMs = 2000;
  const make = () => {
    const tier = new RedisTier({ url, prefix, commandTimeoutMs: 1000 });
    const origin = new HttpOrigin({ url: backend.url });
    const engine = new CoalescingCache<GroupProfile>({ load: origin.load, l2: tier, feedMaxLagMs: maxLagMs });
    return { tier, origin, engine };
  };
  const producer = make();
  const victim = make();
  const raw = new Redis(url);
  const ids = Array.from({ length: 200 }, (_, i) => 1 + i);
  /** When each id's current revision was made obsolete... per revision: when revision r stopped being current. */
  const obsoleteAt = new Map<string, number>();
  let staleReads = 0;
  /** Stale by more than ordinary propagation (20 ms), and by more than the lag allowed. */
  let staleBeyondPropagation = 0;
  let staleBeyondMaxLag = 0;
  let reads = 0;
  let oldest = 0;
  let kills = 0;
  try {
    while (!producer.tier.healthy || !victim.tier.healthy) await new Promise((resolve) => setTimeout(resolve, 10));
    await victim.tier.whenFeedReady();
    for (const id of ids) await victim.engine.get(String(id));
    const until = Date.now() + o.seconds * 1000;
    const killEvery = (o.seconds * 1000) / o.kills;
    let nextKill = Date.now() + killEvery / 2;
    let i = 0;
    while (Date.now() < until) {
      // 20 changes, then 200 reads at the victim.
      for (let j = 0; j < 20; j++, i++) {
        const id = ids[(i * 7) % ids.length]!;
        obsoleteAt.set(`${id}@${backend.backend.revisionOf(id)}`, Date.now());
        backend.backend.touch(id);
        await producer.engine.invalidate(String(id));
      }
      for (const id of ids) {
        const revision = (await victim.engine.get(String(id))).entry.value?.revision ?? -1;
        reads++;
        const since = obsoleteAt.get(`${id}@${revision}`);
        if (revision !== backend.backend.revisionOf(id) && since !== undefined) {
          const age = Date.now() - since;
          staleReads++;
          if (age > 20) staleBeyondPropagation++;
          if (age > maxLagMs) staleBeyondMaxLag++;
          oldest = Math.max(oldest, age);
        }
      }
      // The victim's reader shares this process: give it its turn, as a real proxy's loop would.
      await new Promise((resolve) => setTimeout(resolve, 2));
      if (Date.now() >= nextKill) {
        nextKill += killEvery;
        const list = (await raw.client('LIST')) as string;
        for (const line of list.split('\n')) {
          const id = line.includes(`name=gpp-feed:${victim.tier.instanceId}`)
            ? /(?:^| )id=(\d+)/.exec(line)?.[1]
            : undefined;
          if (id !== undefined) kills += Number(await raw.client('KILL', 'ID', id));
        }
      }
    }
    // Once reconnected and caught up: every id current.
    const deadline = Date.now() + 10_000;
    while ((victim.tier.feedStatus().lagEntries > 0 || victim.tier.feedLagMs() > 1500) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    let staleAfter = 0;
    for (const id of ids)
      if ((await victim.engine.get(String(id))).entry.value?.revision !== backend.backend.revisionOf(id)) staleAfter++;
    return [
      `| reads at the instance whose feed connection was killed ${kills} times in ${o.seconds} s (${i} changes, ${reads} reads) | ${staleReads} behind the backend, ${staleBeyondPropagation} of them by more than 20 ms (reconnecting), ${staleBeyondMaxLag} by more than FEED_MAX_LAG_MS; the oldest ${oldest} ms behind | none older than FEED_MAX_LAG_MS (${maxLagMs} ms) |`,
      `| stale reads once reconnected (${ids.length} ids) | ${staleAfter} | 0 |`,
    ];
  } finally {
    raw.disconnect();
    for (const instance of [producer, victim]) {
      await instance.engine.close();
      await instance.tier.close();
      await instance.origin.close();
    }
    await backend.close();
  }
}
