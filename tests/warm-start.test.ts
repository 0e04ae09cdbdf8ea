import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { BatchLoader, CoalescingCache, NOT_FOUND, ProxyError, type Loader } from '../src/index.js';
import { warmStart } from '../src/engine/warm-start.js';
import { InMemoryTier, InMemoryTierStore } from '../src/shared-tier/memory/in-memory-tier.js';
import type { GroupProfile } from '../src/origin/http-origin.js';
import { startSidecar, type RunningSidecar } from '../src/server/sidecar.js';
import { ManualClock } from '../src/util/clock.js';
import type { SharedTier } from '../src/shared-tier/contract.js';
import { deferred } from './helpers/deferred.js';
import { startFleet, type Fleet } from './helpers/fleet.js';

type Profile = { id: string };

function countingLoader() {
  const calls: string[] = [];
  const load: Loader<Profile> = async (key) => {
    calls.push(key);
    return { id: key };
  };
  return { load, calls };
}

const closing: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const item of closing.splice(0).reverse()) await item.close();
});

function engineOn(
  tier: SharedTier | undefined,
  load: Loader<Profile>,
  options: Partial<ConstructorParameters<typeof CoalescingCache<Profile>>[0]> = {},
) {
  const engine = new CoalescingCache<Profile>({ load, l2: tier, ttlJitter: 0, hotKeysSampleEvery: 1, ...options });
  closing.push(engine);
  return engine;
}

/** Reads key i (1-based) i times for i in 1..n, so higher keys are hotter. */
async function readWithPopularity(engine: CoalescingCache<Profile>, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) for (let r = 0; r < i; r++) await engine.get(String(i));
}

describe('the fleet record of hot keys', () => {
  it('counts every load that found a group and one hit in hotKeysSampleEvery (standing for as many), never absent ids, and adds them to the record on close', async () => {
    const store = new InMemoryTierStore();
    const load: Loader<Profile> = async (key) => (key === '404' ? NOT_FOUND : { id: key });
    const engine = engineOn(new InMemoryTier({ store }), load, { hotKeysSampleEvery: 8 });
    for (let i = 0; i < 16; i++) await engine.get('404'); // a negative entry: its 15 hits are sampled (one of them) but never counted
    for (let i = 0; i < 80; i++) await engine.get('1'); // 1 load, then 79 hits of which 10 are counted, 8 each
    for (let i = 0; i < 8; i++) await engine.get('2'); // 1 load, then 7 hits, the first of them the 8th since the last counted
    await engine.close();
    const reader = new InMemoryTier({ store });
    closing.push(reader);
    expect(await reader.hottestKeys(10)).toEqual(['1', '2']);
    const window = Math.floor(Date.now() / 600_000);
    expect(Object.fromEntries(store.readsOf(window))).toEqual({ '1': 81, '2': 9 });
  });

  it('adds the counted lookups to the record every hotKeysFlushMs, on the engine clock', async () => {
    const clock = new ManualClock();
    const store = new InMemoryTierStore({ now: () => clock.now() });
    const engine = engineOn(new InMemoryTier({ store }), countingLoader().load, { clock, hotKeysFlushMs: 1000 });
    await engine.get('7');
    const window = Math.floor(clock.now() / 600_000);
    expect(store.readsOf(window).size).toBe(0);
    clock.advance(1000);
    await engine.get('7'); // the lookup that finds the flush due adds everything so far
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.readsOf(window).get('7')).toBe(2);
  });
});

