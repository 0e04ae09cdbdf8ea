import { afterEach, describe, expect, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import type { ChangeAppliedEvent } from '../src/engine/observer.js';
import { InMemoryTier, InMemoryTierStore } from '../src/shared-tier/memory/in-memory-tier.js';
import { ManualClock } from '../src/util/clock.js';
import type { FeedResetReason } from '../src/shared-tier/contract.js';
import { deferred, type Deferred } from './helpers/deferred.js';
import { until } from './helpers/until.js';

/**
 * The engine over the change feed, on the in-memory tier and one ManualClock:
 * two instances of a fleet, an origin whose profiles carry a version that a
 * change bumps, and counts of origin calls. No test waits on real time.
 */
type Profile = { id: string; version: number };

interface Instance {
  engine: CoalescingCache<Profile>;
  tier: InMemoryTier;
  applied: ChangeAppliedEvent[];
  resets: FeedResetReason[];
}

const MAX_LAG = 2000;
const closing: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0)) await close();
});

function fleetOf(count: number) {
  const clock = new ManualClock();
  const store = new InMemoryTierStore({ now: () => clock.now() });
  const versions = new Map<string, number>();
  const calls: string[] = [];
  let gate: Deferred<void> | undefined;
  const load = async (key: string): Promise<Profile> => {
    calls.push(key);
    const version = versions.get(key) ?? 1;
    await gate?.promise;
    return { id: key, version };
  };
  const instances: Instance[] = Array.from({ length: count }, () => {
    const tier = new InMemoryTier({ store });
    const applied: ChangeAppliedEvent[] = [];
    const resets: FeedResetReason[] = [];
    const engine = new CoalescingCache<Profile>({
      load,
      l2: tier,
      clock,
      ttlMs: 60_000,
      ttlJitter: 0,
      feedMaxLagMs: MAX_LAG,
      observer: { changeApplied: (event) => applied.push(event), feedReset: (reason) => resets.push(reason) },
    });
    closing.push(async () => {
      await engine.close();
      await tier.close();
    });
    return { engine, tier, applied, resets };
  });
  return {
    clock,
    store,
    calls,
    instances,
    /** The profile changes at the source; the next load sees the new version. */
    change: (key: string) => versions.set(key, (versions.get(key) ?? 1) + 1),
    hold: () => (gate = deferred<void>()),
    release: () => {
      gate?.resolve();
      gate = undefined;
    },
  };
}

describe('invalidation through the feed', () => {
  it('applies a change on the producer before invalidate() returns, and on every other instance from the feed', async () => {
    const fleet = fleetOf(4);
    for (const { engine } of fleet.instances) await engine.get('1');
    expect(fleet.calls).toEqual(['1']); // one load for the fleet, through the lease
    fleet.change('1');
    const result = await fleet.instances[2]!.engine.invalidate('1');
    expect(result.fleet).toBe(true);
    expect(result.positions).toHaveLength(1);
    expect(fleet.instances[2]!.engine.peek('1')).toBeUndefined();
    await until(
      () => fleet.instances.every(({ engine }) => engine.peek('1') === undefined),
      'the change on every instance',
      5000,
    );
    expect(fleet.instances.map(({ applied }) => applied.map((event) => event.local))).toEqual([
      [false],
      [false],
      [true],
      [false],
    ]);
    const answers = await Promise.all(fleet.instances.map(({ engine }) => engine.get('1')));
    expect(answers.map((answer) => answer.entry.value?.version)).toEqual([2, 2, 2, 2]);
    expect(fleet.calls).toEqual(['1', '1']);
  });

  it('fences a load in flight on another instance when the change reaches it, so its old value is never stored', async () => {
    const fleet = fleetOf(2);
    const [a, b] = fleet.instances;
    fleet.hold();
    const pending = b!.engine.get('3');
    await until(() => fleet.calls.length === 1, 'b loading', 5000);
    await a!.engine.invalidate('3');
    await until(() => b!.applied.length === 1, 'the change at b', 5000);
    fleet.release();
    await pending;
    expect(b!.engine.peek('3')).toBeUndefined();
  });
});

