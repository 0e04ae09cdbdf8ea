/**
 * The Node runner for the benchmark scenarios (the same ones as bench/k6/),
 * for machines without k6: `npm run bench -- <scenario> [--duration-ms N] [--connections N]`.
 * It starts what it needs (mock backend, proxy) on loopback, prints a markdown
 * table and writes the rows to bench/results/<scenario>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { markdownTable, type Row } from './lib/report.js';
import { burst } from './scenarios/burst.js';
import { fleet } from './scenarios/fleet.js';
import { coldBurst, hotPath } from './scenarios/hot-path.js';
import { instructions } from './scenarios/instructions.js';
import { memory } from './scenarios/memory.js';
import { outage } from './scenarios/outage.js';
import { zipf } from './scenarios/zipf.js';

type Scenario = (options: Record<string, number>) => Promise<Row[]>;

const SCENARIOS: Record<string, { run: Scenario; about: string }> = {
  burst: { run: (o) => burst(o), about: '1000 simultaneous requests for one cold group, with and without the proxy; writes the downstream-calls chart' },
  zipf: { run: (o) => zipf(o), about: 'Zipf(1.1) over 100k ids from cold, 64 connections, 10 s; batching off and on' },
  outage: { run: (o) => outage(o), about: 'steady traffic over cached groups while the backend fails mid-run' },
  fleet: { run: (o) => fleet(o), about: '1000 simultaneous requests spread over 4 proxies sharing one redis-server' },
  'hot-path': { run: (o) => hotPath(o), about: 'L1-hit req/s on one core vs a bare node:http server with the same bytes (wrk, taskset)' },
  instructions: { run: (o) => instructions(o), about: 'L1-hit instructions per request vs the bare server, under valgrind callgrind (repeatable on a noisy VM)' },
  memory: { run: (o) => memory(o), about: 'resident memory with 100k cached ~1.5 KB profiles, and the L1_MAX_BYTES bound' },
  'cold-burst': { run: (o) => coldBurst(o), about: '1000 identical cold requests over warm keep-alive connections, 50 ms origin: added latency' },
};

function parseFlags(args: string[]): Record<string, number> {
  const flags: Record<string, number> = {};
  for (let i = 0; i < args.length; i++) {
    const match = /^--([a-z-]+)$/.exec(args[i]!);
    const value = Number(args[i + 1]);
    if (!match || !Number.isFinite(value)) throw new Error(`bad flag near ${args[i]}: use --name <number>`);
    flags[match[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] = value;
    i++;
  }
  return flags;
}

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  const scenario = name === undefined ? undefined : SCENARIOS[name];
  if (scenario === undefined) {
    console.error(`usage: npm run bench -- <scenario> [--duration-ms N] [--connections N]\n\nscenarios:`);
    for (const [key, { about }] of Object.entries(SCENARIOS)) console.error(`  ${key.padEnd(10)} ${about}`);
    process.exit(name === undefined ? 0 : 1);
  }
  const rows = await scenario.run(parseFlags(rest));
  // A scenario without load rows (instructions) prints and writes its own results.
  if (rows.length === 0) return;
  console.log(`\n### ${name}\n\n${markdownTable(rows)}\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/${name}.json`, import.meta.url), JSON.stringify({ scenario: name, node: process.version, rows }, null, 2) + '\n');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
