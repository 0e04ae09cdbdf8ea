import { afterEach, describe, expect, inject, it } from 'vitest';
import type { ChangeAppliedEvent } from '../src/engine/observer.js';
import type { FeedResetReason } from '../src/shared-tier/contract.js';
import { killFeedConnections, rawRedis } from './helpers/feed.js';
import { startFleet, type Fleet, type Instance } from './helpers/fleet.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { until } from './helpers/until.js';

/**
 * The change feed end to end, on a real redis-server and a real 3-master
 * Cluster: proxies' engines sharing Redis and one mock backend whose profiles
 * carry a revision that each change bumps. "Stale" below means an instance
 * answering with an older revision than the backend's.
 */
const targets = {
  standalone: () => ({ url: inject('redisUrl') }),
  cluster: () => ({ clusterNodes: inject('redisClusterNodes') }),
};

let fleet: Fleet | undefined;
let ownRedis: RedisServer | undefined;
const raws: { disconnect(): void }[] = [];
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
  await ownRedis?.stop();
  ownRedis = undefined;
  for (const raw of raws.splice(0)) raw.disconnect();
});

/** Changes applied from the feed (not by their producer), and L1 flushes, over the whole fleet. */
function recorder() {
  const applied: ChangeAppliedEvent[] = [];
  const resets: FeedResetReason[] = [];
  return {
    applied,
    resets,
    observer: {
      changeApplied: (event: ChangeAppliedEvent) => void (event.local || applied.push(event)),
      feedReset: (reason: FeedResetReason) => void resets.push(reason),
    },
  };
}

async function expectLatestEverywhere(instances: Instance[], ids: number[]): Promise<void> {
  const backend = fleet!.backend.backend;
  let stale = 0;
  for (const { engine } of instances) {
    for (const id of ids) if ((await engine.get(String(id))).entry.value?.revision !== backend.revisionOf(id)) stale++;
  }
  expect(stale, 'answers older than the backend').toBe(0);
}

describe.each([
  ['standalone', 10_000, 1000, 50],
  ['cluster', 2000, 300, 10],
] as const)('changes that are never lost (Redis %s)', (kind, changes, distinctIds, cuts) => {
  it(`applies ${changes} changes over ${distinctIds} ids on the other proxy while its feed connection is killed ${cuts} times: 0 stale`, async () => {
    const seen = recorder();
    fleet = await startFleet(2, targets[kind](), { backend: { latencyMs: 0 }, engine: { observer: seen.observer } });
    const [producer, victim] = fleet.instances;
    const backend = fleet.backend.backend;
    const raw = rawRedis(targets[kind]());
    raws.push(raw);
    const ids = Array.from({ length: distinctIds }, (_, i) => 1 + i);
    for (const id of ids) await victim!.engine.get(String(id)); // every id in the victim's L1
    const perCut = changes / cuts;
    const batch = 50;
    let killed = 0;
    for (let done = 0; done < changes; done += batch) {
      if (done % perCut === 0) {
        // On a Cluster only the connection to one shard's node: the other shards read on.
        const slot = kind === 'cluster' ? victim!.tier.feedKeys[(done / perCut) % 3]!.slot : undefined;
        let cut = 0;
        await until(
          async () => {
            cut = await killFeedConnections(raw, victim!.tier, slot);
            return cut > 0;
          },
          'a live feed connection to kill',
          10_000,
        );
        killed += cut;
      }
      await Promise.all(
        Array.from({ length: batch }, async (_, j) => {
          const id = ids[(done + j) % ids.length]!;
          backend.touch(id);
          expect((await producer!.engine.invalidate(String(id))).fleet).toBe(true);
        }),
      );
      // The victim keeps answering (and refilling its L1) while changes pour in.
      await Promise.all(
        Array.from({ length: 10 }, (_, j) => victim!.engine.get(String(ids[(done * 7 + j) % ids.length]!))),
      );
    }
    await until(() => seen.applied.length >= changes, `all ${changes} changes applied at the victim`, 60_000);
    expect(seen.applied).toHaveLength(changes); // each exactly once
    expect(killed).toBeGreaterThanOrEqual(cuts);
    expect(victim!.tier.feedStatus().resumes).toBeGreaterThanOrEqual(1);
    expect(seen.applied.some((event) => event.change.replayed)).toBe(true);
    expect(seen.resets).toEqual([]);
    if (kind === 'cluster')
      expect(new Set(seen.applied.map((event) => event.change.shard))).toEqual(new Set([0, 1, 2]));
    await expectLatestEverywhere(fleet.instances, ids);
  }, 120_000);

  it('applies one invalidation through any of 4 instances on all 4, with one origin call for the fleet', async () => {
    const seen = recorder();
    fleet = await startFleet(4, targets[kind](), { backend: { latencyMs: 0 }, engine: { observer: seen.observer } });
    const backend = fleet.backend.backend;
    for (const { engine } of fleet.instances) await engine.get('77');
    for (let through = 0; through < 4; through++) {
      const callsBefore = backend.stats().calls;
      backend.touch(77);
      const appliedBefore = seen.applied.length;
      expect(await fleet.instances[through]!.engine.invalidate('77')).toMatchObject({
        fleet: true,
        positions: [expect.objectContaining({ position: expect.stringMatching(/^\d+-\d+$/) })],
      });
      await until(() => seen.applied.length === appliedBefore + 3, 'the change on the 3 others', 10_000);
      expect(fleet.instances.every(({ engine }) => engine.peek('77') === undefined)).toBe(true);
      await expectLatestEverywhere(fleet.instances, [77]);
      expect(backend.stats().calls - callsBefore).toBe(1);
    }
  });
});

