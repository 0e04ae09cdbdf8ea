/**
 * Fleet: a burst for one cold group spread over several proxy instances that
 * share one Redis. The whole fleet must make one downstream call.
 *
 * Environment:
 *   PROXY_URLS   comma-separated proxy URLs, default http://127.0.0.1:8080,http://127.0.0.1:8081
 *   BACKEND_URL  the mock backend,           default http://127.0.0.1:9090
 *   VUS          simultaneous users,         default 1000
 *   GROUP_ID     the group asked for,        default a random cold id
 *
 * Run: k6 run bench/k6/fleet.ts   (e.g. against deploy/docker-compose.yml: proxy on 8080, proxy-2 on 8081)
 * Pass: downstream calls <= 1 and no failed request.
 */
import { check } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { backendStats, coldGroupId, profileRequests, recordDownstream, type BackendStats } from './lib/backend.ts';
import { reductionSummary, SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URLS = (__ENV.PROXY_URLS || 'http://127.0.0.1:8080,http://127.0.0.1:8081')
  .split(',')
  .map((url) => url.trim());
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';

export const options: Options = {
  scenarios: {
    fleet: { executor: 'per-vu-iterations', vus: Number(__ENV.VUS || 1000), iterations: 1, maxDuration: '60s' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    downstream_calls: ['count<=1'],
    'http_req_failed{scenario:fleet}': ['rate==0'],
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
  const proxy = PROXY_URLS[exec.vu.idInTest % PROXY_URLS.length];
  const response = http.get(`${proxy}/groups/${data.groupId}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  check(response, { 'status is 200': (r) => r.status === 200 });
}

export function teardown(data: Data): void {
  recordDownstream(BACKEND_URL, data.before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  return reductionSummary('fleet', data);
}
