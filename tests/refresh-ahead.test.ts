import { afterEach, describe, expect, it } from 'vitest';
import { CoalescingCache, type LookupOutcome } from '../src/engine/engine.js';
import { InMemoryTier, InMemoryTierStore } from '../src/shared-tier/memory/in-memory-tier.js';
import { mulberry32 } from '../src/mock-backend/prng.js';
import { ManualClock } from '../src/util/clock.js';

type Profile = { id: string; version: number };

const TTL_MS = 60_000;
const READ_EVERY_MS = 20;
const TTLS = 5;
const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A source whose loads take `latencyMs` of the manual clock's time, counting calls per key. */
function slowSource(clock: ManualClock, latencyMs: number) {
  const calls: string[] = [];
  let version = 0;
  const load = (key: string) =>
    new Promise<Profile>((resolve) => {
      calls.push(key);
      const answer = { id: key, version: ++version };
      clock.setTimeout(() => resolve(answer), latencyMs);
    });
  return { load, calls };
}

const engines: CoalescingCache<Profile>[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((engine) => engine.close()));
});

function engineOf(
  clock: ManualClock,
  load: (key: string) => Promise<Profile>,
  options: Partial<ConstructorParameters<typeof CoalescingCache<Profile>>[0]> = {},
) {
  // No stale-while-revalidate: an expiry the refresh did not beat is answered as a miss.
  const engine = new CoalescingCache<Profile>({
    load,
    clock,
    ttlMs: TTL_MS,
    ttlJitter: 0,
    staleTtlMs: 0,
    random: mulberry32(17),
    ...options,
  });
  engines.push(engine);
  return engine;
}

/**
 * Reads `key` from every engine every READ_EVERY_MS for `ms` of clock time, returning the
 * outcomes seen. Reads are not awaited before time moves on: one waiting on a load (a miss)
 * settles once the clock has run the load's latency.
 */
async function readContinuously(
  clock: ManualClock,
  readers: CoalescingCache<Profile>[],
  key: string,
  ms: number,
): Promise<Map<LookupOutcome, number>> {
  const outcomes = new Map<LookupOutcome, number>();
  const pending = new Set<Promise<unknown>>();
  const read = (reader: CoalescingCache<Profile>): void => {
    const lookup = reader.get(key).then(({ outcome }) => {
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      pending.delete(lookup);
    });
    pending.add(lookup);
  };
  for (let t = 0; t < ms; t += READ_EVERY_MS) {
    clock.advance(READ_EVERY_MS);
    await flush();
    for (const reader of readers) read(reader);
    await flush();
  }
  for (let i = 0; pending.size > 0 && i < 1000; i++) {
    clock.advance(READ_EVERY_MS);
    await flush();
  }
  expect(pending.size).toBe(0);
  return outcomes;
}

describe('refresh-ahead (XFetch), on by default', () => {
  it('keeps a hot key fresh across several TTLs: never answered as a miss, about one origin call per TTL', async () => {
    const clock = new ManualClock();
    const source = slowSource(clock, 50);
    const engine = engineOf(clock, source.load);
    const first = engine.get('1');
    clock.advance(50);
    expect((await first).outcome).toBe('miss');
    const outcomes = await readContinuously(clock, [engine], '1', TTLS * TTL_MS);
    expect([...outcomes.keys()]).toEqual(['hit']);
    // One load per TTL, each begun a little (s·ln(r·s) ≈ 1.6 s) before expiry: 5 to 6 over 5 TTLs, plus the first.
    expect(source.calls.length - 1).toBeGreaterThanOrEqual(TTLS);
    expect(source.calls.length - 1).toBeLessThanOrEqual(TTLS + 1);
  });

  it('without it (refreshAheadMs: 0) the same reads miss at every expiry', async () => {
    const clock = new ManualClock();
    const source = slowSource(clock, 50);
    const engine = engineOf(clock, source.load, { refreshAheadMs: 0 });
    const first = engine.get('1');
    clock.advance(50);
    await first;
    const outcomes = await readContinuously(clock, [engine], '1', TTLS * TTL_MS);
    // Each expiry within the run (the last may fall past its end) is one miss, the reads during its load collapsed on it.
    expect(outcomes.get('miss') ?? 0).toBeGreaterThanOrEqual(TTLS - 1);
    expect(outcomes.get('collapsed') ?? 0).toBeGreaterThan(0);
  });

  it('starts earlier when the origin is slower than refreshAheadMs, so a 3 s load still lands before expiry', async () => {
    const clock = new ManualClock();
    const source = slowSource(clock, 3000);
    const engine = engineOf(clock, source.load);
    const first = engine.get('1');
    clock.advance(3000);
    await first;
    const outcomes = await readContinuously(clock, [engine], '1', TTLS * TTL_MS);
    expect([...outcomes.keys()]).toEqual(['hit']);
    expect(source.calls.length - 1).toBeLessThanOrEqual(TTLS + 1);
  });

  it('leaves a key read rarely to expire as usual: no refresh in the first half of its life, none without reads', async () => {
    const clock = new ManualClock();
    const source = slowSource(clock, 50);
    // Every draw would refresh: only the rules above hold it back.
    const engine = engineOf(clock, source.load, { random: () => 0 });
    const first = engine.get('1');
    clock.advance(50);
    await first;
    clock.advance(TTL_MS / 2 - 1000);
    expect(engine.peek('1')).toBeDefined();
    await flush();
    expect(source.calls).toHaveLength(1);
    clock.advance(TTL_MS);
    await flush();
    expect(source.calls).toHaveLength(1);
    const later = engine.get('1');
    clock.advance(50);
    expect((await later).outcome).toBe('miss');
  });

  it('refreshes once for the fleet: two instances reading the same hot key share each refresh through the lease', async () => {
    const clock = new ManualClock();
    const store = new InMemoryTierStore({ now: () => clock.now() });
    const source = slowSource(clock, 50);
    const a = engineOf(clock, source.load, { l2: new InMemoryTier({ store }), random: mulberry32(1) });
    const b = engineOf(clock, source.load, { l2: new InMemoryTier({ store }), random: mulberry32(2) });
    const first = a.get('1');
    await flush(); // the load starts once the shared tier answered
    clock.advance(50);
    await first;
    expect((await b.get('1')).outcome).toBe('l2-hit');
    const outcomes = await readContinuously(clock, [a, b], '1', TTLS * TTL_MS);
    expect(outcomes.get('miss') ?? 0).toBe(0);
    expect(outcomes.get('collapsed') ?? 0).toBe(0);
    expect(source.calls.length - 1).toBeGreaterThanOrEqual(TTLS);
    expect(source.calls.length - 1).toBeLessThanOrEqual(TTLS + 1);
  });
});

describe('the option it replaced', () => {
  it('is refused, naming earlyRefreshMs and EARLY_REFRESH_MS, rather than silently ignored', async () => {
    expect(
      () =>
        new CoalescingCache<Profile>({
          load: async (key: string) => ({ id: key, version: 1 }),
          earlyRefreshMs: 1000,
        } as never),
    ).toThrow(/earlyRefreshMs.*refreshAheadMs/);
    const { configFromEnv } = await import('../src/server/config.js');
    expect(() => configFromEnv({ EARLY_REFRESH_MS: '1000' })).toThrow(/EARLY_REFRESH_MS.*REFRESH_AHEAD_MS/);
  });

  it('closes once: a second close waits for the first', async () => {
    const engine = new CoalescingCache<Profile>({ load: async (key) => ({ id: key, version: 1 }) });
    const first = engine.close();
    const second = engine.close();
    expect(second).toBe(first);
    await first;
  });
});
