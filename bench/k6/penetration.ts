/**
 * Cache penetration: 10 scanners ask for made-up ids (above the backend's id space) while
 * members send Zipf(1.1) traffic over existing groups. Run it against a proxy without a guard,
 * with EXISTENCE_FILTER=on UPSTREAM_ID_EXPORT=on (once the filter is filled:
 * gpp_existence_filter_authoritative 1), and with MISS_BUDGET=on
 * MISS_BUDGET_CLIENT_HEADER=x-client-id, and compare the upstream calls the scan caused and the
 * members' p99. The Node runner (`npm run bench -- penetration`) does all three by itself.
 *
 * Environment:
 *   PROXY_URL     the proxy,                          default http://127.0.0.1:8080
 *   BACKEND_URL   the mock backend,                   default http://127.0.0.1:9090
 *   GROUPS        the backend's id space (MOCK_MAX_ID), default 1000000: scan ids are above it
 *   SCANNERS      scanning users,                     default 10
 *   MEMBERS       Zipf users,                         default 54
 *   MEMBER_IDS    groups the members ask for,         default 10000
 *   DURATION      test length,                        default 60s
 *   P99_MS        members' p(99) threshold in ms,     default 200; 'off' drops it
 *
 * Pass: members see no failed request and, unless P99_MS=off, their p(99) under P99_MS. The summary
 * line gives the scan's upstream calls as a share of its requests (target ≤ 1 % with the filter).
 */
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import type { Options } from 'k6/options';
import { zipfPicker } from './lib/zipf.ts';
import { backendStats, type BackendStats } from './lib/backend.ts';
import { p99Threshold, SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const GROUPS = Number(__ENV.GROUPS || 1_000_000);
const MEMBER_IDS = Number(__ENV.MEMBER_IDS || 10_000);
const DURATION = __ENV.DURATION || '60s';

const scanRequests = new Counter('scan_requests');
const scanCalls = new Counter('scan_downstream_calls');

const thresholds: Record<string, string[]> = { 'http_req_failed{scenario:members}': ['rate==0'] };
const P99 = p99Threshold(__ENV.P99_MS, 200);
if (P99 !== null) thresholds['http_req_duration{scenario:members}'] = [P99];

export const options: Options = {
  scenarios: {
    scanners: { executor: 'constant-vus', vus: Number(__ENV.SCANNERS || 10), duration: DURATION, exec: 'scan' },
    members: { executor: 'constant-vus', vus: Number(__ENV.MEMBERS || 54), duration: DURATION, exec: 'member' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds,
};

const zipfId = zipfPicker(MEMBER_IDS, 1.1);

export function setup(): BackendStats {
  return backendStats(BACKEND_URL);
}

export function scan(): void {
  const id = GROUPS + 1 + Math.floor(Math.random() * 1e12);
  // A 404 (from the filter or the backend) or a 429 (the budget) is the expected answer.
  http.get(`${PROXY_URL}/groups/${id}`, {
    headers: { 'x-client-id': `scanner-${__VU}` },
    tags: { name: 'scan' },
    responseCallback: http.expectedStatuses(404, 429),
  });
  scanRequests.add(1);
}

export function member(): void {
  http.get(`${PROXY_URL}/groups/${zipfId()}`, {
    headers: { 'x-client-id': `member-${__VU}` },
    tags: { name: 'member' },
  });
}

export function teardown(before: BackendStats): void {
  const after = backendStats(BACKEND_URL);
  let calls = 0;
  for (const id of Object.keys(after.byId))
    if (Number(id) > GROUPS) calls += (after.byId[id] ?? 0) - (before.byId[id] ?? 0);
  scanCalls.add(calls);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  const requests = data.metrics.scan_requests?.values.count ?? 0;
  const calls = data.metrics.scan_downstream_calls?.values.count ?? 0;
  const members =
    data.metrics['http_req_duration{scenario:members}']?.values ?? data.metrics.http_req_duration?.values ?? {};
  const share = requests === 0 ? 0 : calls / requests;
  const line = `penetration: scan ${requests} requests, ${calls} upstream calls (${(100 * share).toFixed(2)} %); members p99 ${(members['p(99)'] ?? 0).toFixed(1)} ms\n`;
  return { stdout: line, 'summary-penetration.json': JSON.stringify(data, null, 2) };
}
