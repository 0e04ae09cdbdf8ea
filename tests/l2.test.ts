import { Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { decodeEnvelope } from '../src/engine/envelope.js';
import { UNAVAILABLE } from '../src/shared-tier/redis/redis-tier.js';
import { decodeHint } from '../src/shared-tier/redis/feed-entries.js';
import { ManualClock } from '../src/util/clock.js';
import { startFleet, waitUntilHealthy, type Fleet } from './helpers/fleet.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';

const targets = {
  standalone: () => ({ url: inject('redisUrl') }),
  cluster: () => ({ clusterNodes: inject('redisClusterNodes') }),
};

let fleet: Fleet | undefined;
let ownRedis: RedisServer | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
  await ownRedis?.stop();
  ownRedis = undefined;
});

function rawClient(kind: keyof typeof targets): Redis | Cluster {
  return kind === 'standalone'
    ? new Redis(inject('redisUrl'))
    : new Cluster(inject('redisClusterNodes').map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })));
}

describe.each(['standalone', 'cluster'] as const)('fleet-wide coalescing on Redis %s', (kind) => {
  it('turns 1000 concurrent lookups spread over 4 instances into exactly 1 origin call', async () => {
    fleet = await startFleet(4, targets[kind](), { backend: { latencyMs: 200 } });
    const lookups = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => fleet!.instances[i % 4]!.engine.get('42')),
    );
    expect(fleet.backend.backend.stats().calls).toBe(1);
    expect(new Set(lookups.map((l) => l.entry.body.toString())).size).toBe(1);
    const outcomes = lookups.map((l) => l.outcome);
    expect(outcomes.filter((o) => o === 'miss')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'collapsed')).toHaveLength(999);
  });

  it('spreads 1000 lookups over 50 ids and 4 instances into exactly 50 origin calls', async () => {
    fleet = await startFleet(4, targets[kind](), { backend: { latencyMs: 100 } });
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => fleet!.instances[i % 4]!.engine.get(String(1000 + (i % 50)))),
    );
    const stats = fleet.backend.backend.stats();
    expect(stats.calls).toBe(50);
    expect(Object.values(stats.byId).every((n) => n === 1)).toBe(true);
  });

  it('fills L1 from an L2 hit with the remaining freshness, not a new TTL', async () => {
    fleet = await startFleet(2, targets[kind](), { backend: { latencyMs: 0 } });
    const [a, b] = fleet.instances;
    const first = await a!.engine.get('7');
    const second = await b!.engine.get('7');
    expect(second.outcome).toBe('l2-hit');
    expect(second.entry.freshUntil).toBe(first.entry.freshUntil);
    expect(second.entry.etag).toBe(first.entry.etag);
    expect((await b!.engine.get('7')).outcome).toBe('hit');
    expect(fleet.backend.backend.stats().calls).toBe(1);
  });

  it('shares negative entries through L2', async () => {
    fleet = await startFleet(2, targets[kind](), { backend: { latencyMs: 0, missingIds: [404] } });
    expect((await fleet.instances[0]!.engine.get('404')).entry.kind).toBe('missing');
    const other = await fleet.instances[1]!.engine.get('404');
    expect(other).toMatchObject({ outcome: 'l2-hit', entry: { kind: 'missing' } });
    expect(fleet.backend.backend.stats().calls).toBe(1);
  });

  it("gives waiters on other instances the holder's error, with one origin call", async () => {
    fleet = await startFleet(4, targets[kind](), { backend: { latencyMs: 100 } });
    fleet.backend.backend.setMode('error');
    const settled = await Promise.allSettled(
      Array.from({ length: 400 }, (_, i) => fleet!.instances[i % 4]!.engine.get('9')),
    );
    expect(
      settled.every((s) => s.status === 'rejected' && (s.reason as { code: string }).code === 'UPSTREAM_STATUS'),
    ).toBe(true);
    expect(fleet.backend.backend.stats().calls).toBe(1);
    fleet.backend.backend.setMode('normal');
    expect((await fleet.instances[2]!.engine.get('9')).outcome).toBe('miss');
    expect(fleet.backend.backend.stats().calls).toBe(2);
  });

  it('treats corrupt, truncated or foreign L2 bytes as a miss and overwrites them', async () => {
    fleet = await startFleet(1, targets[kind](), { backend: { latencyMs: 0 } });
    const engine = fleet.instances[0]!.engine;
    const tier = fleet.instances[0]!.tier;
    const redis = rawClient(kind);
    try {
      const good = await engine.get('11');
      const valid = (await tier.readEntryBytes('11')) as Buffer;
      const bad: [string, Buffer][] = [
        ['12', Buffer.from('garbage \u0000\u0001 not an envelope')],
        ['13', valid.subarray(0, valid.length - 10)],
        [
          '14',
          Buffer.concat([
            Buffer.from('{"v":99,"k":"f","s":1,"f":9999999999999,"x":9999999999999,"e":"x"}\n'),
            Buffer.from('{}'),
          ]),
        ],
        ['15', Buffer.from('')],
      ];
      for (const [id, bytes] of bad) await redis.set(`${fleet.prefix}{${id}}:entry`, bytes, 'PX', 60_000);
      for (const [id] of bad) {
        const lookup = await engine.get(id);
        expect(lookup.outcome).toBe('miss');
        expect(lookup.entry.value).toMatchObject({ id: Number(id) });
        const stored = (await tier.readEntryBytes(id)) as Buffer;
        expect(decodeEnvelope(stored)?.etag).toBe(lookup.entry.etag);
      }
      expect(good.entry.kind).toBe('found');
      expect(fleet.backend.backend.stats().calls).toBe(1 + bad.length);
    } finally {
      redis.disconnect();
    }
  });

  it('applies a change the group-profile service appended to the feed itself (plain XADD) on every instance', async () => {
    fleet = await startFleet(3, targets[kind](), { backend: { latencyMs: 0 } });
    for (const { engine } of fleet.instances) expect((await engine.get('21')).entry.value?.revision).toBe(0);
    fleet.backend.backend.touch(21);
    const redis = rawClient(kind);
    try {
      const tier = fleet.instances[0]!.tier;
      await redis.xadd(
        tier.feedKeys[tier.shardOf('21')]!.changes,
        'MAXLEN',
        '~',
        1000,
        '*',
        'kind',
        'changed',
        'ids',
        '21',
        'producer',
        'group-profile-service',
      );
    } finally {
      redis.disconnect();
    }
    await expectEventually(async () => {
      for (const { engine } of fleet!.instances) expect(engine.peek('21')).toBeUndefined();
    });
    for (const { engine } of fleet.instances) expect((await engine.get('21')).entry.value?.revision).toBe(1);
  });
});

