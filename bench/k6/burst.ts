/**
 * Burst: 1000 virtual users ask for the same cold group at the same instant,
 * as when a whole group opens its profile at once.
 *
 * Environment:
 *   PROXY_URL    the proxy,               default http://127.0.0.1:8080
 *   BACKEND_URL  the mock backend,        default http://127.0.0.1:9090 (its /__stats counts downstream calls)
 *   VUS          simultaneous users,      default 1000
 *   GROUP_ID     the group asked for,     default a random cold id
 *
 * Run: k6 run bench/k6/burst.ts
 * Pass: downstream calls <= 1 and no failed request.
 */
import { check } from 'k6';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { backendStats, coldGroupId, profileRequests, recordDownstream, type BackendStats } from './lib/backend.ts';
import { reductionSummary, SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const VUS = Number(__ENV.VUS || 1000);

export const options: Options = {
  scenarios: {
    burst: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '60s' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    downstream_calls: ['count<=1'],
    'http_req_failed{scenario:burst}': ['rate==0'],
  },
};

interface Data {
  before: BackendStats;
  groupId: string;
}

export function setup(): Data {
  return { before: backendStats(BACKEND_URL), groupId: coldGroupId() };
}

export default function (data: Data): void {
  const response = http.get(`${PROXY_URL}/groups/${data.groupId}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  check(response, { 'status is 200': (r) => r.status === 200 });
}

export function teardown(data: Data): void {
  recordDownstream(BACKEND_URL, data.before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  return reductionSummary('burst', data);
}
