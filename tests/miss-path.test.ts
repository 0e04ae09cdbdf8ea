import { afterEach, describe, expect, it, vi } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { InMemoryTier } from '../src/shared-tier/memory/in-memory-tier.js';
import { ExistenceFilter } from '../src/penetration/existence-filter.js';

/**
 * The miss path has one coalescing point: whatever a miss costs (the existence check, the budget,
 * the shared tier, the origin) is paid once per load, inside the key's flight, never per request.
 */

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A filter filled from an export of groups 1 to 3, authoritative once started. */
async function filledFilter(l2?: InMemoryTier): Promise<ExistenceFilter> {
  const filter = new ExistenceFilter({
    expectedIds: 1000,
    l2,
    exportIds: async () => ({ ids: ['1', '2', '3'], next: undefined }),
  });
  await filter.start();
  closers.push(() => filter.close());
  expect(filter.authoritative).toBe(true);
  return filter;
}

function checksOf(filter: ExistenceFilter): number {
  return Object.values(filter.stats().checks).reduce((sum, n) => sum + n, 0);
}

function countingEngine(options: { existence: ExistenceFilter; l2?: InMemoryTier }) {
  const loaded: string[] = [];
  const engine = new CoalescingCache<{ id: string }>({
    load: async (key) => {
      loaded.push(key);
      return { id: key };
    },
    ...options,
  });
  closers.push(() => engine.close());
  return { engine, loaded };
}

describe('the existence check is inside the flight', () => {
  it('1000 concurrent lookups of one made-up id cost one check, no load, and all hear 404 (filter in memory)', async () => {
    const filter = await filledFilter();
    const { engine, loaded } = countingEngine({ existence: filter });
    const before = checksOf(filter);
    const lookups = await Promise.all(Array.from({ length: 1000 }, () => engine.get('424242')));
    expect(checksOf(filter) - before).toBe(1);
    expect(loaded).toEqual([]);
    expect(lookups.every((l) => l.outcome === 'filtered' && l.entry.kind === 'missing')).toBe(true);
    expect(engine.peek('424242')).toBeUndefined(); // nothing cached
  });

  it('1000 concurrent lookups of one cold existing id cost one check and one load', async () => {
    const filter = await filledFilter();
    const { engine, loaded } = countingEngine({ existence: filter });
    const before = checksOf(filter);
    const lookups = await Promise.all(Array.from({ length: 1000 }, () => engine.get('2')));
    expect(checksOf(filter) - before).toBe(1);
    expect(loaded).toEqual(['2']);
    expect(lookups.filter((l) => l.outcome === 'miss')).toHaveLength(1);
    expect(lookups.filter((l) => l.outcome === 'collapsed')).toHaveLength(999);
  });

  it('with the fleet bitmaps in the shared tier: one bitmap read for 1000 concurrent lookups', async () => {
    const tier = new InMemoryTier();
    closers.push(() => tier.close());
    const filter = await filledFilter(tier);
    const testBits = vi.spyOn(tier, 'testBits');
    const { engine, loaded } = countingEngine({ existence: filter, l2: tier });
    const lookups = await Promise.all(Array.from({ length: 1000 }, () => engine.get('424242')));
    expect(testBits).toHaveBeenCalledTimes(1);
    expect(loaded).toEqual([]);
    expect(lookups.every((l) => l.outcome === 'filtered')).toBe(true);
  });

  it('does not ask the filter for a key with a stale copy (it existed), nor for a background refresh', async () => {
    const filter = await filledFilter();
    let now = 0;
    const loaded: string[] = [];
    const engine = new CoalescingCache<{ id: string }>({
      load: async (key) => {
        loaded.push(key);
        return { id: key };
      },
      existence: filter,
      now: () => now,
      ttlMs: 1000,
      ttlJitter: 0,
      refreshAheadMs: 0,
    });
    closers.push(() => engine.close());
    await engine.get('1');
    const before = checksOf(filter);
    now = 1500; // stale, within stale-while-revalidate: answered stale, refreshed in the background
    expect((await engine.get('1')).outcome).toBe('stale');
    await vi.waitFor(() => expect(loaded).toEqual(['1', '1']));
    expect(checksOf(filter) - before).toBe(0);
  });
});

describe('peek() is pure; hit() is the counted read', () => {
  it('peek never starts a refresh-ahead; hit may (the engine draws the same way for every hit)', async () => {
    let now = 0;
    const loaded: string[] = [];
    const engine = new CoalescingCache<{ id: string }>({
      load: async (key) => {
        loaded.push(key);
        return { id: key };
      },
      now: () => now,
      ttlMs: 10_000,
      ttlJitter: 0,
      refreshAheadMs: 5_000,
      random: () => 1e-9, // the draw always falls within reach: any hit in the second half refreshes
    });
    closers.push(() => engine.close());
    await engine.get('1');
    now = 8_000; // the second half of the entry's life
    for (let i = 0; i < 100; i++) expect(engine.peek('1')).toBeDefined();
    await new Promise((resolve) => setImmediate(resolve));
    expect(loaded).toEqual(['1']);
    expect(engine.hit('1')).toBeDefined();
    await vi.waitFor(() => expect(loaded).toEqual(['1', '1']));
  });
});
