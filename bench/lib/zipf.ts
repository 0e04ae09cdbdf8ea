/**
 * Zipf(s) over ranks 1..n: P(k) ∝ 1/k^s. The CDF is built once, each sample
 * is a binary search. `random` is injectable so runs can be repeated.
 */
export function zipfSampler(n: number, s: number, random: () => number = Math.random): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 1; k <= n; k++) {
    total += 1 / k ** s;
    cdf[k - 1] = total;
  }
  for (let i = 0; i < n; i++) cdf[i]! /= total;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

/** A small seeded PRNG, so a workload can be replayed (the mock backend's own mulberry32). */
export { mulberry32 as seededRandom } from '../../src/mock-backend/prng.js';
