/**
 * Warm start: Zipf(1.1) load on an instance that has just joined a warm fleet, counting the
 * answers that were not fresh from its own memory (L1 misses: Redis hits, loads, stale answers).
 * Start the fleet and keep it busy (e.g. bench/k6/zipf.ts with IDS=10000 for 30 s), start a new
 * instance with the default WARM_START_COUNT and run this against it for its first 10 s; then
 * start another with WARM_START_COUNT=0 and run it again. The Node runner
 * (`npm run bench -- warm-start`) does all of that by itself.
 *
 * Environment:
 *   PROXY_URL    the new instance,     default http://127.0.0.1:8080
 *   VUS          users,                default 64
 *   DURATION     test length,          default 10s
 *   IDS          distinct groups,      default 10000
 *   EXPONENT     Zipf exponent,        default 1.1
 *   MAX_MISS_RATE  fail when more than this fraction of answers were L1 misses, default off
 *
 * Pass: no failed request (and, with MAX_MISS_RATE, the miss rate under it).
 */
import { check } from 'k6';
import http from 'k6/http';
import { Counter, Rate } from 'k6/metrics';
import type { Options } from 'k6/options';
import { zipfPicker } from './lib/zipf.ts';
import { profileRequests } from './lib/backend.ts';
import { SUMMARY_TREND_STATS, type SummaryData } from './lib/summary.ts';

const PROXY_URL = __ENV.PROXY_URL || 'http://127.0.0.1:8080';
const IDS = Number(__ENV.IDS || 10_000);
const EXPONENT = Number(__ENV.EXPONENT || 1.1);

const l1Misses = new Counter('l1_misses');
const l1MissRate = new Rate('l1_miss_rate');

const thresholds: Record<string, string[]> = { 'http_req_failed{scenario:warm-start}': ['rate<0.001'] };
if (__ENV.MAX_MISS_RATE) thresholds.l1_miss_rate = [`rate<${Number(__ENV.MAX_MISS_RATE)}`];

export const options: Options = {
  scenarios: {
    'warm-start': { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '10s' },
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
  thresholds,
};

const zipfId = zipfPicker(IDS, EXPONENT);

/** An answer fresh from the instance's own memory: `hit; ttl=N`, with no detail but `negative`. */
const L1_HIT = /; hit; ttl=-?\d+(; detail=negative)?$/;

export default function (): void {
  const response = http.get(`${PROXY_URL}/groups/${zipfId()}`, { tags: { name: 'profile' } });
  profileRequests.add(1);
  const miss = !L1_HIT.test(response.headers['Cache-Status'] || '');
  if (miss) l1Misses.add(1);
  l1MissRate.add(miss);
  check(response, { 'status is 200 or 404': (r) => r.status === 200 || r.status === 404 });
}

export function handleSummary(data: SummaryData): Record<string, string> {
  const requests = data.metrics.profile_requests?.values.count ?? 0;
  const misses = data.metrics.l1_misses?.values.count ?? 0;
  const line = `warm-start: ${requests} requests, ${misses} L1 misses (${requests === 0 ? 0 : ((100 * misses) / requests).toFixed(2)}%)\n`;
  return { stdout: line, 'summary-warm-start.json': JSON.stringify(data, null, 2) };
}
