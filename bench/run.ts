/**
 * The Node runner for the benchmark scenarios (the same ones as bench/k6/),
 * for machines without k6: `npm run bench -- <scenario> [--flag <number>]...`.
 * It starts what it needs (mock backend, proxy) on loopback, prints a markdown
 * table and writes the rows to bench/results/<scenario>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { flagOf, parseFlags } from './lib/flags.js';
import { markdownTable, type Row } from './lib/report.js';
import { BURST_DEFAULTS, burst } from './scenarios/burst.js';
import { CHANGES_DEFAULTS, changes } from './scenarios/changes.js';
import { DISTINCT_BURST_DEFAULTS, distinctBurst } from './scenarios/distinct-burst.js';
import { FLEET_DEFAULTS, fleet } from './scenarios/fleet.js';
import { HOT_PATH_DEFAULTS, coldBurst, hotPath } from './scenarios/hot-path.js';
import { INSTRUCTIONS_DEFAULTS, instructions } from './scenarios/instructions.js';
import { MEMORY_DEFAULTS, memory } from './scenarios/memory.js';
import { MULTI_GET_DEFAULTS, multiGet } from './scenarios/multi-get.js';
import { WARM_START_BENCH_DEFAULTS, warmStartBench } from './scenarios/warm-start.js';
import { PENETRATION_DEFAULTS, penetration } from './scenarios/penetration.js';
import { PUSH_DEFAULTS, push } from './scenarios/push.js';
import { OUTAGE_DEFAULTS, outage } from './scenarios/outage.js';
import { ZIPF_DEFAULTS, zipf } from './scenarios/zipf.js';

type Scenario = (options: Record<string, number>) => Promise<Row[]>;

/** Each scenario with the numeric options it takes as flags (`--origin-latency-ms 20`). */
const SCENARIOS: Record<string, { run: Scenario; about: string; options: readonly string[] }> = {
  burst: {
    run: (o) => burst(o),
    about:
      '1000 simultaneous requests for one cold group, with and without the proxy; writes the downstream-calls chart',
    options: Object.keys(BURST_DEFAULTS).filter((key) => key !== 'levels'),
  },
  'distinct-burst': {
    run: (o) => distinctBurst(o),
    about:
      '5000 simultaneous requests for distinct cold groups against a healthy 200 ms backend: served, shed, timed out, breaker',
    options: Object.keys(DISTINCT_BURST_DEFAULTS),
  },
  zipf: {
    run: (o) => zipf(o),
    about: 'Zipf(1.1) over 100k ids from cold, 64 connections, 10 s; batching off and on',
    options: Object.keys(ZIPF_DEFAULTS),
  },
  outage: {
    run: (o) => outage(o),
    about: 'steady traffic over cached groups while the backend fails mid-run',
    options: Object.keys(OUTAGE_DEFAULTS),
  },
  changes: {
    run: (o) => changes(o),
    about:
      'the change feed on Redis: append rate, append → applied latency on 4 instances, stale reads while a reader is cut off',
    options: Object.keys(CHANGES_DEFAULTS),
  },
  push: {
    run: (o) => push(o),
    about:
      'live updates: one change to 10,000 subscribers (one group, 1,000 groups), memory per idle subscriber, a 4-instance fleet, polling against push',
    options: Object.keys(PUSH_DEFAULTS),
  },
  'multi-get': {
    run: (o) => multiGet(o),
    about:
      '1000 clients asking for 50 groups each out of 2000 at once: one multi-get per client against 50 single requests, batching off and on',
    options: Object.keys(MULTI_GET_DEFAULTS),
  },
  'warm-start': {
    run: (o) => warmStartBench(o),
    about:
      'a new instance joining a warm fleet under Zipf load: L1 misses in its first 10 s with WARM_START_COUNT against a cold start',
    options: Object.keys(WARM_START_BENCH_DEFAULTS),
  },
  penetration: {
    run: (o) => penetration(o),
    about:
      '100,000 made-up ids from 10 scanners alongside Zipf traffic: upstream calls and p99 without a guard, with the existence filter, and with the miss budget too; the filter for 10 million ids',
    options: Object.keys(PENETRATION_DEFAULTS),
  },
  fleet: {
    run: (o) => fleet(o),
    about: '1000 simultaneous requests spread over 4 proxies sharing one redis-server',
    options: Object.keys(FLEET_DEFAULTS),
  },
  'hot-path': {
    run: (o) => hotPath(o),
    about: 'L1-hit req/s on one core vs a bare node:http server with the same bytes (wrk, taskset)',
    options: Object.keys(HOT_PATH_DEFAULTS),
  },
  instructions: {
    run: (o) => instructions(o),
    about: 'L1-hit instructions per request vs the bare server, under valgrind callgrind (repeatable on a noisy VM)',
    options: Object.keys(INSTRUCTIONS_DEFAULTS),
  },
  memory: {
    run: (o) => memory(o),
    about: 'resident memory with 100k cached ~1.5 KB profiles, and the L1_MAX_BYTES bound',
    options: Object.keys(MEMORY_DEFAULTS),
  },
  'cold-burst': {
    run: (o) => coldBurst(o),
    about: '1000 identical cold requests over warm keep-alive connections, 50 ms origin: added latency',
    options: ['requests', 'originLatencyMs', 'rounds', 'stockNode'],
  },
};

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  const scenario = name === undefined ? undefined : SCENARIOS[name];
  if (scenario === undefined) {
    console.error(`usage: npm run bench -- <scenario> [--flag <number>]...\n\nscenarios:`);
    for (const [key, { about, options }] of Object.entries(SCENARIOS))
      console.error(`  ${key.padEnd(12)} ${about}\n${' '.repeat(15)}flags: ${options.map(flagOf).join(' ')}`);
    process.exit(name === undefined ? 0 : 1);
  }
  const rows = await scenario.run(parseFlags(rest, scenario.options));
  // A scenario without load rows (instructions) prints and writes its own results.
  if (rows.length === 0) return;
  console.log(`\n### ${name}\n\n${markdownTable(rows)}\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL(`./results/${name}.json`, import.meta.url),
    `${JSON.stringify({ scenario: name, node: process.version, rows }, null, 2)}\n`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
