import { afterEach, describe, expect, inject, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { RedisTier } from '../src/shared-tier/redis/redis-tier.js';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { HttpOrigin, type GroupProfile } from '../src/origin/http-origin.js';
import { ExistenceFilter } from '../src/penetration/existence-filter.js';
import { ManualClock } from '../src/util/clock.js';
import { uniquePrefix, waitUntilHealthy } from './helpers/fleet.js';
import { until } from './helpers/until.js';

/**
 * The miss path's Redis round trips, per path, as docs/fleet.md states them: counted by the tier
 * itself (every command of its client, a script being one; the feed readers' reads apart).
 * - an L2 hit: 1;
 * - a miss nobody else waits on: 2 (lookup-or-lease, fill), and no feed reader woken;
 * - a wait on another instance's lease: the hit's 1 plus 1.
 */

interface Member {
  engine: CoalescingCache<GroupProfile>;
  tier: RedisTier;
  origin: HttpOrigin;
}

let backend: RunningMockBackend | undefined;
const members: Member[] = [];
afterEach(async () => {
  for (const { engine, tier, origin } of members.splice(0)) {
    await engine.close();
    await tier.close();
    await origin.close();
  }
  await backend?.close();
  backend = undefined;
});

async function fleetOf(count: number, clocks: (ManualClock | undefined)[] = []): Promise<Member[]> {
  backend = await startMockBackend({ latencyMs: 0, latencyJitterMs: 0 });
  const prefix = uniquePrefix();
  for (let i = 0; i < count; i++) {
    // Readers that block for a minute: within a test, a feed read is woken by an entry, nothing else.
    const tier = new RedisTier({ url: inject('redisUrl'), prefix, commandTimeoutMs: 2000, feedBlockMs: 60_000 });
    const origin = new HttpOrigin({ url: backend.url });
    const engine = new CoalescingCache<GroupProfile>({
      load: origin.load,
      l2: tier,
      refreshAheadMs: 0,
      clock: clocks[i],
    });
    members.push({ engine, tier, origin });
  }
  for (const { tier } of members) {
    await waitUntilHealthy(tier);
    await tier.whenFeedReady();
  }
  return members;
}

/** Round trips since `before`, the tier's own commands and the feed readers' reads apart. */
function since(
  tier: RedisTier,
  before: Record<string, number>,
): { commands: Record<string, number>; feedReads: number } {
  const now = tier.roundTrips();
  const commands: Record<string, number> = {};
  for (const [op, count] of Object.entries(now)) {
    const delta = count - (before[op] ?? 0);
    if (op !== 'feedRead' && delta > 0) commands[op] = delta;
  }
  return { commands, feedReads: (now.feedRead ?? 0) - (before.feedRead ?? 0) };
}

const total = (commands: Record<string, number>): number => Object.values(commands).reduce((a, b) => a + b, 0);

describe('Redis round trips per path', () => {
  it('a miss nobody else waits on: 2 (lookup-or-lease, fill), no hint, no feed reader woken', async () => {
    const [a, b] = await fleetOf(2);
    const beforeA = a!.tier.roundTrips();
    const beforeB = b!.tier.roundTrips();
    for (let id = 1; id <= 100; id++) await a!.engine.get(String(id));
    const onA = since(a!.tier, beforeA);
    expect(onA.commands).toEqual({ lookupOrLease: 100, fillIfLeased: 100 });
    // A hint per fill woke every instance's readers once or twice each before; a reader between two
    // of its own reads when the count was taken may add one.
    expect(onA.feedReads).toBeLessThanOrEqual(1);
    expect(since(b!.tier, beforeB).feedReads).toBeLessThanOrEqual(1);
    expect(backend!.backend.stats().calls).toBe(100);
  });

  it('an L2 hit: 1', async () => {
    const [a, b] = await fleetOf(2);
    await a!.engine.get('7');
    const before = b!.tier.roundTrips();
    expect((await b!.engine.get('7')).outcome).toBe('l2-hit');
    expect(since(b!.tier, before).commands).toEqual({ lookupOrLease: 1 });
  });

  it("a wait on another instance's lease: the hit's 1 plus 1; the holder announces its fill once", async () => {
    // B's clock stands still: it never polls on a timer, so only the holder's hint can wake it.
    const [a, b] = await fleetOf(2, [undefined, new ManualClock(Date.now())]);
    backend!.backend.setMode('hang');
    const beforeA = a!.tier.roundTrips();
    const beforeB = b!.tier.roundTrips();
    const holder = a!.engine.get('9');
    await until(() => backend!.backend.stats().inFlight === 1, 'the holder at the origin');
    const waiter = b!.engine.get('9');
    await until(() => (b!.tier.roundTrips().lookupOrLease ?? 0) > (beforeB.lookupOrLease ?? 0), 'the waiter at Redis');
    backend!.backend.setMode('normal');
    expect((await holder).outcome).toBe('miss');
    expect((await waiter).outcome).toBe('collapsed');
    expect(since(b!.tier, beforeB).commands).toEqual({ lookupOrLease: 2 });
    expect(since(a!.tier, beforeA).commands).toEqual({ lookupOrLease: 1, fillIfLeased: 1, hint: 1 });
    expect(total(since(b!.tier, beforeB).commands)).toBe(1 + 1);
    expect(backend!.backend.stats().calls).toBe(1);
  });

  it('1000 concurrent lookups of one made-up id with the fleet filter on Redis: 1 bitmap read, nothing else', async () => {
    backend = await startMockBackend({ latencyMs: 0, latencyJitterMs: 0 });
    const tier = new RedisTier({ url: inject('redisUrl'), prefix: uniquePrefix(), commandTimeoutMs: 2000 });
    const origin = new HttpOrigin({ url: backend.url });
    const filter = new ExistenceFilter({
      expectedIds: 1000,
      l2: tier,
      exportIds: async () => ({ ids: ['1', '2', '3'], next: undefined }),
    });
    const engine = new CoalescingCache<GroupProfile>({ load: origin.load, l2: tier, existence: filter });
    members.push({ engine, tier, origin });
    await waitUntilHealthy(tier);
    await filter.start();
    try {
      expect(filter.authoritative).toBe(true);
      const before = tier.roundTrips();
      const lookups = await Promise.all(Array.from({ length: 1000 }, () => engine.get('424242')));
      expect(lookups.every((l) => l.outcome === 'filtered')).toBe(true);
      expect(since(tier, before).commands).toEqual({ testBits: 1 });
      expect(backend.backend.stats().calls).toBe(0);
    } finally {
      filter.close();
    }
  });
});
