import { percentile, runLoad } from '../lib/load.js';
import { BurstClient, type BurstAnswer } from '../lib/burst-client.js';
import { backendStats, resetBackend, startMock, startProxy, type Running } from '../lib/processes.js';
import { perSecond, type Row } from '../lib/report.js';

export interface DistinctBurstOptions {
  /** Simultaneous requests, each for a different cold group. */
  requests: number;
  /** The mock backend's latency (no jitter): a healthy, if slow, upstream. */
  originLatencyMs: number;
  /** Bursts, each against a freshly started proxy (a breaker opened by one round cannot spill into the next). */
  rounds: number;
  /** Misses served at an easy pace (32 connections) before each burst, to warm the JIT; 0 bursts into a cold process. */
  warmupRequests: number;
}

export const DISTINCT_BURST_DEFAULTS: DistinctBurstOptions = {
  requests: 5000,
  originLatencyMs: 200,
  rounds: 8,
  warmupRequests: 2000,
};

export interface RoundResult {
  answers: Map<string, number>;
  backendCalls: number;
  backendMaxInFlight: number;
  breakerOpened: number;
  breakerState: string;
  /** Loads shed by the proxy, by reason (gpp_origin_shed_total): expected_wait, queue_timeout, queue_full. */
  shedBy: Record<string, number>;
  /** The upstream limit after the burst (gpp_origin_concurrency_limit). */
  limitAfter: number;
  /** A new cold id asked right after the burst: what it got. */
  probe: string;
  loopLagMaxMs: number;
  latencies: Float64Array;
  /** The burst's wall time, from its first request written to its last answer read, ms. */
  durationMs: number;
}

/**
 * Overload against a healthy upstream: N simultaneous requests for N distinct
 * cold groups, default proxy settings, on a proxy warmed by `warmupRequests`
 * earlier misses at an easy pace (or a cold one with 0). Counts the answers by status and error
 * code (served, shed with 503 OVERLOADED, 504 UPSTREAM_TIMEOUT, 503
 * CIRCUIT_OPEN), the calls that reached the backend, whether the breaker
 * opened, and what a new cold id gets right after. A healthy upstream must
 * never be reported as failing: overload inside the proxy is shed, not timed
 * out, and never opens the breaker.
 */
export async function distinctBurst(options: Partial<DistinctBurstOptions> = {}): Promise<Row[]> {
  const o = { ...DISTINCT_BURST_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs) });
  const results: RoundResult[] = [];
  let nextGroup = 2_000_000;
  try {
    for (let round = 0; round < o.rounds; round++) {
      await resetBackend(mock.url);
      const proxy = await startProxy({ UPSTREAM_URL: mock.url });
      try {
        // A burst usually meets a process that has served before: warm its JIT at a pace the upstream takes easily.
        if (o.warmupRequests > 0) {
          await runLoad({
            url: proxy.url,
            connections: 32,
            requests: o.warmupRequests,
            path: (i) => `/groups/${nextGroup + i}`,
          });
          await resetBackend(mock.url);
          nextGroup += o.warmupRequests;
        }
        const base = nextGroup;
        nextGroup += o.requests + 1;
        results.push(await oneBurst(proxy, mock, o.requests, base));
      } finally {
        await proxy.stop();
      }
    }
  } finally {
    await mock.stop();
  }
  printTable(o, results);
  return roundRows(o, results);
}

/** One row per round; its rate is the burst's answers over the burst's wall time. */
export function roundRows(o: DistinctBurstOptions, results: readonly RoundResult[]): Row[] {
  return results.map((r, i) => ({
    scenario: `round ${i + 1}: ${o.requests} distinct cold ids, ${o.originLatencyMs} ms origin`,
    requests: o.requests,
    downstreamCalls: r.backendCalls,
    distinctIds: o.requests,
    errors: o.requests - (r.answers.get('200') ?? 0),
    p50: percentile(r.latencies, 50),
    p95: percentile(r.latencies, 95),
    p99: percentile(r.latencies, 99),
    rps: perSecond(r.latencies.length, r.durationMs),
  }));
}

async function oneBurst(proxy: Running, mock: Running, requests: number, base: number): Promise<RoundResult> {
  const client = await BurstClient.open(proxy.url, requests);
  try {
    const before = await scrape(proxy.url); // also resets the event-loop lag maximum, so the next scrape covers the burst alone
    const { answers, durationMs } = await client.burst((i) => `/groups/${base + i}`, 120_000);
    const after = await scrape(proxy.url);
    const probe = await fetch(`${proxy.url}/groups/${base + requests}`);
    const probeBody = await probe.text();
    const stats = await backendStats(mock.url);
    return {
      answers: tally(answers),
      backendCalls: stats.calls,
      backendMaxInFlight: stats.maxInFlight,
      breakerOpened: metricValue(after, 'gpp_breaker_transitions_total{state="open"}'),
      breakerState: ['closed', 'half-open', 'open'][metricValue(after, 'gpp_breaker_state')] ?? '?',
      shedBy: Object.fromEntries(
        ['expected_wait', 'queue_timeout', 'queue_full'].map((reason) => [
          reason,
          metricValue(after, `gpp_origin_shed_total{reason="${reason}"}`) -
            metricValue(before, `gpp_origin_shed_total{reason="${reason}"}`),
        ]),
      ),
      limitAfter: metricValue(after, 'gpp_origin_concurrency_limit'),
      probe: probe.status === 200 ? '200' : `${probe.status} ${codeOf(probeBody)}`,
      loopLagMaxMs: metricValue(after, 'gpp_nodejs_eventloop_lag_max_seconds') * 1000,
      latencies: Float64Array.from(answers.map((a) => a.latencyMs)).sort(),
      durationMs,
    };
  } finally {
    client.close();
  }
}

function tally(answers: readonly BurstAnswer[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const answer of answers) {
    const key = answer.errorBody === undefined ? String(answer.status) : `${answer.status} ${codeOf(answer.errorBody)}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function codeOf(body: string): string {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? '?';
  } catch {
    return '?';
  }
}

async function scrape(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

/** The value of one sample line (`name{labels} value`) of a Prometheus text exposition; 0 when absent. */
export function metricValue(exposition: string, sample: string): number {
  for (const line of exposition.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

function printTable(o: DistinctBurstOptions, results: readonly RoundResult[]): void {
  const codes = [...new Set(results.flatMap((r) => [...r.answers.keys()]))].sort();
  const lines = [
    `\n### distinct-burst: ${o.requests} distinct cold ids at once, ${o.originLatencyMs} ms origin, default settings, ${o.warmupRequests} warm-up misses\n`,
    `| round | ${codes.join(' | ')} | backend calls | backend max in flight | shed by expected wait / queue timeout / queue full | limit after | breaker opened | breaker after | new cold id after | max loop lag ms | p99 ms |`,
    `| ---: | ${codes.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |`,
  ];
  results.forEach((r, i) => {
    const cells = codes.map((code) => String(r.answers.get(code) ?? 0));
    lines.push(
      `| ${i + 1} | ${cells.join(' | ')} | ${r.backendCalls} | ${r.backendMaxInFlight} | ${r.shedBy.expected_wait} / ${r.shedBy.queue_timeout} / ${r.shedBy.queue_full} | ${r.limitAfter} | ${r.breakerOpened} | ${r.breakerState} | ${r.probe} | ${r.loopLagMaxMs.toFixed(0)} | ${percentile(r.latencies, 99).toFixed(0)} |`,
    );
  });
  console.log(lines.join('\n'));
}
