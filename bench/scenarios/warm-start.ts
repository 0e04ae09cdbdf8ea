import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { percentile, runLoad } from '../lib/load.js';
import { startMock, startProxy, type Running } from '../lib/processes.js';
import { startRedis } from '../lib/redis.js';
import type { Row } from '../lib/report.js';
import { seededRandom, zipfSampler } from '../lib/zipf.js';

export interface WarmStartBenchOptions {
  /** Groups of the fleet's working set. */
  ids: number;
  exponent: number;
  /** How long the first instance serves before the new one joins, ms. */
  warmupMs: number;
  /** How long the new instance is measured from its first request, ms. */
  measureMs: number;
  connections: number;
  originLatencyMs: number;
  /** WARM_START_COUNT of the warm run. */
  warmCount: number;
}

export const WARM_START_BENCH_DEFAULTS: WarmStartBenchOptions = {
  ids: 10_000,
  exponent: 1.1,
  warmupMs: 30_000,
  measureMs: 10_000,
  connections: 64,
  originLatencyMs: 50,
  warmCount: 10_000,
};

interface Measured {
  run: string;
  startMs: number;
  requests: number;
  /** Answers not fresh from the new instance's own memory (Redis hits, loads, collapsed, stale). */
  l1Misses: number;
  originCalls: number;
  p50: number;
  p99: number;
}

/** Sums a counter of the Prometheus text `text` over the series whose labels match `labels`. */
function sumOf(text: string, name: string, labels: RegExp = /.*/): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const match = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (match !== null && labels.test(match[1]!)) total += Number(match[2]);
  }
  return total;
}

/**
 * A new instance joining a warm fleet under Zipf load: the first instance serves the working set
 * for `warmupMs` (filling Redis and the fleet's record of hot groups), then a second one starts,
 * with warm start (WARM_START_COUNT) and without (0), and is measured for its first `measureMs`:
 * how many answers were not L1 hits, and how many upstream calls it made.
 */
export async function warmStartBench(options: Partial<WarmStartBenchOptions> = {}): Promise<Row[]> {
  const o = { ...WARM_START_BENCH_DEFAULTS, ...options };
  const redis = await startRedis();
  const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs), MOCK_MAX_ID: String(o.ids) });
  const env = { UPSTREAM_URL: mock.url, REDIS_URL: redis.url, REDIS_PREFIX: 'bench:' };
  const measured: Measured[] = [];
  let first: Running | undefined;
  try {
    first = await startProxy({ ...env, WARM_START_COUNT: '0' });
    const sample = zipfSampler(o.ids, o.exponent, seededRandom(1));
    const warmup = await runLoad({
      url: first.url,
      connections: o.connections,
      durationMs: o.warmupMs,
      path: () => `/groups/${sample()}`,
    });
    console.log(`warm-up: ${warmup.requests} requests on the first instance over ${(o.warmupMs / 1000).toFixed(0)} s`);
    // Warm first: the cold run's own loads would otherwise add to what Redis holds for the warm one.
    for (const [run, count] of [
      ['warm start', o.warmCount],
      ['cold start', 0],
    ] as const) {
      const started = performance.now();
      const joining = await startProxy({ ...env, WARM_START_COUNT: String(count) });
      const startMs = performance.now() - started;
      try {
        const load = await runLoad({
          url: joining.url,
          connections: o.connections,
          durationMs: o.measureMs,
          path: () => `/groups/${sample()}`,
        });
        const metrics = await (await fetch(`${joining.url}/metrics`)).text();
        const answered = sumOf(metrics, 'gpp_http_requests_total', /route="\/groups\/:id"/);
        const hits = sumOf(metrics, 'gpp_http_requests_total', /route="\/groups\/:id".*cache="hit"/);
        measured.push({
          run: `${run} (WARM_START_COUNT=${count})`,
          startMs,
          requests: load.requests,
          l1Misses: answered - hits,
          originCalls: sumOf(metrics, 'gpp_origin_calls_total'),
          p50: percentile(load.latencies, 50),
          p99: percentile(load.latencies, 99),
        });
      } finally {
        await joining.stop();
      }
    }
  } finally {
    await first?.stop();
    await mock.stop();
    redis.stop();
  }
  const [warm, cold] = measured;
  const fewer = cold!.l1Misses === 0 ? 0 : 1 - warm!.l1Misses / cold!.l1Misses;
  const held = (m: Measured): number => Math.max(0, m.l1Misses - m.originCalls);
  const fewerHeld = held(cold!) === 0 ? 0 : 1 - held(warm!) / held(cold!);
  const lines = [
    `### warm-start\n`,
    `Zipf(${o.exponent}) over ${o.ids} groups, ${o.connections} connections; a new instance's first ${o.measureMs / 1000} s after the fleet served ${o.warmupMs / 1000} s.\n`,
    '| run | start to listening ms | requests | L1 misses | upstream calls | p50 ms | p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...measured.map(
      (m) =>
        `| ${m.run} | ${m.startMs.toFixed(0)} | ${m.requests} | ${m.l1Misses} | ${m.originCalls} | ${m.p50.toFixed(1)} | ${m.p99.toFixed(1)} |`,
    ),
    '',
    `L1 misses in the first ${o.measureMs / 1000} s: ${(100 * fewer).toFixed(1)} % fewer with warm start (target ≥ 90 %).`,
    // Misses that went upstream were groups Redis did not hold (nobody had read them lately): no warm start can know them.
    `Of the misses for groups Redis held (L1 misses less upstream calls): ${(100 * fewerHeld).toFixed(1)} % fewer.`,
  ];
  console.log(`\n${lines.join('\n')}\n`);
  const results = new URL('../results/', import.meta.url);
  mkdirSync(results, { recursive: true });
  writeFileSync(
    new URL('warm-start.json', results),
    `${JSON.stringify(
      {
        scenario: 'warm-start',
        node: process.version,
        options: o,
        measured,
        fewerMisses: fewer,
        fewerHeldMisses: fewerHeld,
      },
      null,
      2,
    )}\n`,
  );
  return [];
}
