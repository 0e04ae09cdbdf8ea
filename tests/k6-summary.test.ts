import { describe, expect, it } from 'vitest';
import { distinctIdsAsked, p99Threshold, reductionSummary, SUMMARY_TREND_STATS } from '../bench/k6/lib/summary.js';

describe('k6 summary helpers (bench/k6/lib/summary.ts)', () => {
  it('asks k6 for p(99), which its default trend stats leave out', () => {
    expect(SUMMARY_TREND_STATS).toContain('p(99)');
    expect(SUMMARY_TREND_STATS).toContain('p(95)');
  });

  it('P99_MS: default when unset or empty, a number of ms, off, or an error', () => {
    expect(p99Threshold(undefined, 80)).toBe('p(99)<80');
    expect(p99Threshold('', 80)).toBe('p(99)<80');
    expect(p99Threshold('250', 80)).toBe('p(99)<250');
    expect(p99Threshold('12.5', 80)).toBe('p(99)<12.5');
    expect(p99Threshold('off', 80)).toBeNull();
    expect(p99Threshold('OFF', 80)).toBeNull();
    for (const bad of ['abc', '0', '-5', 'Infinity']) expect(() => p99Threshold(bad, 80)).toThrow(/P99_MS/);
  });

  it('counts the ids whose backend count rose, not every id the backend ever saw', () => {
    expect(distinctIdsAsked({ '1': 3, '2': 1 }, { '1': 3, '2': 2, '3': 1 })).toBe(2);
    expect(distinctIdsAsked({}, { '1': 1 })).toBe(1);
    expect(distinctIdsAsked(undefined, undefined)).toBe(0);
  });

  it('prints p99 and, for zipf, calls per distinct id as the Node runner does', () => {
    const metrics = {
      profile_requests: { values: { count: 48469 } },
      downstream_calls: { values: { count: 10321 } },
      downstream_distinct_ids: { values: { count: 10321 } },
      http_req_failed: { values: { rate: 0 } },
      http_req_duration: { values: { 'p(95)': 61.04, 'p(99)': 72.37 } },
    };
    expect(reductionSummary('zipf', { metrics }, { perDistinctId: true }).stdout).toBe(
      'zipf: 48469 requests, 10321 downstream calls for 10321 distinct ids (1.000 per distinct id), reduction 4.7x, p95 61.0 ms, p99 72.4 ms, failed 0.00%\n',
    );
    expect(reductionSummary('burst', { metrics }).stdout).not.toContain('distinct');
    const none = reductionSummary(
      'zipf',
      { metrics: { ...metrics, downstream_distinct_ids: undefined } },
      { perDistinctId: true },
    );
    expect(none.stdout).toContain('for 0 distinct ids (- per distinct id)');
    expect(Object.keys(none)).toEqual(['stdout', 'summary-zipf.json']);
  });
});
