import { describe, expect, it } from 'vitest';
import { AdaptiveLimit } from '../src/resilience/adaptive-limit.js';
import { ManualClock } from '../src/util/clock.js';

function limiter(clock = new ManualClock(), overrides: Partial<ConstructorParameters<typeof AdaptiveLimit>[0]> = {}) {
  return new AdaptiveLimit({ initial: 20, min: 4, max: 1000, minLatencyWindowMs: 30_000, clock, ...overrides });
}

/** An upstream that serves `capacity` calls at once in `baseMs` each; the rest queue for their turn. */
function queueing(baseMs: number, capacity: number): (call: number) => number {
  return (call) => baseMs * (Math.floor(call / capacity) + 1);
}

/** `rounds` times: `limit` calls go out at once; call i reports `latency(i)` when it ends, in order. */
function drive(limit: AdaptiveLimit, clock: ManualClock, rounds: number, latency: (call: number) => number) {
  const seen: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const inFlight = limit.limit;
    let elapsed = 0;
    for (let i = 0; i < inFlight; i++) {
      const ms = latency(i);
      clock.advance(ms - elapsed);
      elapsed = ms;
      limit.sample(ms, inFlight, false);
    }
    seen.push(limit.limit);
  }
  return seen;
}

describe('AdaptiveLimit', () => {
  it('grows to the ceiling while a healthy upstream answers at its no-load latency', () => {
    const clock = new ManualClock();
    const limit = limiter(clock);
    const seen = drive(limit, clock, 12, () => 50);
    expect(seen[0]).toBeGreaterThan(20);
    expect(limit.limit).toBe(1000);
    expect(limit.minLatencyMs).toBe(50);
  });

  it('settles a little above the capacity of an upstream that queues beyond it', () => {
    const clock = new ManualClock();
    const limit = limiter(clock);
    const seen = drive(limit, clock, 200, queueing(100, 10));
    const settled = seen.slice(50);
    expect(Math.min(...settled)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...settled)).toBeLessThanOrEqual(20);
  });

  it('backs off by a tenth on every timeout or 5xx, never below the minimum', () => {
    const limit = limiter();
    limit.sample(50, 20, true);
    expect(limit.limit).toBe(18);
    for (let i = 0; i < 100; i++) limit.sample(50, 20, true);
    expect(limit.limit).toBe(4);
  });

  it('does not grow on calls that never tested the limit (few out, answered at no-load latency)', () => {
    const limit = limiter();
    for (let i = 0; i < 100; i++) limit.sample(50, 3, false);
    expect(limit.limit).toBe(20);
  });

  it('falls within a few rounds when latency jumps tenfold, and recovers once it is back', () => {
    const clock = new ManualClock();
    const limit = limiter(clock);
    drive(limit, clock, 12, () => 50);
    expect(limit.limit).toBe(1000);
    const during = drive(limit, clock, 10, () => 500);
    expect(during.findIndex((l) => l <= 100)).toBeOneOf([0, 1, 2]);
    expect(limit.limit).toBeLessThanOrEqual(10);
    // Back at 50 ms: 1.5× a round trip from the bottom, the ceiling within a second.
    const after = drive(limit, clock, 20, () => 50);
    const reached = after.indexOf(1000);
    expect(reached).toBeGreaterThanOrEqual(0);
    expect(reached).toBeLessThan(20);
  });

  it('learns a new no-load latency within two windows when the upstream stays slower', () => {
    const clock = new ManualClock();
    const limit = limiter(clock);
    drive(limit, clock, 12, () => 50);
    // 500 ms a round: 150 rounds are 75 s, past two 30 s windows.
    drive(limit, clock, 150, () => 500);
    expect(limit.minLatencyMs).toBe(500);
    expect(limit.limit).toBe(1000);
  });

  it('takes the no-load latency from wall time: stall accounting that takes out too much does not make every call look queued', () => {
    const clock = new ManualClock();
    const limit = limiter(clock);
    for (let round = 0; round < 3; round++) {
      clock.advance(50);
      // Stall-corrected 20-50 ms, wall time 50 ms: the upstream took 50.
      for (let i = 0; i < limit.limit; i++) limit.sample(i % 2 === 0 ? 20 : 50, limit.limit, false, 50);
    }
    expect(limit.minLatencyMs).toBe(50);
    expect(limit.limit).toBeGreaterThan(20);
  });

  it('starts within its bounds', () => {
    expect(limiter(undefined, { initial: 1 }).limit).toBe(4);
    expect(limiter(undefined, { initial: 5000 }).limit).toBe(1000);
    expect(limiter().minLatencyMs).toBeUndefined();
  });
});
