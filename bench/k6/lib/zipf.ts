// Zipf(s) over ranks 1..n for the k6 scenarios (the Node runner has bench/lib/zipf.ts): P(k) ∝ 1/k^s.
// Call it in the init context: the CDF is built once per VU.

/** A picker of ranks 1..ids, each drawn by a binary search of the CDF. */
export function zipfPicker(ids: number, exponent: number): () => number {
  const cdf = new Float64Array(ids);
  let total = 0;
  for (let k = 1; k <= ids; k++) {
    total += 1 / k ** exponent;
    cdf[k - 1] = total;
  }
  return () => {
    const u = Math.random() * total;
    let lo = 0;
    let hi = ids - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}