describe('a feed position that cannot be replayed', () => {
  it('detects Redis restarted empty by the epoch and flushes L1', async () => {
    ownRedis = await startRedisServer();
    const seen = recorder();
    fleet = await startFleet(
      2,
      { url: ownRedis.url },
      { backend: { latencyMs: 0 }, engine: { observer: seen.observer } },
    );
    const [, b] = fleet.instances;
    for (const id of ['1', '2', '3']) await b!.engine.get(id);
    expect(b!.engine.stats().l1Entries).toBe(3);
    await ownRedis.stop();
    await ownRedis.start();
    await until(() => seen.resets.length === 2, 'both instances reset', 20_000);
    expect(seen.resets).toEqual(['epoch', 'epoch']);
    expect(b!.engine.stats().l1Entries).toBe(0);
    // And the new feed carries changes again.
    await until(() => fleet!.instances.every(({ tier }) => tier.healthy), 'Redis back', 10_000);
    await b!.engine.get('1');
    fleet.backend.backend.touch(1);
    await fleet.instances[0]!.engine.invalidate('1');
    await until(() => b!.engine.peek('1') === undefined, 'the change after the restart at b', 10_000);
  });
});

describe('a feed trimmed past an instance', () => {
  it('flushes the L1 of an instance whose position was trimmed away before it could read on, and refills it from L2', async () => {
    const seen = recorder();
    fleet = await startFleet(2, targets.standalone(), {
      backend: { latencyMs: 0 },
      engine: { observer: seen.observer },
    });
    const [a, b] = fleet.instances;
    for (const id of ['1', '2', '3']) {
      await a!.engine.get(id);
      await b!.engine.get(id);
    }
    const raw = rawRedis(targets.standalone());
    raws.push(raw);
    // More changes than the retention arrive at once, faster than b reads: one transaction.
    const stream = b!.tier.feedKeys[0]!.changes;
    const burst = raw.multi();
    for (let i = 0; i < 200; i++)
      burst.xadd(stream, '*', 'kind', 'changed', 'ids', String(500 + i), 'producer', 'bulk-import');
    burst.xtrim(stream, 'MAXLEN', 10);
    await burst.exec();
    await until(() => seen.resets.length === 2, 'both instances reset', 10_000);
    expect(seen.resets).toEqual(['trimmed', 'trimmed']);
    expect(b!.engine.stats().l1Entries).toBe(0);
    const calls = fleet.backend.backend.stats().calls;
    for (const id of ['1', '2', '3']) expect((await b!.engine.get(id)).outcome).toBe('l2-hit');
    expect(fleet.backend.backend.stats().calls).toBe(calls);
  });
});

describe('bad entries in the feed', () => {
  it('skips and counts them, applies the good ids beside bad ones, and reads on', async () => {
    const seen = recorder();
    fleet = await startFleet(1, targets.standalone(), {
      backend: { latencyMs: 0 },
      engine: { observer: seen.observer },
    });
    const [a] = fleet.instances;
    const raw = rawRedis(targets.standalone());
    raws.push(raw);
    const stream = a!.tier.feedKeys[0]!.changes;
    for (const id of ['7', '8']) await a!.engine.get(id);
    const entries: string[][] = [
      ['kind', 'renamed', 'ids', '7'],
      ['kind', 'changed', 'ids', '042,abc,-1'],
      ['kind', 'changed'],
      ['kind', 'changed', 'ids', '7'.repeat(70_000)],
      ['kind', 'changed', 'ids', Array.from({ length: 1001 }, (_, i) => String(i + 1)).join(',')],
      ['kind', 'changed', 'ids', '7,not-an-id'],
      ['kind', 'deleted', 'ids', '8', 'version', '2026-12-02T00:00:00Z', 'producer', 'cdc-pipeline'],
    ];
    for (const fields of entries) await raw.xadd(stream, '*', ...fields);
    await until(() => seen.applied.length === 2, 'the two good entries applied', 10_000);
    expect(seen.applied.map((event) => [event.change.ids, event.change.kind, event.change.producer])).toEqual([
      [['7'], 'changed', ''],
      [['8'], 'deleted', 'cdc-pipeline'],
    ]);
    expect(seen.applied[1]!.change.version).toBe('2026-12-02T00:00:00Z');
    expect(a!.tier.feedStatus().skipped).toEqual({ unknown_kind: 1, bad_ids: 4, garbage: 1 });
    expect(a!.engine.peek('7')).toBeUndefined();
    expect(a!.engine.peek('8')).toBeUndefined();
    // Still reading.
    await a!.engine.get('9');
    await raw.xadd(stream, '*', 'kind', 'changed', 'ids', '9');
    await until(() => seen.applied.length === 3, 'a later entry', 10_000);
    expect(a!.tier.feedStatus().lagEntries).toBe(0);
  });
});
