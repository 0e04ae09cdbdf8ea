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
 *
 * Run: k6 run bench/k6/zipf.ts
 */
import { check } from 'k6';
import http from 'k6/http';
import type { Options } from 'k6/options';
import { backendStats, profileRequests, recordDownstream, reductionSummary, type BackendStats, type SummaryData } from './lib/backend.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const BACKEND_URL = __ENV.BACKEND_URL || 'http://127.0.0.1:9090';
const IDS = Number(__ENV.IDS || 100_000);
const EXPONENT = Number(__ENV.EXPONENT || 1.1);

export const options: Options = {
  scenarios: {
    zipf: { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '10s' },
  },
  thresholds: {
    'http_req_failed{scenario:zipf}': ['rate<0.001'],
    'http_req_duration{scenario:zipf}': ['p(99)<80'],
  },
};

// The CDF is built once per VU, in the init context.
const cdf = new Float64Array(IDS);
let total = 0;
for (let k = 1; k <= IDS; k++) {
  total += 1 / Math.pow(k, EXPONENT);
  cdf[k - 1] = total;
}

function zipfId(): number {
  const u = Math.random() * total;
  let lo = 0;
  let hi = IDS - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo + 1;
}

export function setup(): BackendStats {
  return backendStats(BACKEND_URL);
}

export default function (): void {
  const response = http.get(`${PROXY_URL}/groups/${zipfId()}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  check(response, { 'status is 200 or 404': (r) => r.status === 200 || r.status === 404 });
}

export function teardown(before: BackendStats): void {
  recordDownstream(BACKEND_URL, before);
}

export function handleSummary(data: SummaryData): Record<string, string> {
  return reductionSummary('zipf', data);
}
