// Helpers shared by the k6 scenarios: the mock backend's call counters, read
// in setup() and teardown() to count downstream calls. Only k6's own modules.
import http from 'k6/http';
import { Counter } from 'k6/metrics';

/** Downstream calls the group-profile backend received during the test (its /__stats, after minus before). */
export const downstreamCalls = new Counter('downstream_calls');

/** Profile requests sent to the proxies (setup and control requests excluded). */
export const profileRequests = new Counter('profile_requests');

export interface BackendStats {
  calls: number;
}

export function backendStats(backendUrl: string): BackendStats {
  const response = http.get(`${backendUrl}/__stats`, { tags: { name: 'backend-stats' } });
  if (response.status !== 200) throw new Error(`${backendUrl}/__stats answered ${response.status}: is BACKEND_URL the mock backend?`);
  return response.json() as unknown as BackendStats;
}

export function setBackendMode(backendUrl: string, mode: string, latencyMs?: number): void {
  const body = JSON.stringify(latencyMs === undefined ? { mode } : { mode, latencyMs });
  const response = http.post(`${backendUrl}/__mode`, body, { headers: { 'content-type': 'application/json' }, tags: { name: 'backend-mode' } });
  if (response.status !== 204) throw new Error(`setting mode ${mode} failed: ${response.status}`);
}

/** The group a burst asks for: GROUP_ID, or a random id no earlier run is likely to have cached. */
export function coldGroupId(): string {
  return __ENV.GROUP_ID || String(1_000_000 + Math.floor(Math.random() * 9_000_000));
}

/** In teardown: records the downstream calls since setup, so thresholds and the summary can use them. */
export function recordDownstream(backendUrl: string, before: BackendStats): number {
  const calls = backendStats(backendUrl).calls - before.calls;
  downstreamCalls.add(calls);
  return calls;
}

export interface SummaryData {
  metrics: Record<string, { values: Record<string, number> } | undefined>;
}

/** A summary line with requests, downstream calls and the reduction ratio, plus the JSON for tooling. */
export function reductionSummary(scenario: string, data: SummaryData): Record<string, string> {
  const requests = data.metrics['profile_requests']?.values['count'] ?? 0;
  const calls = data.metrics['downstream_calls']?.values['count'] ?? 0;
  const failed = data.metrics['http_req_failed']?.values['rate'] ?? 0;
  const duration = data.metrics['http_req_duration']?.values ?? {};
  const ratio = calls === 0 ? 'inf' : (requests / calls).toFixed(1);
  const line =
    `${scenario}: ${requests} requests, ${calls} downstream calls, reduction ${ratio}x, ` +
    `p95 ${(duration['p(95)'] ?? 0).toFixed(1)} ms, p99 ${(duration['p(99)'] ?? 0).toFixed(1)} ms, failed ${(failed * 100).toFixed(2)}%\n`;
  return { stdout: line, [`summary-${scenario}.json`]: JSON.stringify(data, null, 2) };
}