describe('stale-while-revalidate across the fleet', () => {
  it('refreshes a stale id once for the whole fleet, through the lease', async () => {
    const clock = new ManualClock(Date.now());
    fleet = await startFleet(3, targets.standalone(), {
      backend: { latencyMs: 50 },
      engine: { ttlMs: 300, ttlJitter: 0, staleTtlMs: 60_000, clock },
    });
    for (const { engine } of fleet.instances) await engine.get('61');
    expect(fleet.backend.backend.stats().calls).toBe(1);
    clock.advance(350);
    const lookups = await Promise.all(Array.from({ length: 300 }, (_, i) => fleet!.instances[i % 3]!.engine.get('61')));
    expect(lookups.every((l) => l.outcome === 'stale')).toBe(true);
    await expectEventually(() => {
      for (const { engine } of fleet!.instances) expect(engine.peek('61')).toBeDefined();
    });
    expect(fleet.backend.backend.stats().calls).toBe(2);
  });
});

describe('invalidation fencing', () => {
  it('never lets a load that began before a change write the old profile back (100 races)', async () => {
    fleet = await startFleet(2, targets.standalone(), { backend: { latencyMs: 40 } });
    const [a, b] = fleet.instances;
    const backend = fleet.backend.backend;
    for (let i = 0; i < 100; i++) {
      const id = String(5000 + i);
      const slow = a!.engine.get(id); // the origin reads revision 0 at arrival, answers 40 ms later
      await expectEventually(() => expect(backend.stats().byId[id]).toBe(1));
      backend.touch(Number(id)); // the group changes: revision 1
      const invalidator = i % 2 === 0 ? a! : b!;
      expect(await invalidator.engine.invalidate([id])).toMatchObject({ fleet: true });
      await slow.catch(() => undefined);
      for (const { engine } of fleet.instances) {
        expect((await engine.get(id)).entry.value?.revision, `race ${i}`).toBe(1);
      }
      const stored = await a!.tier.readEntryBytes(id);
      expect(
        stored === null || stored === UNAVAILABLE
          ? undefined
          : JSON.parse(decodeEnvelope(stored)!.body.toString()).revision,
      ).toBe(1);
    }
    // A newcomer reading only L2 sees the new profiles too.
    const newcomer = fleet.add();
    await waitUntilHealthy(newcomer.tier);
    for (let i = 0; i < 100; i++) expect((await newcomer.engine.get(String(5000 + i))).entry.value?.revision).toBe(1);
  });

  it('fences through Redis alone: a voided lease stops the write-back even before the change is read from the feed (100 races)', async () => {
    fleet = await startFleet(2, targets.standalone(), { backend: { latencyMs: 20 } });
    const [a, b] = fleet.instances;
    const backend = fleet.backend.backend;
    const redis = rawClient('standalone');
    try {
      for (let i = 0; i < 100; i++) {
        const id = String(7000 + i);
        // Gate: the backend holds A's load (its data read at arrival) until the change is in Redis.
        backend.setMode('hang');
        const slow = a!.engine.get(id);
        await expectEventually(() => expect(backend.stats().byId[id]).toBe(1));
        backend.touch(Number(id));
        // What an invalidation does to the shared copies, without the feed entry that would also fence A locally.
        await redis.del(`${fleet.prefix}{${id}}:entry`, `${fleet.prefix}{${id}}:lease`);
        backend.setMode('normal');
        await slow;
        expect((await a!.engine.get(id)).entry.value?.revision, `race ${i} on the loading instance`).toBe(1);
        expect((await b!.engine.get(id)).entry.value?.revision, `race ${i} on another instance`).toBe(1);
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe('lease lifetime', () => {
  it('keeps the lease alive through a load slower than LEASE_TTL_MS: one origin call, cached everywhere', async () => {
    fleet = await startFleet(2, targets.standalone(), { backend: { latencyMs: 400 }, tier: { leaseTtlMs: 100 } });
    const [a, b] = fleet.instances;
    const lookups = await Promise.all(
      Array.from({ length: 100 }, (_, i) => fleet!.instances[i % 2]!.engine.get('8181')),
    );
    expect(lookups.every((l) => l.entry.kind === 'found')).toBe(true);
    expect(fleet.backend.backend.stats().calls).toBe(1);
    expect((await a!.engine.get('8181')).outcome).toBe('hit');
    expect((await b!.engine.get('8181')).outcome).toBe('hit');
    expect(fleet.backend.backend.stats().calls).toBe(1);
  });

  it("closes without waiting out another instance's lease", async () => {
    fleet = await startFleet(2, targets.standalone(), { backend: { latencyMs: 0 }, tier: { leaseWaitMs: 600_000 } });
    const [holder, waiter] = fleet.instances;
    fleet.backend.backend.setMode('hang');
    const held = holder!.engine.get('8282').catch(() => undefined);
    await expectEventually(() => expect(fleet!.backend.backend.stats().byId['8282']).toBe(1));
    const waiting = waiter!.engine.get('8282');
    await new Promise((resolve) => setTimeout(resolve, 50)); // the waiter now polls the held lease
    await waiter!.engine.close();
    await expect(waiting).rejects.toMatchObject({ code: 'CLOSED' });
    fleet.backend.backend.setMode('normal');
    await held;
  });

  it('ignores lease hints with an implausible status', () => {
    const hint = (fields: Record<string, string>) => decodeHint(Object.entries(fields).flat());
    expect(hint({ type: 'failed', id: '1', code: 'X', status: '0' })).toBeUndefined();
    expect(hint({ type: 'failed', id: '1', code: 'X', status: '1000' })).toBeUndefined();
    expect(hint({ type: 'failed', id: '1', code: 'UPSTREAM_STATUS', status: '502' })).toMatchObject({ status: 502 });
    // Only a documented code with its documented status: a peer cannot make clients see anything else.
    expect(hint({ type: 'failed', id: '1', code: 'MADE_UP', status: '502' })).toBeUndefined();
    expect(hint({ type: 'failed', id: '1', code: 'UPSTREAM_STATUS', status: '503' })).toBeUndefined();
    expect(hint({ type: 'failed', id: '1', code: 'INVALID_GROUP_ID', status: '400' })).toBeUndefined();
    expect(hint({ type: 'invalidate', id: '1' })).toBeUndefined();
    expect(decodeHint(['type', 'filled', 'id'])).toBeUndefined();
    expect(decodeHint('not fields')).toBeUndefined();
  });
});

describe('Redis failures', () => {
  it('keeps serving when Redis stops mid-load, coalesces per process meanwhile, and uses L2 again once it is back', async () => {
    ownRedis = await startRedisServer();
    fleet = await startFleet(2, { url: ownRedis.url }, { backend: { latencyMs: 150 } });
    const [a, b] = fleet.instances;
    const backend = fleet.backend.backend;
    const warm = ['1', '2', '3', '4', '5'];
    for (const id of warm) {
      await a!.engine.get(id);
      await b!.engine.get(id);
    }
    expect(backend.stats().calls).toBe(5);

    const midLoad = Promise.all(Array.from({ length: 100 }, (_, i) => fleet!.instances[i % 2]!.engine.get('77')));
    await expectEventually(() => expect(backend.stats().inFlight).toBe(1));
    const epochs = [a!.tier, b!.tier].map((tier) => tier.feedPositions()[0]!.epoch);
    await ownRedis.stop();

    const fromL1 = await Promise.all(
      Array.from({ length: 500 }, (_, i) => fleet!.instances[i % 2]!.engine.get(warm[i % 5]!)),
    );
    expect(fromL1.every((l) => l.outcome === 'hit')).toBe(true);
    const loaded = await midLoad;
    expect(loaded.every((l) => l.entry.kind === 'found')).toBe(true);

    const callsBefore = backend.stats().calls;
    const degraded = await Promise.all(
      Array.from({ length: 200 }, (_, i) => fleet!.instances[i % 2]!.engine.get('88')),
    );
    expect(degraded.every((l) => l.entry.kind === 'found')).toBe(true);
    expect(backend.stats().calls - callsBefore).toBe(2); // one per instance
    expect(a!.engine.stats().l2).toBe('degraded');

    await ownRedis.start();
    await waitUntilHealthy(a!.tier);
    await waitUntilHealthy(b!.tier);
    // Redis came back empty: each instance resets to the new feed (flushing L1 and fencing its loads)
    // once its reader is back; a load fenced by that reset is not shared, so wait for both resets.
    await expectEventually(
      () =>
        expect([a!.tier, b!.tier].map((tier, i) => tier.feedPositions()[0]!.epoch !== epochs[i])).toEqual([true, true]),
      10_000,
    );
    expect(a!.engine.stats().l2).toBe('ok');
    await a!.engine.get('99');
    expect((await b!.engine.get('99')).outcome).toBe('l2-hit');
    expect(backend.stats().byId['99']).toBe(1);
  });

  it('starts with Redis down, serves from the origin, and joins the fleet once Redis is up', async () => {
    ownRedis = await startRedisServer();
    await ownRedis.stop();
    fleet = await startFleet(0, { url: ownRedis.url }, { backend: { latencyMs: 0 } });
    const instance = fleet.add();
    const lookups = await Promise.all(Array.from({ length: 50 }, () => instance.engine.get('5')));
    expect(lookups.every((l) => l.entry.kind === 'found')).toBe(true);
    expect(fleet.backend.backend.stats().calls).toBe(1);
    expect(instance.engine.stats().l2).toBe('degraded');
    expect(await instance.engine.invalidate(['5'])).toMatchObject({ fleet: false });

    await ownRedis.start();
    await waitUntilHealthy(instance.tier);
    const other = fleet.add();
    await waitUntilHealthy(other.tier);
    await instance.engine.get('6');
    expect((await other.engine.get('6')).outcome).toBe('l2-hit');
    // The subscription queued while Redis was down is live: the other instance's invalidation reaches us.
    expect(await other.engine.invalidate(['6'])).toMatchObject({ fleet: true });
    await expectEventually(() => expect(instance.engine.peek('6')).toBeUndefined());
  });
});

async function expectEventually(check: () => void | Promise<void>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}
