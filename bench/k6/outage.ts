/**
 * Origin outage mid-run: users keep asking for a set of popular groups while
 * the backend fails for a while. Cached groups must keep answering 200 (stale
 * if need be) and the breaker must hold traffic off the backend.
 *
 * Environment:
 *   PROXY_URL     the proxy,                          default http://127.0.0.1:8080
 *   BACKEND_URL   the mock backend (its /__mode is switched), default http://127.0.0.1:9090
 *   VUS           users,                              default 50
 *   GROUPS        distinct popular groups,            default 100
 *   OUTAGE_AFTER  seconds before the outage,          default 10
 *   OUTAGE_FOR    seconds of outage,                  default 10
 *   TAIL          seconds after the outage,           default 10
 *
 * Run: k6 run bench/k6/outage.ts   (run the proxy with a short TTL_MS, e.g. 5000, to see stale answers)
 */
import { check, sleep } from 'k6';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { backendStats, profileRequests, recordDownstream, setBackendMode, type BackendStats } from './lib/backend.ts';
import { reductionSummary, SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const GROUPS = Number(__ENV.GROUPS || 100);
const OUTAGE_AFTER = Number(__ENV.OUTAGE_AFTER || 10);
const OUTAGE_FOR = Number(__ENV.OUTAGE_FOR || 10);
const TAIL = Number(__ENV.TAIL || 10);

export const options: Options = {
  scenarios: {
    users: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 50),
      duration: `${OUTAGE_AFTER + OUTAGE_FOR + TAIL}s`,
      exec: 'users',
    },
    outage: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${OUTAGE_AFTER}s`,
      exec: 'outage',
      maxDuration: `${OUTAGE_FOR + 30}s`,
    },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    'http_req_failed{scenario:users}': ['rate==0'],
    'checks{scenario:users}': ['rate==1'],
  },
};

export function setup(): BackendStats {
  // Warm every group once, so the outage hits cached groups.
  for (let id = 1; id <= GROUPS; id++) http.get(`${PROXY_URL}/groups/${id}`, { tags: { name: 'warm-up' } });
  return backendStats(BACKEND_URL);
}

export function users(): void {
  const id = 1 + Math.floor(Math.random() * GROUPS);
  const response = http.get(`${PROXY_URL}/groups/${id}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  check(response, { 'cached group answered 200': (r) => r.status === 200 });
  sleep(0.01);
}

export function outage(): void {
  setBackendMode(BACKEND_URL, 'error');
  sleep(OUTAGE_FOR);
  setBackendMode(BACKEND_URL, 'normal');
}

export function teardown(before: BackendStats): void {
  setBackendMode(BACKEND_URL, 'normal');
  recordDownstream(BACKEND_URL, before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  return reductionSummary('outage', data);
}
