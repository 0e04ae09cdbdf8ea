import { describe, expect, it, vi } from 'vitest';
import { CoalescingCache, NOT_FOUND, OptionError, ProxyError, type Loader } from '../src/index.js';
import { deferred, manualClock } from './helpers/deferred.js';

type Profile = { id: string; name: string };

function countingLoader(impl?: (key: string) => Promise<Profile | typeof NOT_FOUND>) {
  const calls: string[] = [];
  const load: Loader<Profile> = (key) => {
    calls.push(key);
    return impl ? impl(key) : Promise.resolve({ id: key, name: `group ${key}` });
  };
  return { load, calls };
}

describe('singleflight', () => {
  it('runs one load for 1000 concurrent callers of a cold key and gives them all the same entry', async () => {
    const gate = deferred<Profile>();
    const { load, calls } = countingLoader(() => gate.promise);
    const cache = new CoalescingCache<Profile>({ load });
    const lookups = Array.from({ length: 1000 }, () => cache.get('42'));
    expect(cache.stats().inFlight).toBe(1);
    gate.resolve({ id: '42', name: 'x' });
    const results = await Promise.all(lookups);
    expect(calls).toEqual(['42']);
    expect(new Set(results.map((r) => r.entry)).size).toBe(1);
    expect(results.filter((r) => r.outcome === 'miss')).toHaveLength(1);
    expect(results.filter((r) => r.outcome === 'collapsed')).toHaveLength(999);
    expect(cache.stats().inFlight).toBe(0);
    const again = await cache.get('42');
    expect(again.outcome).toBe('hit');
    expect(calls).toHaveLength(1);
  });

  it('loads each distinct key once', async () => {
    const { load, calls } = countingLoader();
    const cache = new CoalescingCache<Profile>({ load });
    await Promise.all(Array.from({ length: 1000 }, (_, i) => cache.get(String((i % 100) + 1))));
    expect(calls).toHaveLength(100);
    expect(new Set(calls).size).toBe(100);
  });

  it('gives every waiter the same error, caches nothing, and lets the next call retry', async () => {
    let fail = true;
    const { load, calls } = countingLoader(async (key) => {
      if (fail) throw new ProxyError('UPSTREAM_STATUS', 'upstream answered 500');
      return { id: key, name: 'ok' };
    });
    const cache = new CoalescingCache<Profile>({ load });
    const settled = await Promise.allSettled(Array.from({ length: 50 }, () => cache.get('7')));
    expect(calls).toHaveLength(1);
    const reasons = new Set(settled.map((s) => (s.status === 'rejected' ? s.reason : undefined)));
    expect(reasons.size).toBe(1);
    expect([...reasons][0]).toMatchObject({ code: 'UPSTREAM_STATUS', status: 502 });
    expect(cache.stats()).toMatchObject({ inFlight: 0, l1Entries: 0 });
    fail = false;
    const retry = await cache.get('7');
    expect(retry.outcome).toBe('miss');
    expect(calls).toHaveLength(2);
  });

  it('wraps a non-ProxyError thrown by the loader into a 502 with a stable code', async () => {
    const cache = new CoalescingCache<Profile>({ load: () => Promise.reject(new TypeError('boom')) });
    await expect(cache.get('1')).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', status: 502 });
  });

  it('lets a caller walk away without cancelling the shared load', async () => {
    const gate = deferred<Profile>();
    const { load, calls } = countingLoader(() => gate.promise);
    const cache = new CoalescingCache<Profile>({ load });
    const leaving = new AbortController();
    const first = cache.get('5', { signal: leaving.signal });
    const second = cache.get('5');
    leaving.abort();
    await expect(first).rejects.toMatchObject({ code: 'ABORTED' });
    gate.resolve({ id: '5', name: 'kept' });
    await expect(second).resolves.toMatchObject({ outcome: 'collapsed' });
    expect(calls).toHaveLength(1);
    expect((await cache.get('5')).outcome).toBe('hit');
  });

  it('finishes and caches a load even when every caller went away', async () => {
    const gate = deferred<Profile>();
    const { load, calls } = countingLoader(() => gate.promise);
    const cache = new CoalescingCache<Profile>({ load });
    const controller = new AbortController();
    const lookups = [cache.get('9', { signal: controller.signal }), cache.get('9', { signal: controller.signal })];
    controller.abort();
    await Promise.allSettled(lookups);
    gate.resolve({ id: '9', name: 'late' });
    await vi.waitFor(() => expect(cache.stats().inFlight).toBe(0));
    expect((await cache.get('9')).outcome).toBe('hit');
    expect(calls).toHaveLength(1);
  });

  it('rejects callers whose signal is already aborted without starting a load', async () => {
    const { load, calls } = countingLoader();
    const cache = new CoalescingCache<Profile>({ load });
    await expect(cache.get('3', { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    // The load may start (it is shared), but this caller never waits on it.
    expect(calls.length).toBeLessThanOrEqual(1);
  });
});

describe('freshness', () => {
  it('applies uniform jitter from the injected random source and expires on the injected clock', async () => {
    const clock = manualClock();
    const randoms = [0, 0.999_999];
    const { load, calls } = countingLoader();
    // Refresh-ahead off: its draws would take from the same random source, and a refresh near expiry would change the counts.
    const cache = new CoalescingCache<Profile>({
      load,
      ttlMs: 10_000,
      ttlJitter: 0.1,
      staleTtlMs: 0,
      refreshAheadMs: 0,
      now: clock.now,
      random: () => randoms.shift() ?? 0.5,
    });
    const low = await cache.get('1');
    const high = await cache.get('2');
    expect(low.entry.freshUntil - low.entry.storedAt).toBe(9_000);
    expect(high.entry.freshUntil - high.entry.storedAt).toBe(11_000);
    clock.advance(8_999);
    expect((await cache.get('1')).outcome).toBe('hit');
    clock.advance(1);
    expect((await cache.get('1')).outcome).toBe('miss');
    expect((await cache.get('2')).outcome).toBe('hit');
    expect(calls).toEqual(['1', '2', '1']);
  });

  it('spreads the expiry of keys filled in the same instant', async () => {
    const clock = manualClock();
    const cache = new CoalescingCache<Profile>({ load: countingLoader().load, ttlMs: 60_000, now: clock.now });
    const lookups = await Promise.all(Array.from({ length: 200 }, (_, i) => cache.get(String(i + 1))));
    const ttls = lookups.map((l) => l.entry.freshUntil - l.entry.storedAt);
    expect(Math.min(...ttls)).toBeGreaterThanOrEqual(54_000);
    expect(Math.max(...ttls)).toBeLessThanOrEqual(66_000);
    expect(new Set(ttls).size).toBeGreaterThan(100);
  });

  it('caches a missing key as a negative entry under its own TTL', async () => {
    const clock = manualClock();
    const { load, calls } = countingLoader(async () => NOT_FOUND);
    // Refresh-ahead off: this is about the negative TTL alone (a hit 1 ms before expiry could start a refresh).
    const cache = new CoalescingCache<Profile>({
      load,
      ttlMs: 60_000,
      negativeTtlMs: 5_000,
      negativeStaleTtlMs: 0,
      ttlJitter: 0,
      refreshAheadMs: 0,
      now: clock.now,
    });
    const first = await cache.get('404');
    expect(first.entry.kind).toBe('missing');
    expect(JSON.parse(first.entry.body.toString())).toEqual({
      error: { code: 'GROUP_NOT_FOUND', message: 'group 404 does not exist' },
    });
    clock.advance(4_999);
    expect((await cache.get('404')).outcome).toBe('hit');
    expect(calls).toHaveLength(1);
    clock.advance(1);
    expect((await cache.get('404')).outcome).toBe('miss');
    expect(calls).toHaveLength(2);
  });

  it('does not cache negative entries when negativeTtlMs is 0', async () => {
    const { load, calls } = countingLoader(async () => NOT_FOUND);
    const cache = new CoalescingCache<Profile>({ load, negativeTtlMs: 0 });
    await cache.get('1');
    await cache.get('1');
    expect(calls).toHaveLength(2);
  });

  it('encodes an entry once per fill: hits never re-serialize', async () => {
    const serialize = vi.fn((value: Profile) => Buffer.from(JSON.stringify(value)));
    const cache = new CoalescingCache<Profile>({ load: countingLoader().load, serialize });
    const first = await cache.get('1');
    for (let i = 0; i < 100; i++) expect((await cache.get('1')).entry).toBe(first.entry);
    expect(serialize).toHaveBeenCalledTimes(1);
    expect(first.entry.etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
  });
});

describe('L1 bounds', () => {
  it('keeps total bytes (body + overhead) under l1MaxBytes', async () => {
    const body = 'x'.repeat(1000);
    const cache = new CoalescingCache<string>({ load: async () => body, l1MaxBytes: 10_000, l1EntryOverheadBytes: 0 });
    for (let i = 1; i <= 50; i++) await cache.get(String(i));
    const { l1Entries, l1Bytes } = cache.stats();
    expect(l1Bytes).toBeLessThanOrEqual(10_000);
    expect(l1Entries).toBe(Math.floor(10_000 / 1002)); // 1000 chars + 2 JSON quotes
  });

  it('keeps at most l1MaxEntries, evicting the least recently used', async () => {
    const { load, calls } = countingLoader();
    const cache = new CoalescingCache<Profile>({ load, l1MaxEntries: 3 });
    for (const key of ['1', '2', '3']) await cache.get(key);
    await cache.get('1'); // touch: 2 is now the oldest
    await cache.get('4');
    expect(cache.stats().l1Entries).toBe(3);
    expect((await cache.get('1')).outcome).toBe('hit');
    expect((await cache.get('2')).outcome).toBe('miss');
    expect(calls).toEqual(['1', '2', '3', '4', '2']);
  });
});

describe('invalidate', () => {
  it('drops the entry so the next call loads again', async () => {
    const { load, calls } = countingLoader();
    const cache = new CoalescingCache<Profile>({ load });
    await cache.get('1');
    cache.invalidate(['1']);
    expect((await cache.get('1')).outcome).toBe('miss');
    expect(calls).toHaveLength(2);
  });

  it('without a shared tier says the change reached this instance only, not a fleet', async () => {
    const { load } = countingLoader();
    const cache = new CoalescingCache<Profile>({ load });
    expect(await cache.invalidate(['1'])).toEqual({ sharedTier: false, fleet: false, positions: [] });
  });

  it('fences a load in flight: its possibly stale result is never cached', async () => {
    const gates = [deferred<Profile>(), deferred<Profile>()];
    let n = 0;
    const { load } = countingLoader(() => gates[n++]!.promise);
    const cache = new CoalescingCache<Profile>({ load });
    const before = cache.get('1');
    cache.invalidate('1');
    const after = cache.get('1');
    gates[0]!.resolve({ id: '1', name: 'old' });
    gates[1]!.resolve({ id: '1', name: 'new' });
    expect((await before).entry.value?.name).toBe('old');
    expect((await after).entry.value?.name).toBe('new');
    expect((await cache.get('1')).entry.value?.name).toBe('new');
  });

  it('fences even when the fenced load finishes last', async () => {
    const gates = [deferred<Profile>(), deferred<Profile>()];
    let n = 0;
    const cache = new CoalescingCache<Profile>({ load: () => gates[n++]!.promise });
    const before = cache.get('1');
    cache.invalidate('1');
    const after = cache.get('1');
    gates[1]!.resolve({ id: '1', name: 'new' });
    await after;
    gates[0]!.resolve({ id: '1', name: 'old' });
    await before;
    expect((await cache.get('1')).entry.value?.name).toBe('new');
  });
});

describe('close and options', () => {
  it('rejects loads in flight and later calls with CLOSED', async () => {
    const cache = new CoalescingCache<Profile>({
      load: (_key, { signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    });
    const pending = cache.get('1');
    await cache.close();
    await expect(pending).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(cache.get('2')).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it.each([
    ['ttlMs', { ttlMs: 0 }],
    ['ttlJitter', { ttlJitter: 0.9 }],
    ['negativeTtlMs', { negativeTtlMs: -1 }],
    ['l1MaxEntries', { l1MaxEntries: 1.5 }],
    ['l1MaxBytes', { l1MaxBytes: '10' }],
    ['now', { now: 5 }],
    ['load', { load: undefined }],
  ])('names the bad option %s', (name, bad) => {
    const build = () => new CoalescingCache<Profile>({ load: countingLoader().load, ...(bad as object) } as never);
    expect(build).toThrow(OptionError);
    expect(build).toThrow(new RegExp(`invalid option ${name}:`));
  });
});

describe('close', () => {
  it('lets a load that ends after close() still fill the shared tier for the fleet (its caller gets CLOSED)', async () => {
    const { InMemoryTier, InMemoryTierStore } = await import('../src/index.js');
    const store = new InMemoryTierStore();
    const tier = new InMemoryTier({ store });
    const answer = deferred<{ id: string }>();
    // A loader that does not stop when the engine's signal aborts: its answer arrives after close().
    const cache = new CoalescingCache<{ id: string }>({ load: () => answer.promise, l2: tier });
    const lookup = cache.get('7');
    await vi.waitFor(() => expect(cache.stats().inFlight).toBe(1));
    const closed = cache.close();
    answer.resolve({ id: '7' });
    await expect(lookup).rejects.toMatchObject({ code: 'CLOSED' });
    await closed;
    const [stored] = (await tier.readEntries(['7'])) as (Buffer | undefined)[];
    expect(stored).toBeInstanceOf(Buffer);
    await tier.close();
  });
});

describe('options', () => {
  it('states the range maxStaleMs really has: at least both stale windows', () => {
    const load: Loader<unknown> = async () => NOT_FOUND;
    expect(() => new CoalescingCache({ load, maxStaleMs: -1 })).toThrow(/maxStaleMs.*\[300000, 604800000\]/);
  });
});
