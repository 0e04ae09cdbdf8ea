import { describe, expect, it } from 'vitest';
import { BodyArena } from '../src/engine/body-arena.js';
import { createEntry, type CacheEntry } from '../src/engine/entry.js';
import { L1Cache } from '../src/engine/l1.js';

const SLAB = 64 * 1024;
const decode = (body: Buffer): unknown => JSON.parse(body.toString('utf8'));

/** A body whose bytes say which key and which version it is, padded to `size`. */
function bodyFor(key: string, version: number, size: number): Buffer {
  const head = `{"k":"${key}","v":${version},"p":"`;
  return Buffer.from(`${head + 'x'.repeat(Math.max(0, size - head.length - 2))}"}`);
}

function entryOf(body: Buffer): CacheEntry {
  return createEntry('found', body, 1_000, 60_000, 0, decode);
}

/** Deterministic sizes and picks (xorshift), so a failure replays. */
function prng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('BodyArena', () => {
  it('places bodies back to back in shared slabs and gives oversized ones a slab of their own', () => {
    const arena = new BodyArena({ slabBytes: SLAB });
    const small = Array.from({ length: 30 }, (_, i) => arena.place(bodyFor(String(i), 0, 1500)));
    expect(new Set(small.map((p) => p.slab)).size).toBe(1);
    expect(small.map((p) => p.offset)).toEqual(small.map((_, i) => i * 1500));
    const big = arena.place(Buffer.alloc(SLAB / 2, 7));
    expect(big.slab.bytes.length).toBe(SLAB / 2);
    expect(arena.place(bodyFor('after', 0, 1500)).slab).toBe(small[0]!.slab); // the shared slab keeps filling
    expect(arena.liveBytes).toBe(31 * 1500 + SLAB / 2);
    expect(arena.slabBytes).toBe(SLAB + SLAB / 2);
  });

  it('frees a slab once its last body is released, the one being filled included', () => {
    const arena = new BodyArena({ slabBytes: SLAB });
    const placed = Array.from({ length: 50 }, (_, i) => arena.place(bodyFor(String(i), 0, 2000)));
    expect(arena.slabBytes).toBe(2 * SLAB);
    for (const p of placed) arena.release(p.slab, 2000);
    expect(arena.liveBytes).toBe(0);
    expect(arena.slabBytes).toBe(0);
  });
});

describe('L1Cache body arena', () => {
  it('copies held bodies into the arena; bodies read back byte for byte', () => {
    const tier = new L1Cache<unknown>({ maxEntries: 1000, maxBytes: 64 * 1024 * 1024, entryOverheadBytes: 0 });
    const expected = new Map<string, Buffer>();
    for (let i = 0; i < 500; i++) {
      const body = bodyFor(String(i), 0, 500 + (i % 7) * 300);
      expected.set(String(i), Buffer.from(body));
      tier.set(String(i), entryOf(body));
      body.fill(0); // the tier owns a copy: the caller's buffer may be reused
    }
    for (const [key, body] of expected) expect(tier.get(key)!.body.equals(body)).toBe(true);
    expect(tier.liveBodyBytes).toBe([...expected.values()].reduce((sum, b) => sum + b.length, 0));
    expect(tier.get('3')!.value).toMatchObject({ k: '3', v: 0 });
  });

  it('does not place an entry the LRU refused (larger than maxBytes), and clear() frees every slab', () => {
    const tier = new L1Cache<unknown>({ maxEntries: 10, maxBytes: 4096, entryOverheadBytes: 0 });
    tier.set('big', entryOf(bodyFor('big', 0, 5000)));
    expect(tier.get('big')).toBeUndefined();
    expect(tier.liveBodyBytes).toBe(0);
    expect(tier.arenaBytes).toBe(0);
    tier.set('a', entryOf(bodyFor('a', 0, 1000)));
    tier.set('a', tier.get('a')!); // the same entry again: placed once
    expect(tier.liveBodyBytes).toBe(1000);
    tier.clear();
    expect(tier.liveBodyBytes).toBe(0);
    expect(tier.arenaBytes).toBe(0);
  });

  it('under churn (overwrites, deletes, evictions) keeps arena memory within 1.25× the live bytes plus three slabs, every body intact', () => {
    // 1 MiB maxBytes → 64 KiB slabs; ~600 live bodies of 300–2300 bytes, 30k random replacements.
    const tier = new L1Cache<unknown>({ maxEntries: 600, maxBytes: 1024 * 1024, entryOverheadBytes: 0 });
    const random = prng(42);
    const expected = new Map<string, Buffer>();
    let worstRatio = 0;
    let compactions = 0;
    let previousArena = 0;
    for (let step = 0; step < 30_000; step++) {
      const key = String(Math.floor(random() * 800));
      if (random() < 0.1) {
        tier.delete(key);
        expected.delete(key);
      } else {
        const body = bodyFor(key, step, 300 + Math.floor(random() * 2000));
        tier.set(key, entryOf(body));
        expected.set(key, body);
      }
      if (tier.arenaBytes < previousArena - SLAB) compactions++;
      previousArena = tier.arenaBytes;
      const live = tier.liveBodyBytes;
      expect(tier.arenaBytes).toBeLessThanOrEqual(1.25 * live + 2 * SLAB + SLAB);
      if (live > 0) worstRatio = Math.max(worstRatio, tier.arenaBytes / live);
    }
    // Evictions dropped some keys the map still has; every key the tier holds has its latest body.
    let held = 0;
    for (const [key, body] of expected) {
      const entry = tier.get(key);
      if (entry === undefined) continue;
      held++;
      expect(entry.body.equals(body), key).toBe(true);
    }
    expect(held).toBe(tier.size);
    expect(tier.liveBodyBytes).toBe(
      [...expected].filter(([key]) => tier.get(key) !== undefined).reduce((sum, [, b]) => sum + b.length, 0),
    );
    expect(compactions).toBeGreaterThan(0);
    expect(worstRatio).toBeGreaterThan(1);
  });

  it('a body read before a compaction moved it still holds the same bytes afterwards', () => {
    const tier = new L1Cache<unknown>({ maxEntries: 10_000, maxBytes: 1024 * 1024, entryOverheadBytes: 0 });
    for (let i = 0; i < 400; i++) tier.set(String(i), entryOf(bodyFor(String(i), 0, 1000)));
    const survivor = tier.get('5')!;
    const before = survivor.body; // e.g. a response still writing it
    const copy = Buffer.from(before);
    // Replace every other key until a compaction has moved the survivor's slab away.
    let version = 1;
    while (survivor.body.buffer === before.buffer && version < 50) {
      for (let i = 0; i < 400; i++) if (i !== 5) tier.set(String(i), entryOf(bodyFor(String(i), version, 1000)));
      version++;
    }
    expect(survivor.body.buffer).not.toBe(before.buffer);
    expect(before.equals(copy)).toBe(true);
    expect(survivor.body.equals(copy)).toBe(true);
    expect(tier.get('5')).toBe(survivor);
  });
});
