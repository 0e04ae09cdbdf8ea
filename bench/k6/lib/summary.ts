// The end-of-test summary shared by the k6 scenarios: which trend statistics
// k6 computes, the p(99) threshold input and the summary line. Plain
// TypeScript: no k6 module and no __ENV, so it can be tested from Node too.

/**
 * Trend statistics for every scenario's `options.summaryTrendStats`. k6's
 * default list stops at p(95), so without this the summary's p99 read 0.0.
 */
export const SUMMARY_TREND_STATS: string[] = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

/**
 * A `p(99)<N` threshold from an environment value: unset or empty gives the
 * default, `off` gives null (no threshold), anything else must be a positive
 * number of milliseconds.
 */
export function p99Threshold(raw: string | undefined, defaultMs: number): string | null {
  if (raw === undefined || raw.trim() === '') return `p(99)<${defaultMs}`;
  if (raw.trim().toLowerCase() === 'off') return null;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms <= 0)
    throw new Error(`P99_MS must be a positive number of milliseconds or 'off', got '${raw}'`);
  return `p(99)<${ms}`;
}

/** Ids the backend was asked for between two of its /__stats `byId` maps (ids whose count rose). */
export function distinctIdsAsked(
  before: Record<string, number> | undefined,
  after: Record<string, number> | undefined,
): number {
  let asked = 0;
  for (const [id, count] of Object.entries(after ?? {})) if (count > (before?.[id] ?? 0)) asked++;
  return asked;
}

export interface SummaryData {
  metrics: Record<string, { values: Record<string, number> } | undefined>;
}

export interface SummaryOptions {
  /** Also report distinct ids and calls per distinct id (the `downstream_distinct_ids` counter): the figure for zipf. */
  perDistinctId?: boolean;
}

/** A summary line with requests, downstream calls and the reduction ratio, plus the JSON for tooling. */
export function reductionSummary(
  scenario: string,
  data: SummaryData,
  options: SummaryOptions = {},
): Record<string, string> {
  const requests = data.metrics.profile_requests?.values.count ?? 0;
  const calls = data.metrics.downstream_calls?.values.count ?? 0;
  const failed = data.metrics.http_req_failed?.values.rate ?? 0;
  const duration = data.metrics.http_req_duration?.values ?? {};
  const ratio = calls === 0 ? 'inf' : (requests / calls).toFixed(1);
  let callsPart = `${calls} downstream calls`;
  if (options.perDistinctId === true) {
    const distinct = data.metrics.downstream_distinct_ids?.values.count ?? 0;
    // The Node runner's figure (bench/lib/report.ts): downstream calls ÷ distinct ids the backend was asked for.
    const perId = distinct === 0 ? '-' : (calls / distinct).toFixed(3);
    callsPart += ` for ${distinct} distinct ids (${perId} per distinct id)`;
  }
  const line =
    `${scenario}: ${requests} requests, ${callsPart}, reduction ${ratio}x, ` +
    `p95 ${(duration['p(95)'] ?? 0).toFixed(1)} ms, p99 ${(duration['p(99)'] ?? 0).toFixed(1)} ms, failed ${(failed * 100).toFixed(2)}%\n`;
  return { stdout: line, [`summary-${scenario}.json`]: JSON.stringify(data, null, 2) };
}
