/**
 * Zipf(1.1) over 100k groups for a fixed time from a cold cache, 64 users in
 * a closed loop: popular groups are asked often, the long tail rarely.
 *
 * Environment:
 *   PROXY_URL    the proxy,            default http://127.0.0.1:8080
 *   BACKEND_URL  the mock backend,     default http://127.0.0.1:9090
 *   VUS          users,                default 64
 *   DURATION     test length,          default 10s
 *   IDS          distinct groups,      default 100000
 *   EXPONENT     Zipf exponent,        default 1.1
 *   P99_MS       p(99) threshold in ms, default 80; 'off' drops it
 *
 * The default 80 ms assumes the backend of the README (MOCK_LATENCY_MS=50, so
 * a miss takes at least 50 ms) and k6 on cores of its own: its own machine, or
 * pinned apart from the proxy and the backend. It does not hold where k6
 * shares the proxy's cores (e.g. the 2-core CI machine, everything on two
 * cores): k6's own CPU time then lands in the measured latency. Pass a bound
 * measured on that machine, or P99_MS=off.
 *
 * Run: k6 run bench/k6/zipf.ts   (from a cold proxy cache; the backend need not be fresh)
 * Pass: under 0.1% failed requests and, unless P99_MS=off, p(99) under P99_MS.
 * The summary line also gives calls per distinct id: downstream calls ÷ the
 * distinct ids the backend was asked for during the run (as the Node runner).
 */
import { check } from 'k6';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { zipfPicker } from './lib/zipf.ts';
import { backendStats, profileRequests, recordDownstreamPerId, type BackendStats } from './lib/backend.ts';
import { p99Threshold, reductionSummary, SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const IDS = Number(__ENV.IDS || 100_000);
const EXPONENT = Number(__ENV.EXPONENT || 1.1);
/** 'p(99)<80' unless P99_MS says otherwise; null for P99_MS=off. See the header for where 80 applies. */
const P99 = p99Threshold(__ENV.P99_MS, 80);

const thresholds: Record<string, string[]> = { 'http_req_failed{scenario:zipf}': ['rate<0.001'] };
if (P99 !== null) thresholds['http_req_duration{scenario:zipf}'] = [P99];

export const options: Options = {
  scenarios: {
    zipf: { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '10s' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds,
};

const zipfId = zipfPicker(IDS, EXPONENT);

export function setup(): BackendStats {
  return backendStats(BACKEND_URL);
}

export default function (): void {
  const response = http.get(`${PROXY_URL}/groups/${zipfId()}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  check(response, { 'status is 200 or 404': (r) => r.status === 200 || r.status === 404 });
}

// setup()'s stats (calls and byId) come back here; the distinct ids asked
// during the run are those whose byId count rose since then.
export function teardown(before: BackendStats): void {
  recordDownstreamPerId(BACKEND_URL, before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  return reductionSummary('zipf', data, { perDistinctId: true });
}
