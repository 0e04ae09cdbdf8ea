import { afterEach, describe, expect, it, vi } from 'vitest';
import { CoalescingCache, NOT_FOUND, ProxyError, type Loader } from '../src/index.js';
import { OriginGuard } from '../src/resilience/origin-guard.js';
import { ManualClock } from '../src/util/clock.js';
import { deferred, manualClock } from './helpers/deferred.js';
import { until } from './helpers/until.js';

type Profile = { id: string; version: number };

function versionedLoader() {
  let version = 0;
  const calls: string[] = [];
  let behaviour: 'ok' | 'fail' | 'hang' = 'ok';
  const load: Loader<Profile> = (key) => {
    calls.push(key);
    if (behaviour === 'fail') return Promise.reject(new ProxyError('UPSTREAM_STATUS', 'upstream answered 500'));
    if (behaviour === 'hang') return new Promise(() => {});
    return Promise.resolve({ id: key, version: ++version });
  };
  return { load, calls, set: (b: typeof behaviour) => (behaviour = b) };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('stale-while-revalidate', () => {
  it('serves a stale entry at once and refreshes it exactly once in the background', async () => {
    const clock = manualClock();
    const source = versionedLoader();
    const cache = new CoalescingCache<Profile>({
      load: source.load,
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 5000,
      now: clock.now,
    });
    await cache.get('1');
    clock.advance(1500);
    const lookups = await Promise.all(Array.from({ length: 100 }, () => cache.get('1')));
    expect(lookups.every((l) => l.outcome === 'stale' && l.entry.value?.version === 1)).toBe(true);
    await tick();
    expect(source.calls).toHaveLength(2);
    const after = await cache.get('1');
    expect(after).toMatchObject({ outcome: 'hit', entry: { value: { version: 2 } } });
  });

  it('uses the separate window for negative entries', async () => {
    const clock = manualClock();
    const calls: string[] = [];
    const cache = new CoalescingCache<Profile>({
      load: async (key) => {
        calls.push(key);
        return NOT_FOUND;
      },
      negativeTtlMs: 1000,
      negativeStaleTtlMs: 0,
      staleTtlMs: 60_000,
      ttlJitter: 0,
      now: clock.now,
    });
    await cache.get('1');
    clock.advance(1001);
    expect((await cache.get('1')).outcome).toBe('miss');
    expect(calls).toHaveLength(2);
  });
});

describe('stale-if-error', () => {
  it('serves the kept entry when the load fails, until maxStaleMs past freshness', async () => {
    const clock = manualClock();
    const source = versionedLoader();
    const cache = new CoalescingCache<Profile>({
      load: source.load,
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      negativeStaleTtlMs: 0,
      maxStaleMs: 10_000,
      now: clock.now,
    });
    await cache.get('1');
    source.set('fail');
    clock.advance(5000);
    const served = await cache.get('1');
    expect(served).toMatchObject({
      outcome: 'stale-if-error',
      entry: { value: { version: 1 } },
      error: { code: 'UPSTREAM_STATUS' },
    });
    clock.advance(6000); // 11 s past storage: 10 s past freshness, beyond maxStaleMs
    await expect(cache.get('1')).rejects.toMatchObject({ code: 'UPSTREAM_STATUS' });
  });

  it('recovers with fresh data once the load succeeds again', async () => {
    const clock = manualClock();
    const source = versionedLoader();
    const cache = new CoalescingCache<Profile>({
      load: source.load,
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      now: clock.now,
    });
    await cache.get('1');
    clock.advance(2000);
    source.set('fail');
    expect((await cache.get('1')).outcome).toBe('stale-if-error');
    source.set('ok');
    expect(await cache.get('1')).toMatchObject({ outcome: 'miss', entry: { value: { version: 2 } } });
  });
});

describe('soft timeout', () => {
  it('answers with the stale entry when the origin is slow, and caches the late result', async () => {
    const clock = manualClock();
    const gate = deferred<Profile>();
    let calls = 0;
    const cache = new CoalescingCache<Profile>({
      load: async (key) => (++calls === 1 ? { id: key, version: 1 } : gate.promise),
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      softTimeoutMs: 5,
      now: clock.now,
    });
    await cache.get('1');
    clock.advance(2000);
    const slow = await cache.get('1');
    expect(slow).toMatchObject({ outcome: 'stale-timeout', entry: { value: { version: 1 } } });
    gate.resolve({ id: '1', version: 2 });
    await tick();
    expect(await cache.get('1')).toMatchObject({ outcome: 'hit', entry: { value: { version: 2 } } });
    expect(calls).toBe(2);
  });
});

describe('a caller with a stale fallback', () => {
  it('gets its own ABORTED or WAIT_TIMEOUT, not the stale entry; a load failing with the same codes still serves it', async () => {
    const clock = new ManualClock();
    const gate = deferred<Profile>();
    let calls = 0;
    const cache = new CoalescingCache<Profile>({
      load: async (key) => {
        calls++;
        if (calls === 1) return { id: key, version: 1 };
        if (calls === 2) return gate.promise;
        throw new ProxyError('ABORTED', 'the loader gave up');
      },
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      softTimeoutMs: 60_000,
      waitTimeoutMs: 30,
      clock,
    });
    await cache.get('1');
    clock.advance(2000);
    const leaving = new AbortController();
    const aborted = cache.get('1', { signal: leaving.signal });
    leaving.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    const waiting = cache.get('1');
    clock.advance(30); // this caller's wait deadline; the soft timeout (60 s) is far off
    await expect(waiting).rejects.toMatchObject({ code: 'WAIT_TIMEOUT', status: 504 });
    gate.reject(new Error('late'));
    await tick();
    expect(await cache.get('1')).toMatchObject({ outcome: 'stale-if-error', error: { code: 'ABORTED' } });
    expect(calls).toBe(3);
  });
});

describe('waiter deadline', () => {
  it('gives up on a load that never ends with 504 WAIT_TIMEOUT, without caching anything', async () => {
    const source = versionedLoader();
    source.set('hang');
    const cache = new CoalescingCache<Profile>({ load: source.load, waitTimeoutMs: 20 });
    await expect(cache.get('1')).rejects.toMatchObject({ code: 'WAIT_TIMEOUT', status: 504 });
    expect(cache.stats().l1Entries).toBe(0);
  });
});

/** The bound before the adaptive limit: 64 calls at once, whatever the upstream does. */
const FIXED_64 = { concurrency: 'fixed', maxConcurrency: 64 } as const;

describe('OriginGuard admission by expected wait', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Calls that take `latencyMs` of (fake) time each, counting how many run at once. */
  function upstreamOf(latencyMs: number) {
    const upstream = { active: 0, peak: 0, calls: 0 };
    const call = () =>
      new Promise<string>((resolve) => {
        upstream.calls++;
        upstream.active++;
        upstream.peak = Math.max(upstream.peak, upstream.active);
        setTimeout(() => {
          upstream.active--;
          resolve('ok');
        }, latencyMs);
      });
    return { upstream, call };
  }

  async function settleAll<T>(results: Promise<T>[], stepMs: number): Promise<PromiseSettledResult<T>[]> {
    let done = false;
    const all = Promise.allSettled(results).finally(() => (done = true));
    for (let i = 0; i < 10_000 && !done; i++) await vi.advanceTimersByTimeAsync(stepMs);
    return all;
  }

  const codesOf = (settled: PromiseSettledResult<unknown>[]) =>
    settled.map((s) => (s.status === 'fulfilled' ? 'ok' : (s.reason as ProxyError).code));

  it('sheds nothing of a 1000-call burst that a healthy 50 ms upstream drains within the queue timeout (fixed 64)', async () => {
    vi.useFakeTimers();
    const guard = new OriginGuard(FIXED_64);
    const { upstream, call } = upstreamOf(50);
    // 64 slots × 50 ms ≈ 1280 calls/s: the 936 queued drain in ~730 ms, inside the 2000 ms queue timeout.
    const settled = await settleAll(
      Array.from({ length: 1000 }, () => guard.run(call)),
      10,
    );
    expect(codesOf(settled).filter((c) => c !== 'ok')).toEqual([]);
    expect(upstream.calls).toBe(1000);
    expect(upstream.peak).toBe(64);
    expect(guard.stats()).toMatchObject({ shed: 0, active: 0, queued: 0, latencyMs: 50 });
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  it('sheds at once what a slow upstream cannot start within the queue timeout, before holding it', async () => {
    vi.useFakeTimers();
    const guard = new OriginGuard(FIXED_64);
    const { upstream, call } = upstreamOf(1500);
    await settleAll([guard.run(call)], 100); // measures 1.5 s per call
    const results = Array.from({ length: 1000 }, () => guard.run(call));
    for (const result of results) result.catch(() => {}); // settled below; shed ones reject before that
    // 64 slots busy for 1.5 s: only (2000 ms × 64 ÷ 1500 ms) = 85 calls can be expected to start within the queue timeout.
    await vi.advanceTimersByTimeAsync(0);
    expect(guard.stats()).toMatchObject({ active: 64, queued: 85, shed: 851 });
    const codes = codesOf(await settleAll(results, 100));
    expect(codes.filter((c) => c === 'ok')).toHaveLength(128);
    expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(872);
    expect(upstream.calls).toBe(129);
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  it('before anything is measured admits by count and sheds at the deadline what could not start; then sheds new arrivals at once', async () => {
    vi.useFakeTimers();
    const guard = new OriginGuard(FIXED_64);
    const { upstream, call } = upstreamOf(200);
    const results = Array.from({ length: 5000 }, () => guard.run(call));
    for (const result of results) result.catch(() => {}); // settled below; shed ones reject before that
    await vi.advanceTimersByTimeAsync(0);
    expect(guard.stats()).toMatchObject({ active: 64, queued: 4936, shed: 0 });
    await vi.advanceTimersByTimeAsync(200);
    // Measured now: 200 ms per call, ~320 calls started per second, so a newcomer behind ~4900 cannot start in 2 s.
    const late = guard.run(call);
    await expect(late).rejects.toMatchObject({ code: 'OVERLOADED' });
    const codes = codesOf(await settleAll(results, 50));
    const served = codes.filter((c) => c === 'ok').length;
    // 64 slots × 200 ms: rounds start at 0, 200, ..., 1800 ms, inside the 2 s queue timeout; the rest is shed at its deadline.
    expect(served).toBe(64 * 10);
    expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(5000 - 64 * 10);
    expect(upstream.calls).toBe(served);
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  /**
   * An upstream that serves `capacity` calls at once, each in `latency()` ms of (fake) time; the rest wait their
   * turn inside it, so beyond its capacity latency grows, as a real one's does.
   */
  function queueingUpstream(capacity: number, latency: () => number) {
    const upstream = { inside: 0, peakInside: 0, serving: 0, calls: 0 };
    const waiting: (() => void)[] = [];
    const serve = (resolve: (value: string) => void) => {
      upstream.serving++;
      setTimeout(() => {
        upstream.serving--;
        upstream.inside--;
        waiting.shift()?.();
        resolve('ok');
      }, latency());
    };
    const call = () =>
      new Promise<string>((resolve) => {
        upstream.calls++;
        upstream.inside++;
        upstream.peakInside = Math.max(upstream.peakInside, upstream.inside);
        if (upstream.serving < capacity) serve(resolve);
        else waiting.push(() => serve(resolve));
      });
    return { upstream, call };
  }

  it('adaptive (the default): sheds nothing of 5000 calls at once that a healthy 50 ms upstream can take, and grows past the old fixed 64', async () => {
    vi.useFakeTimers();
    const guard = new OriginGuard();
    const { upstream, call } = upstreamOf(50);
    const settled = await settleAll(
      Array.from({ length: 5000 }, () => guard.run(call)),
      10,
    );
    expect(codesOf(settled).filter((c) => c !== 'ok')).toEqual([]);
    expect(upstream.calls).toBe(5000);
    expect(upstream.peak).toBeGreaterThan(64);
    expect(guard.stats()).toMatchObject({ shed: 0, active: 0, queued: 0, minLatencyMs: 50 });
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  it('adaptive: an upstream serving 10 at a time (100 ms) facing 3000 calls sees little more than 10 at once; the excess is shed fast, never timed out', async () => {
    vi.useFakeTimers();
    const shedReasons: string[] = [];
    const guard = new OriginGuard({ onShed: (reason) => shedReasons.push(reason) });
    const { upstream, call } = queueingUpstream(10, () => 100);
    // Warm: a steady stream of 30 callers for 5 s, so the limit has met the upstream's capacity.
    let stop = false;
    const steady = Array.from({ length: 30 }, async () => {
      while (!stop) await guard.run(call).catch(() => vi.advanceTimersByTimeAsync(1));
    });
    await vi.advanceTimersByTimeAsync(5000);
    const warmedLimit = guard.limit;
    const peakWhenSteady = upstream.peakInside;
    stop = true;
    await settleAll(steady, 10);
    const burst = Array.from({ length: 3000 }, () => guard.run(call));
    for (const result of burst) result.catch(() => {});
    const codes = codesOf(await settleAll(burst, 10));
    expect(new Set(codes)).toEqual(new Set(['ok', 'OVERLOADED']));
    expect(warmedLimit).toBeGreaterThanOrEqual(10);
    expect(warmedLimit).toBeLessThanOrEqual(20);
    expect(peakWhenSteady).toBeLessThanOrEqual(24);
    // The shed ones are shed on arrival, by expected wait, not after waiting out the queue timeout.
    expect(shedReasons.filter((r) => r === 'expected_wait').length).toBeGreaterThan(2000);
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  it('adaptive: the limit falls within seconds when the upstream slows down tenfold, and recovers once it is back', async () => {
    vi.useFakeTimers();
    let latencyMs = 50;
    const guard = new OriginGuard();
    const { call } = queueingUpstream(Number.POSITIVE_INFINITY, () => latencyMs);
    let stop = false;
    const callers = Array.from({ length: 200 }, async () => {
      while (!stop) await guard.run(call).catch(() => vi.advanceTimersByTimeAsync(5));
    });
    await vi.advanceTimersByTimeAsync(3000);
    const healthy = guard.limit;
    latencyMs = 500;
    await vi.advanceTimersByTimeAsync(3000);
    const slowed = guard.limit;
    latencyMs = 50;
    await vi.advanceTimersByTimeAsync(3000);
    const recovered = guard.limit;
    stop = true;
    await settleAll(callers, 50);
    expect(healthy).toBeGreaterThanOrEqual(200);
    expect(slowed).toBeLessThan(healthy / 4);
    expect(recovered).toBeGreaterThanOrEqual(200);
    // Slowness alone is the upstream's state, never a failure: the breaker stays closed.
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });

  it('never sheds more than maxQueue allows to wait, whatever the estimate', async () => {
    vi.useFakeTimers();
    const guard = new OriginGuard({ concurrency: 'fixed', maxConcurrency: 2, maxQueue: 3 });
    const { call } = upstreamOf(1);
    const codes = codesOf(
      await settleAll(
        Array.from({ length: 10 }, () => guard.run(call)),
        1,
      ),
    );
    expect(codes.filter((c) => c === 'ok')).toHaveLength(5);
    expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(5);
    guard.close();
  });
});

describe('OriginGuard', () => {
  it('bounds concurrent calls and sheds beyond the queue with 503 OVERLOADED', async () => {
    const guard = new OriginGuard({
      concurrency: 'fixed',
      maxConcurrency: 5,
      maxQueue: 10,
      breakerVolumeThreshold: 1_000_000,
    });
    let active = 0;
    let peak = 0;
    const gate = deferred<void>();
    const call = async () => {
      active++;
      peak = Math.max(peak, active);
      await gate.promise;
      active--;
      return 'ok';
    };
    const results = Array.from({ length: 100 }, () => guard.run(call));
    const shed = await Promise.allSettled(results.slice(15));
    expect(shed.every((s) => s.status === 'rejected' && (s.reason as ProxyError).code === 'OVERLOADED')).toBe(true);
    expect(guard.stats()).toMatchObject({ active: 5, queued: 10, shed: 85 });
    gate.resolve();
    expect(await Promise.all(results.slice(0, 15))).toEqual(Array(15).fill('ok'));
    expect(peak).toBe(5);
    expect(guard.stats()).toMatchObject({ active: 0, queued: 0 });
    guard.close();
  });

  it('sheds a call that waited in the queue past its deadline', async () => {
    const guard = new OriginGuard({ concurrency: 'fixed', maxConcurrency: 1, maxQueue: 5, queueTimeoutMs: 10 });
    const gate = deferred<void>();
    const first = guard.run(() => gate.promise);
    await expect(guard.run(async () => 'late')).rejects.toMatchObject({ code: 'OVERLOADED', retryAfterSeconds: 1 });
    gate.resolve();
    await first;
    guard.close();
  });

  it('opens on origin failures, stops calling, probes after the reset timeout, and closes on success', async () => {
    const states: string[] = [];
    const guard = new OriginGuard({
      breakerVolumeThreshold: 4,
      breakerErrorPercent: 50,
      breakerResetMs: 50,
      onBreakerChange: (s) => states.push(s),
    });
    let invoked = 0;
    const failing = async () => {
      invoked++;
      throw new ProxyError('UPSTREAM_TIMEOUT', 'slow');
    };
    for (let i = 0; i < 4; i++) await expect(guard.run(failing)).rejects.toMatchObject({ code: 'UPSTREAM_TIMEOUT' });
    expect(guard.breakerState).toBe('open');
    await expect(guard.run(failing)).rejects.toMatchObject({ code: 'CIRCUIT_OPEN', status: 503, retryAfterSeconds: 1 });
    expect(invoked).toBe(4);
    // opossum keeps its own reset timer: wait for the state it leads to, not for a fixed time.
    await until(() => guard.breakerState === 'half-open', 'the half-open breaker');
    expect(guard.breakerState).toBe('half-open');
    expect(await guard.run(async () => 'fine')).toBe('fine');
    expect(guard.breakerState).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'closed']);
    guard.close();
  });

  it('opens on a hanging upstream even while most calls are shed', async () => {
    const guard = new OriginGuard({
      concurrency: 'fixed',
      maxConcurrency: 2,
      maxQueue: 0,
      breakerVolumeThreshold: 2,
      breakerErrorPercent: 50,
    });
    const timingOut = () =>
      new Promise<never>((_, reject) => setTimeout(() => reject(new ProxyError('UPSTREAM_TIMEOUT', 'slow')), 20));
    const settled = await Promise.allSettled(Array.from({ length: 50 }, () => guard.run(timingOut)));
    const codes = settled.map((s) => (s.status === 'rejected' ? (s.reason as ProxyError).code : 'ok'));
    expect(codes.filter((c) => c === 'UPSTREAM_TIMEOUT')).toHaveLength(2);
    expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(48);
    expect(guard.breakerState).toBe('open');
    guard.close();
  });

  it('does not count shedding or non-origin errors as failures', async () => {
    const guard = new OriginGuard({ breakerVolumeThreshold: 2, breakerErrorPercent: 1 });
    for (let i = 0; i < 10; i++) {
      await expect(guard.run(async () => Promise.reject(new ProxyError('OVERLOADED', 'x')))).rejects.toBeTruthy();
      await expect(guard.run(async () => Promise.reject(new ProxyError('CLOSED', 'x')))).rejects.toBeTruthy();
    }
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });
});
