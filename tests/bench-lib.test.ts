import { describe, expect, it } from 'vitest';
import { percentile } from '../bench/lib/load.js';
import { markdownTable, row } from '../bench/lib/report.js';
import { barChartSvg } from '../bench/lib/svg.js';
import { seededRandom, zipfSampler } from '../bench/lib/zipf.js';

describe('benchmark helpers', () => {
  it('samples Zipf ranks within range, most often rank 1, with a long tail', () => {
    const sample = zipfSampler(100_000, 1.1, seededRandom(1));
    const counts = new Map<number, number>();
    for (let i = 0; i < 100_000; i++) {
      const k = sample();
      expect(k).toBeGreaterThanOrEqual(1);
      expect(k).toBeLessThanOrEqual(100_000);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    expect(top[0]![0]).toBe(1);
    expect(counts.get(1)! / 100_000).toBeGreaterThan(0.05);
    expect(counts.size).toBeGreaterThan(10_000);
  });

  it('computes nearest-rank percentiles', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
  });

  it('reports the reduction ratio as requests ÷ downstream calls', () => {
    const load = { requests: 1000, errors: 0, statuses: {}, durationMs: 1000, latencies: Float64Array.from([1, 2, 3]) };
    const table = markdownTable([row('burst', load, 1), row('direct', load, 1000, 1000)]);
    expect(table).toContain('| burst | 1000 | 1 | 1000.0 |');
    expect(table).toContain('| direct | 1000 | 1000 | 1.0 | 1000 | 1.000 |');
  });

  it('draws one labelled bar per value', () => {
    const svg = barChartSvg('t', 'x', 'y', ['1', '10'], [{ name: 'a', color: '#000', values: [1, 10] }]);
    expect(svg.match(/<rect x=/g)).toHaveLength(2 + 1); // two bars and one legend swatch
    expect(svg).toContain('>10</text>');
  });
});