describe('warm start', () => {
  it('fills a new instance from the shared tier with the fleet’s N hottest keys, with no origin call', async () => {
    const store = new InMemoryTierStore();
    const first = engineOn(new InMemoryTier({ store }), countingLoader().load);
    await readWithPopularity(first, 30);
    await first.close();
    const fresh = countingLoader();
    const joining = engineOn(new InMemoryTier({ store }), fresh.load);
    const result = await warmStart(joining, { hottest: 10 });
    expect(result).toEqual({ hottest: 10, filledFromShared: 10, preloaded: 0, failed: 0, timedOut: false });
    for (let i = 21; i <= 30; i++) expect(joining.peek(String(i))?.value).toEqual({ id: String(i) });
    expect(joining.peek('20')).toBeUndefined();
    expect(fresh.calls).toEqual([]);
  });

  it('skips a key invalidated while its entry was being read, and entries no longer fresh', async () => {
    const store = new InMemoryTierStore();
    const a = engineOn(new InMemoryTier({ store }), countingLoader().load, { ttlMs: 60_000 });
    await readWithPopularity(a, 3);
    const gate = deferred<void>();
    const read = deferred<void>();
    const tier = new InMemoryTier({ store });
    // The entries are read, then held while a change lands (as a slow Redis answer would be).
    const readEntries = async (keys: readonly string[]) => {
      const bytes = await tier.readEntries(keys);
      read.resolve();
      await gate.promise;
      return bytes;
    };
    const slowTier = new Proxy(tier, {
      get(target, property) {
        if (property === 'readEntries') return readEntries;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as SharedTier;
    const b = engineOn(slowTier, countingLoader().load);
    const filled = b.fillFromShared(['1', '2', '3']);
    await read.promise;
    await a.invalidate(['2']);
    // b hears of the change from the feed before its read comes back.
    while (b.feedPositions()[0]!.position === '0-0') await new Promise((resolve) => setImmediate(resolve));
    gate.resolve();
    expect(await filled).toBe(2);
    expect(b.peek('2')).toBeUndefined();
    expect(b.peek('3')?.value).toEqual({ id: '3' });
  });

  it('preloads a list of ids without a shared tier, in batches under the concurrency bound', async () => {
    const batches: string[][] = [];
    const loader = new BatchLoader<Profile>({
      loadMany: async (keys) => {
        batches.push([...keys]);
        return new Map(keys.map((key) => [key, { id: key }]));
      },
      windowMs: 1,
      maxKeys: 100,
    });
    const engine = engineOn(undefined, loader.load);
    const ids = Array.from({ length: 250 }, (_, i) => String(500 + i));
    const result = await warmStart(engine, { keys: ids, concurrency: 100 });
    expect(result).toMatchObject({ hottest: 0, filledFromShared: 0, preloaded: 250, failed: 0, timedOut: false });
    expect(batches.every((batch) => batch.length <= 100)).toBe(true);
    expect(batches.flat().sort()).toEqual([...ids].sort());
    for (const id of ids) expect(engine.peek(id)).toBeDefined();
  });

  it('keeps at most `concurrency` lookups in flight and counts failures', async () => {
    let active = 0;
    let peak = 0;
    const load: Loader<Profile> = async (key) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((resolve) => setImmediate(resolve));
      active--;
      if (key.endsWith('7')) throw new ProxyError('UPSTREAM_STATUS', 'upstream answered 500');
      return { id: key };
    };
    const engine = engineOn(undefined, load);
    const result = await warmStart(engine, {
      keys: Array.from({ length: 100 }, (_, i) => String(1 + i)),
      concurrency: 4,
    });
    expect(peak).toBeLessThanOrEqual(4);
    expect(result).toMatchObject({ preloaded: 90, failed: 10, timedOut: false });
  });

  it('stops at its deadline on the engine clock: a hanging origin never holds the start', async () => {
    const clock = new ManualClock();
    // Never answers; gives up only when the engine closes.
    const hanging: Loader<Profile> = (_key, { signal }) =>
      new Promise<Profile>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    const engine = engineOn(undefined, hanging, { clock });
    const warming = warmStart(engine, { keys: ['1', '2', '3'], timeoutMs: 1000, concurrency: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    clock.advance(1000);
    expect(await warming).toMatchObject({ preloaded: 0, failed: 0, timedOut: true });
  });

  it('validates its options, naming the bad one', async () => {
    const engine = engineOn(undefined, countingLoader().load);
    await expect(warmStart(engine, { hottest: -1 })).rejects.toThrow(/hottest/);
    await expect(warmStart(engine, { concurrency: 0 })).rejects.toThrow(/concurrency/);
    await expect(warmStart(engine, { keys: [1 as unknown as string] })).rejects.toThrow(/keys/);
  });
});

describe('warm start against a warm Redis', () => {
  let fleet: Fleet | undefined;
  afterEach(async () => {
    await fleet?.close();
    fleet = undefined;
  });

  it('a second instance serves the top N from Redis with 0 origin calls', async () => {
    const calls: string[] = [];
    const load: Loader<GroupProfile> = async (key) => {
      calls.push(key);
      return { id: Number(key), name: `group ${key}` };
    };
    fleet = await startFleet(
      1,
      { url: inject('redisUrl') },
      { backend: { latencyMs: 0 }, engine: { load, hotKeysSampleEvery: 1 } },
    );
    const first = fleet.instances[0]!.engine;
    for (let i = 1; i <= 40; i++) for (let r = 0; r < i; r++) await first.get(String(i));
    await first.close(); // adds its counted lookups to the record
    const loadsBefore = calls.length;
    const second = fleet.add();
    await second.tier.whenFeedReady();
    const result = await warmStart(second.engine, { hottest: 25 });
    expect(result).toMatchObject({ hottest: 25, filledFromShared: 25, timedOut: false });
    for (let i = 16; i <= 40; i++) expect((await second.engine.get(String(i))).outcome).toBe('hit');
    expect(calls.length).toBe(loadsBefore);
  });
});

describe('the sidecar warm start', () => {
  let sidecar: RunningSidecar | undefined;
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
  });

  it('loads WARM_START_IDS_FILE before listening: the listed groups are hits from the first request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpp-warm-'));
    const file = join(dir, 'ids.txt');
    writeFileSync(file, '# hot groups\n42, 43\n44 45 # more\n\n42\n');
    sidecar = await startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', warmStartIdsFile: file });
    for (const id of ['42', '43', '44', '45']) {
      const response = await fetch(`${sidecar.url}/groups/${id}`);
      expect(response.headers.get('cache-status')).toMatch(/^group-profile-proxy; hit; ttl=\d+$/);
    }
    expect((await fetch(`${sidecar.url}/groups/46`)).headers.get('cache-status')).toMatch(/fwd=miss/);
  });

  it('refuses to start on a file with an invalid id, naming the line, or a file it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpp-warm-'));
    const file = join(dir, 'ids.txt');
    writeFileSync(file, '1,2\n3,abc\n');
    await expect(
      startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', warmStartIdsFile: file }),
    ).rejects.toThrow(/WARM_START_IDS_FILE.*line 2: abc/);
    await expect(
      startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', warmStartIdsFile: join(dir, 'none.txt') }),
    ).rejects.toThrow(/WARM_START_IDS_FILE.*ENOENT/);
  });
});
