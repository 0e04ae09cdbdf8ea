/**
 * Multi-get: 1000 clients each ask for 50 groups out of 2000 (their lists overlap), all at once,
 * as members opening their group lists. MODE=multi sends one `GET /groups?ids=…` per client;
 * MODE=single sends 50 `GET /groups/{id}`, BATCH_PER_CLIENT at a time (a browser's per-host
 * limit). Run both against a cold proxy and compare requests, downstream calls and the time each
 * client waited for its last group.
 *
 * Environment:
 *   PROXY_URL           the proxy,                      default http://127.0.0.1:8080
 *   BACKEND_URL         the mock backend,               default http://127.0.0.1:9090
 *   MODE                multi or single,                default multi
 *   VUS                 clients,                        default 1000
 *   GROUPS_PER_CLIENT   groups each client asks for,    default 50 (at most the proxy's MULTI_GET_MAX_IDS)
 *   IDS                 groups the lists draw from,     default 2000 (ids 1..IDS)
 *   BATCH_PER_CLIENT    single requests in flight per client, default 6
 *
 * Run: k6 run -e MODE=single bench/k6/multi-get.ts; restart the proxy; k6 run -e MODE=multi bench/k6/multi-get.ts
 * Pass: no failed request, and every group of every list answered (no per-id error but GROUP_NOT_FOUND).
 */
import { check } from 'k6';
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { backendStats, profileRequests, recordDownstream, type BackendStats } from './lib/backend.ts';
import { SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const MODE = __ENV.MODE === 'single' ? 'single' : 'multi';
const GROUPS_PER_CLIENT = Number(__ENV.GROUPS_PER_CLIENT || 50);
const IDS = Number(__ENV.IDS || 2000);

/** From a client's first request to its last group answered. */
const clientDuration = new Trend('client_duration', true);
/** Groups answered with an error other than GROUP_NOT_FOUND (a multi-get answers 200 with per-id errors). */
const failedGroups = new Counter('failed_groups');

export const options: Options = {
  scenarios: {
    'multi-get': { executor: 'per-vu-iterations', vus: Number(__ENV.VUS || 1000), iterations: 1, maxDuration: '120s' },
  },
  batchPerHost: Number(__ENV.BATCH_PER_CLIENT || 6),
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds: {
    'http_req_failed{scenario:multi-get}': ['rate==0'],
    failed_groups: ['count==0'],
  },
};

function listOfGroups(): number[] {
  const list: number[] = [];
  while (list.length < GROUPS_PER_CLIENT) {
    const id = 1 + Math.floor(Math.random() * IDS);
    if (list.indexOf(id) === -1) list.push(id);
  }
  return list;
}

export function setup(): BackendStats {
  return backendStats(BACKEND_URL);
}

export default function (): void {
  const list = listOfGroups();
  const started = Date.now();
  if (MODE === 'multi') {
    const response = http.get(`${PROXY_URL}/groups?ids=${list.join(',')}`, { tags: { name: 'multi-get' } });
    profileRequests.add(1);
    const body = typeof response.body === 'string' ? response.body : '';
    const failures = (body.match(/"error":\{"code":"(?!GROUP_NOT_FOUND)/g) || []).length;
    failedGroups.add(response.status === 200 ? failures : list.length);
    check(response, { 'status is 200': (r) => r.status === 200 });
  } else {
    const responses = http.batch(
      list.map(
        (id) =>
          ['GET', `${PROXY_URL}/groups/${id}`, null, { tags: { name: 'profile' } }] as [
            'GET',
            string,
            null,
            { tags: { name: string } },
          ],
      ),
    );
    profileRequests.add(responses.length);
    for (const response of responses) {
      if (response.status !== 200 && response.status !== 404) failedGroups.add(1);
    }
  }
  clientDuration.add(Date.now() - started);
}

export function teardown(before: BackendStats): void {
  recordDownstream(BACKEND_URL, before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  const requests = data.metrics.profile_requests?.values.count ?? 0;
  const calls = data.metrics.downstream_calls?.values.count ?? 0;
  const client = data.metrics.client_duration?.values ?? {};
  const failed = data.metrics.failed_groups?.values.count ?? 0;
  const line =
    `multi-get (${MODE}): ${requests} requests, ${calls} downstream calls, ` +
    `per client p50 ${(client.med ?? 0).toFixed(0)} ms, p99 ${(client['p(99)'] ?? 0).toFixed(0)} ms, ${failed} groups failed\n`;
  return { stdout: line, [`summary-multi-get-${MODE}.json`]: JSON.stringify(data, null, 2) };
}
