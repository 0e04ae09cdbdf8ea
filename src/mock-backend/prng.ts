/** A seeded PRNG, so generated profiles are the same across runs and processes (Math.random would differ). */

/** mulberry32: 32-bit state, good enough spread for fake data, a few ns per call. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Folds integers (ids can exceed 32 bits) into one well-mixed 32-bit seed: neighbouring ids look unalike. */
export function seedOf(...values: number[]): number {
  let hash = 0x811c9dc5;
  for (const value of values) {
    const low = value >>> 0;
    const high = Math.floor(value / 4294967296) >>> 0;
    hash = Math.imul(hash ^ low, 0x01000193);
    hash = Math.imul(hash ^ high, 0x01000193);
    hash ^= hash >>> 16;
    hash = Math.imul(hash, 0x85ebca6b);
    hash ^= hash >>> 13;
  }
  return hash >>> 0;
}

/** Helpers over a PRNG; kept separate so the profile generator reads as data. */
export interface Picker {
  float(): number;
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  sample<T>(items: readonly T[], count: number): T[];
}

export function picker(random: () => number): Picker {
  const int = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));
  return {
    float: random,
    int,
    pick<T>(items: readonly T[]): T {
      const item = items[int(0, items.length - 1)];
      if (item === undefined) throw new RangeError('pick from an empty list');
      return item;
    },
    // Partial Fisher–Yates: distinct items, order depends only on the seed.
    sample<T>(items: readonly T[], count: number): T[] {
      const pool = items.slice();
      const n = Math.min(count, pool.length);
      for (let i = 0; i < n; i++) {
        const j = int(i, pool.length - 1);
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      return pool.slice(0, n);
    },
  };
}
