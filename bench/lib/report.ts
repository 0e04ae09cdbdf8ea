import { percentile, type LoadResult } from './load.js';

export interface Row {
  scenario: string;
  requests: number;
  downstreamCalls: number;
  /** Distinct ids the upstream was asked for, when the scenario reports it. */
  distinctIds?: number;
  errors: number;
  p50: number;
  p95: number;
  p99: number;
  rps: number;
}

/** Requests per second over a wall time in ms. */
export function perSecond(requests: number, durationMs: number): number {
  return requests / (durationMs / 1000);
}

export function row(scenario: string, load: LoadResult, downstreamCalls: number, distinctIds?: number): Row {
  return {
    scenario,
    requests: load.requests,
    downstreamCalls,
    distinctIds,
    errors: load.errors,
    p50: percentile(load.latencies, 50),
    p95: percentile(load.latencies, 95),
    p99: percentile(load.latencies, 99),
    rps: perSecond(load.requests, load.durationMs),
  };
}

const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(1) : '-');
const rate = (value: number): string => (Number.isFinite(value) ? String(Math.round(value)) : '-');

export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    '| scenario | requests | downstream calls | reduction (requests ÷ calls) | distinct ids | calls per distinct id | p50 ms | p95 ms | p99 ms | errors | req/s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const reduction = r.downstreamCalls === 0 ? '∞' : (r.requests / r.downstreamCalls).toFixed(1);
    const perId =
      r.distinctIds === undefined || r.distinctIds === 0 ? '-' : (r.downstreamCalls / r.distinctIds).toFixed(3);
    lines.push(
      `| ${r.scenario} | ${r.requests} | ${r.downstreamCalls} | ${reduction} | ${r.distinctIds ?? '-'} | ${perId} | ${ms(r.p50)} | ${ms(r.p95)} | ${ms(r.p99)} | ${r.errors} | ${rate(r.rps)} |`,
    );
  }
  return lines.join('\n');
}
