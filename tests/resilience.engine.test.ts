import { describe, expect, it } from 'vitest';
import { CoalescingCache, NOT_FOUND, ProxyError, type Loader } from '../src/index.js';
import { OriginGuard } from '../src/resilience/origin-guard.js';
import { deferred, manualClock } from './helpers/deferred.js';

type Profile = { id: string; version: number };

function versionedLoader() {
  let version = 0;
  const calls: string[] = [];
  let behaviour: 'ok' | 'fail' | 'hang' = 'ok';
  const load: Loader<Profile> = (key) => {
    calls.push(key);
    if (behaviour === 'fail') return Promise.reject(new ProxyError('UPSTREAM_STATUS', 'upstream answered 500', 502));
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
    const cache = new CoalescingCache<Profile>({ load: source.load, ttlMs: 1000, ttlJitter: 0, staleTtlMs: 5000, now: clock.now });
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
      load: async (key) => (calls.push(key), NOT_FOUND),
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
    const cache = new CoalescingCache<Profile>({ load: source.load, ttlMs: 1000, ttlJitter: 0, staleTtlMs: 0, negativeStaleTtlMs: 0, maxStaleMs: 10_000, now: clock.now });
    await cache.get('1');
    source.set('fail');
    clock.advance(5000);
    const served = await cache.get('1');
    expect(served).toMatchObject({ outcome: 'stale-if-error', entry: { value: { version: 1 } }, error: { code: 'UPSTREAM_STATUS' } });
    clock.advance(6000); // 11 s past storage: 10 s past freshness, beyond maxStaleMs
    await expect(cache.get('1')).rejects.toMatchObject({ code: 'UPSTREAM_STATUS' });
  });

  it('recovers with fresh data once the load succeeds again', async () => {
    const clock = manualClock();
    const source = versionedLoader();
    const cache = new CoalescingCache<Profile>({ load: source.load, ttlMs: 1000, ttlJitter: 0, staleTtlMs: 0, now: clock.now });
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
    const clock = manualClock();
    const gate = deferred<Profile>();
    let calls = 0;
    const cache = new CoalescingCache<Profile>({
      load: async (key) => {
        calls++;
        if (calls === 1) return { id: key, version: 1 };
        if (calls === 2) return gate.promise;
        throw new ProxyError('ABORTED', 'the loader gave up', 499);
      },
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      softTimeoutMs: 60_000,
      waitTimeoutMs: 30,
      now: clock.now,
    });
    await cache.get('1');
    clock.advance(2000);
    const leaving = new AbortController();
    const aborted = cache.get('1', { signal: leaving.signal });
    leaving.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(cache.get('1')).rejects.toMatchObject({ code: 'WAIT_TIMEOUT', status: 504 });
    gate.reject(new Error('late'));
    await tick();
    expect(await cache.get('1')).toMatchObject({ outcome: 'stale-if-error', error: { code: 'ABORTED' } });
    expect(calls).toBe(3);
  });
});

describe('early refresh', () => {
  it('refreshes a hot entry once before it expires, so it never misses', async () => {
    const clock = manualClock();
    const source = versionedLoader();
    const cache = new CoalescingCache<Profile>({ load: source.load, ttlMs: 10_000, ttlJitter: 0, earlyRefreshMs: 1000, now: clock.now });
    await cache.get('1');
    clock.advance(9500);
    for (let i = 0; i < 50; i++) expect(cache.peek('1')?.value?.version).toBe(1);
    await tick();
    expect(source.calls).toHaveLength(2);
    expect(cache.peek('1')?.value?.version).toBe(2);
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

describe('OriginGuard', () => {
  it('bounds concurrent calls and sheds beyond the queue with 503 OVERLOADED', async () => {
    const guard = new OriginGuard({ maxConcurrency: 5, maxQueue: 10, breakerVolumeThreshold: 1_000_000 });
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
    const guard = new OriginGuard({ maxConcurrency: 1, maxQueue: 5, queueTimeoutMs: 10 });
    const gate = deferred<void>();
    const first = guard.run(() => gate.promise);
    await expect(guard.run(async () => 'late')).rejects.toMatchObject({ code: 'OVERLOADED', retryAfterSeconds: 1 });
    gate.resolve();
    await first;
    guard.close();
  });

  it('opens on origin failures, stops calling, probes after the reset timeout, and closes on success', async () => {
    const states: string[] = [];
    const guard = new OriginGuard({ breakerVolumeThreshold: 4, breakerErrorPercent: 50, breakerResetMs: 50, onBreakerChange: (s) => states.push(s) });
    let invoked = 0;
    const failing = async () => {
      invoked++;
      throw new ProxyError('UPSTREAM_TIMEOUT', 'slow', 504);
    };
    for (let i = 0; i < 4; i++) await expect(guard.run(failing)).rejects.toMatchObject({ code: 'UPSTREAM_TIMEOUT' });
    expect(guard.breakerState).toBe('open');
    await expect(guard.run(failing)).rejects.toMatchObject({ code: 'CIRCUIT_OPEN', status: 503, retryAfterSeconds: 1 });
    expect(invoked).toBe(4);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(guard.breakerState).toBe('half-open');
    expect(await guard.run(async () => 'fine')).toBe('fine');
    expect(guard.breakerState).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'closed']);
    guard.close();
  });

  it('opens on a hanging upstream even while most calls are shed', async () => {
    const guard = new OriginGuard({ maxConcurrency: 2, maxQueue: 0, breakerVolumeThreshold: 2, breakerErrorPercent: 50 });
    const timingOut = () => new Promise<never>((_, reject) => setTimeout(() => reject(new ProxyError('UPSTREAM_TIMEOUT', 'slow', 504)), 20));
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
      await expect(guard.run(async () => Promise.reject(new ProxyError('OVERLOADED', 'x', 503)))).rejects.toBeTruthy();
      await expect(guard.run(async () => Promise.reject(new ProxyError('CLOSED', 'x', 503)))).rejects.toBeTruthy();
    }
    expect(guard.breakerState).toBe('closed');
    guard.close();
  });
});