describe('an own change read back before its append is acknowledged (failed before: Redis delivered it to the reader first)', () => {
  it('is applied here before change listeners hear of it: they never see the old profile', async () => {
    const clock = new ManualClock();
    const store = new InMemoryTierStore({ now: () => clock.now() });
    const tier = new InMemoryTier({ store });
    // As with Redis, where the reader's XREAD can return the entry before XADD's reply: the
    // append resolves only once this instance's reader has delivered the change.
    const appendChange = async (change: Parameters<InMemoryTier['appendChange']>[0]) => {
      const parts = await tier.appendChange(change);
      while (tier.feedPositions()[0]!.position === '0-0') await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      return parts;
    };
    const slowAck = new Proxy(tier, {
      get(target, property) {
        if (property === 'appendChange') return appendChange;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    let version = 1;
    const engine = new CoalescingCache<Profile>({
      load: async (key) => ({ id: key, version }),
      l2: slowAck,
      clock,
      ttlJitter: 0,
    });
    closing.push(async () => {
      await engine.close();
      await tier.close();
    });
    await engine.get('1');
    const seen: (number | 'miss')[] = [];
    engine.onChange((event) => {
      if (event.type === 'change') seen.push(engine.peek('1')?.value?.version ?? 'miss');
    });
    version = 2;
    await engine.invalidate('1');
    await until(() => seen.length === 1, 'the change heard', 10_000);
    expect(seen).toEqual(['miss']);
    expect((await engine.get('1')).entry.value?.version).toBe(2);
  });
});

describe('a reader that cannot read', () => {
  it('serves L1 for at most FEED_MAX_LAG_MS without news, then checks entries against L2, not the origin', async () => {
    const fleet = fleetOf(2);
    const [a, b] = fleet.instances;
    await b!.engine.get('1');
    await b!.engine.get('2');
    expect(fleet.calls).toEqual(['1', '2']);
    b!.tier.suspendFeed();
    fleet.change('1');
    await a!.engine.invalidate('1');
    expect((await a!.engine.get('1')).entry.value?.version).toBe(2); // refills L2 with the new version
    expect(fleet.calls).toEqual(['1', '2', '1']);

    // Within the allowance, b does not know better yet.
    fleet.clock.advance(MAX_LAG);
    expect(b!.engine.peek('1')?.value?.version).toBe(1);
    expect(b!.engine.stats().feed).toMatchObject({ lagMs: MAX_LAG, lagging: false });

    // Past it, every entry is checked against L2 once per allowance: the changed one is replaced,
    // the unchanged one confirmed; neither costs an origin call.
    fleet.clock.advance(1);
    expect(b!.engine.stats().feed).toMatchObject({ lagging: true });
    expect(b!.engine.peek('1')).toBeUndefined();
    const changed = await b!.engine.get('1');
    expect(changed).toMatchObject({ outcome: 'l2-hit', entry: { value: { version: 2 } } });
    const unchanged = await b!.engine.get('2');
    expect(unchanged).toMatchObject({ outcome: 'l2-hit', entry: { value: { version: 1 } } });
    expect((await b!.engine.get('2')).outcome).toBe('hit');
    expect(fleet.calls).toEqual(['1', '2', '1']);
    fleet.clock.advance(MAX_LAG + 1);
    expect((await b!.engine.get('2')).outcome).toBe('l2-hit');
    expect(fleet.calls).toEqual(['1', '2', '1']);

    // Reading again, b replays what it missed and trusts its L1 again.
    b!.tier.resumeFeed();
    await until(() => b!.applied.length === 1, 'the missed change replayed at b', 5000);
    expect(b!.engine.stats().feed).toMatchObject({ lagMs: 0, lagEntries: 0, lagging: false });
    fleet.clock.advance(MAX_LAG + 1);
    expect((await b!.engine.get('2')).outcome).toBe('hit');
  });

  it('checks many lagging lookups of one id with one L2 read', async () => {
    const fleet = fleetOf(1);
    const [a] = fleet.instances;
    await a!.engine.get('9');
    a!.tier.suspendFeed();
    fleet.clock.advance(MAX_LAG + 1);
    const lookups = await Promise.all(Array.from({ length: 100 }, () => a!.engine.get('9')));
    expect(lookups.filter((lookup) => lookup.outcome === 'l2-hit')).toHaveLength(1);
    expect(lookups.filter((lookup) => lookup.outcome === 'collapsed')).toHaveLength(99);
    expect(fleet.calls).toEqual(['9']);
  });

  it('keeps serving L1 within its TTL while the shared tier itself is unreachable (no one can append then)', async () => {
    const fleet = fleetOf(1);
    const [a] = fleet.instances;
    await a!.engine.get('4');
    a!.tier.suspendFeed();
    await a!.tier.close(); // unreachable: healthy is false
    fleet.clock.advance(MAX_LAG * 10);
    expect(a!.engine.peek('4')?.value?.version).toBe(1);
    expect((await a!.engine.get('4')).outcome).toBe('hit');
    expect(fleet.calls).toEqual(['4']);
  });

  it('never keeps the result of a load that began before a change it learns through replay', async () => {
    const fleet = fleetOf(2);
    const [a, b] = fleet.instances;
    // Completed before the replay: stored, then dropped by it.
    await b!.engine.get('5');
    b!.tier.suspendFeed();
    fleet.hold();
    const inFlight = b!.engine.get('6');
    await until(() => fleet.calls.includes('6'), 'b loading 6', 5000);
    fleet.change('5');
    fleet.change('6');
    await a!.engine.invalidate(['5', '6']);
    b!.tier.resumeFeed();
    await until(() => b!.applied.length === 1, 'the replayed change at b', 5000);
    fleet.release();
    expect((await inFlight).entry.value?.version).toBe(1); // its caller gets what the load got...
    expect(b!.engine.peek('6')).toBeUndefined(); // ...but it is not kept
    expect(b!.engine.peek('5')).toBeUndefined();
    expect((await b!.engine.get('5')).entry.value?.version).toBe(2);
    expect((await b!.engine.get('6')).entry.value?.version).toBe(2);
  });
});

describe('a position that cannot be replayed', () => {
  it('flushes L1 when the feed was recreated (storage restarted empty), and counts it', async () => {
    const fleet = fleetOf(2);
    const [, b] = fleet.instances;
    for (const id of ['1', '2', '3']) await b!.engine.get(id);
    expect(b!.engine.stats().l1Entries).toBe(3);
    fleet.store.restart();
    await until(() => b!.resets.length === 1, 'the reset at b', 5000);
    expect(b!.resets).toEqual(['epoch']);
    expect(b!.engine.stats().l1Entries).toBe(0);
  });

  it('flushes L1 when the feed was trimmed past the position, and refills from L2 rather than the origin', async () => {
    const fleet = fleetOf(2);
    const [a, b] = fleet.instances;
    for (const id of ['1', '2', '3']) await b!.engine.get(id);
    b!.tier.suspendFeed();
    for (let i = 0; i < 5; i++) await a!.engine.invalidate(String(100 + i));
    fleet.store.trim(1);
    b!.tier.resumeFeed();
    await until(() => b!.resets.length === 1, 'the reset at b', 5000);
    expect(b!.resets).toEqual(['trimmed']);
    expect(b!.engine.stats().l1Entries).toBe(0);
    const callsBefore = fleet.calls.length;
    for (const id of ['1', '2', '3']) expect((await b!.engine.get(id)).outcome).toBe('l2-hit');
    expect(fleet.calls).toHaveLength(callsBefore);
  });
});

describe('change listeners hear changes in feed order (failed before: an outside change waiting on its Redis delete was passed by a later one)', () => {
  it('tells a later proxy-made change only after an earlier outside change whose delete is slow', async () => {
    const clock = new ManualClock();
    const store = new InMemoryTierStore({ now: () => clock.now() });
    const gate = deferred<void>();
    const slowTier = new InMemoryTier({ store });
    const deleteKeys = slowTier.deleteKeys.bind(slowTier);
    // The storage answering one delete late, as a busy Redis would.
    slowTier.deleteKeys = async (keys, position) => {
      if (position !== undefined) await gate.promise;
      return deleteKeys(keys, position);
    };
    const producer = new InMemoryTier({ store });
    const otherTier = new InMemoryTier({ store });
    const load = async (key: string) => ({ id: key, version: 1 });
    const b = new CoalescingCache<Profile>({ load, l2: slowTier, clock });
    const a = new CoalescingCache<Profile>({ load, l2: otherTier, clock });
    closing.push(async () => {
      await a.close();
      await b.close();
      for (const tier of [slowTier, producer, otherTier]) await tier.close();
    });
    const heard: string[] = [];
    b.onChange((event) => event.type === 'change' && heard.push(event.change.ids.join()));
    await producer.appendChange({ ids: ['1'], kind: 'changed' }); // from outside: b must delete the shared copy
    await a.invalidate('2'); // from a proxy: the shared copies are gone already
    await until(() => store.added === 2, 'both appended', 5000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(heard).toEqual([]); // the first still waits on its delete, and the second waits its turn
    gate.resolve();
    await until(() => heard.length === 2, 'both heard', 5000);
    expect(heard).toEqual(['1', '2']);
  });
});
