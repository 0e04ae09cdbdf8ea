import { readFileSync } from 'node:fs';
import { percentile } from '../lib/load.js';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';
import { BurstClient } from '../lib/burst-client.js';
import {
  backendStats,
  pinThisProcess,
  startBareServer,
  startMock,
  startNode,
  startProxy,
  type Running,
} from '../lib/processes.js';
import { wrk, type WrkResult } from '../lib/wrk.js';
import { perSecond, type Row } from '../lib/report.js';

export interface HotPathOptions {
  seconds: number;
  connections: number;
  rounds: number;
  /** 1: start the proxy with plain `node`, without SIDECAR_NODE_FLAGS (to see what the flags cost). */
  stockNode: number;
}

export const HOT_PATH_DEFAULTS: HotPathOptions = { seconds: 3, connections: 64, rounds: 6, stockNode: 0 };

/** CPU time (user + system, all threads) a process has used so far, in seconds. */
function cpuSeconds(pid: number): number {
  // Fields 14 and 15 of /proc/<pid>/stat, counted after the parenthesised command name, in clock ticks (100 Hz).
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Measured extends WrkResult {
  /** Requests answered per CPU-second the server used. */
  perCpuSecond: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * L1-hit throughput on one core next to a bare node:http server serving the
 * same bytes and headers, in the same run. Both servers are pinned to CPU 0,
 * wrk (64 connections per server) to CPU 1.
 *
 * - Alone: rounds alternate which server goes first (ABBA); each server has
 *   the core to itself. Gives req/s and the p99 at 64 connections.
 * - Side by side: both servers loaded at the same time on the same core, so
 *   the scheduler splits the core between them and whatever the (virtual)
 *   machine does meanwhile hits both alike. Requests per CPU-second of each
 *   is throughput per core; on a noisy VM this ratio varies a few percent
 *   between rounds where the alone ratio varies by 30%.
 */
export async function hotPath(options: Partial<HotPathOptions> = {}): Promise<Row[]> {
  const o = { ...HOT_PATH_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: '0' });
  // Both servers run on the same V8 flags, so the ratio is the cost of the proxy's code alone.
  const nodeArgs = o.stockNode === 1 ? [] : [...SIDECAR_NODE_FLAGS];
  const proxy = await startProxy({ UPSTREAM_URL: mock.url, TTL_MS: '3600000' }, { cpu: '0', nodeArgs });
  try {
    const bare = await startBareServer(proxy.url, {}, { cpu: '0', nodeArgs });
    try {
      type Name = 'bare' | 'proxy';
      const servers: Record<Name, Running> = { bare, proxy };
      const load = async (name: Name, seconds: number): Promise<Measured> => {
        const pid = servers[name].child.pid!;
        const cpuBefore = cpuSeconds(pid);
        const result = await wrk(`${servers[name].url}/groups/42`, { connections: o.connections, seconds, cpu: '1' });
        return { ...result, perCpuSecond: result.requests / Math.max(0.01, cpuSeconds(pid) - cpuBefore) };
      };
      // Warm both JITs before measuring.
      await Promise.all([load('bare', 3), load('proxy', 3)]);
      const alone: Record<Name, Measured>[] = [];
      for (let round = 0; round < o.rounds; round++) {
        const order: Name[] = round % 4 === 0 || round % 4 === 3 ? ['bare', 'proxy'] : ['proxy', 'bare'];
        const pair = {} as Record<Name, Measured>;
        for (const name of order) pair[name] = await load(name, o.seconds);
        alone.push(pair);
      }
      const together: Record<Name, Measured>[] = [];
      for (let round = 0; round < o.rounds; round++) {
        const [bareRun, proxyRun] = await Promise.all([load('bare', o.seconds), load('proxy', o.seconds)]);
        together.push({ bare: bareRun, proxy: proxyRun });
      }
      const ratio = (rounds: Record<Name, Measured>[], of: (m: Measured) => number) =>
        median(rounds.map((r) => of(r.proxy) / of(r.bare)));
      const summary = (name: Name): Measured => ({
        requests: median(alone.map((r) => r[name].requests)),
        rps: median(alone.map((r) => r[name].rps)),
        p50Ms: median(alone.map((r) => r[name].p50Ms)),
        p99Ms: median(alone.map((r) => r[name].p99Ms)),
        errors: [...alone, ...together].reduce((n, r) => n + r[name].errors, 0),
        perCpuSecond: median(together.map((r) => r[name].perCpuSecond)),
      });
      const bareRow = summary('bare');
      const proxyRow = summary('proxy');
      const perCore = ratio(together, (m) => m.perCpuSecond);
      console.log(
        `\nboth servers started as: node ${nodeArgs.join(' ') || '(no flags)'}; ${o.rounds} rounds of ${o.seconds} s each way`,
      );
      console.log(
        `\n| server, pinned to CPU 0 (medians) | alone: req/s | alone: p50 ms | alone: p99 ms | side by side: req per CPU-second | errors |`,
      );
      console.log(`| --- | ---: | ---: | ---: | ---: | ---: |`);
      for (const [name, r] of [
        ['bare node:http, same bytes and headers', bareRow],
        ['proxy, L1 hit', proxyRow],
      ] as const) {
        console.log(
          `| ${name} | ${Math.round(r.rps)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${Math.round(r.perCpuSecond)} | ${r.errors} |`,
        );
      }
      console.log(`\n| proxy ÷ bare node:http (median of per-round ratios) | measured | target |`);
      console.log(`| --- | ---: | ---: |`);
      console.log(`| throughput per core (side by side, req per CPU-second) | ${perCore.toFixed(3)} | ≥ 0.9 |`);
      console.log(`| req/s, each alone on the core | ${ratio(alone, (m) => m.rps).toFixed(3)} | |`);
      console.log(`| proxy p99 at ${o.connections} connections, alone | ${proxyRow.p99Ms.toFixed(2)} ms | ≤ 5 ms |`);
      console.log(
        `\nper-round ratios, side by side: ${together.map((r) => (r.proxy.perCpuSecond / r.bare.perCpuSecond).toFixed(3)).join(', ')}`,
      );
      console.log(`per-round ratios, alone: ${alone.map((r) => (r.proxy.rps / r.bare.rps).toFixed(3)).join(', ')}`);
      return [
        {
          scenario: 'hot-path: bare node:http (alone)',
          requests: bareRow.requests,
          downstreamCalls: 0,
          errors: bareRow.errors,
          p50: bareRow.p50Ms,
          p95: Number.NaN,
          p99: bareRow.p99Ms,
          rps: bareRow.rps,
        },
        {
          scenario: 'hot-path: proxy L1 hit (alone)',
          requests: proxyRow.requests,
          downstreamCalls: 1,
          errors: proxyRow.errors,
          p50: proxyRow.p50Ms,
          p95: Number.NaN,
          p99: proxyRow.p99Ms,
          rps: proxyRow.rps,
        },
      ];
    } finally {
      await bare.stop();
    }
  } finally {
    await proxy.stop();
    await mock.stop();
  }
}

export interface ColdBurstOptions {
  /** Identical requests of each burst, one per keep-alive connection. */
  requests: number;
  originLatencyMs: number;
  /** Measured bursts against each server (after 5 warm-up bursts). */
  rounds: number;
  /** 1: both servers on stock node flags instead of the sidecar's. */
  stockNode: number;
}

export const COLD_BURST_DEFAULTS: ColdBurstOptions = { requests: 1000, originLatencyMs: 50, rounds: 5, stockNode: 0 };

/**
 * A cold burst of 1000 identical requests over already-open keep-alive
 * connections against a 50 ms origin: the latency the proxy adds to waiters.
 * The server is pinned to CPU 0 and this process, the load generator (raw
 * sockets, see burst-client.ts), to CPU 1. The same burst against an ideal
 * coalescing server (bench/bare-burst-server.mjs) gives the floor of this
 * generator on this machine.
 */
export async function coldBurst(options: Partial<ColdBurstOptions> = {}): Promise<Row[]> {
  const { requests, originLatencyMs, rounds, stockNode } = { ...COLD_BURST_DEFAULTS, ...options };
  const nodeArgs = stockNode === 1 ? [] : [...SIDECAR_NODE_FLAGS];
  pinThisProcess('1');
  const rows: Row[] = [];
  const mock = await startMock({ MOCK_LATENCY_MS: String(originLatencyMs) });
  const proxy = await startProxy({ UPSTREAM_URL: mock.url }, { cpu: '0', nodeArgs });
  const floor = await startNode(
    'bench/bare-burst-server.mjs',
    { ORIGIN_MS: String(originLatencyMs) },
    /bare burst server listening/,
    { cpu: '0', nodeArgs },
  );
  try {
    console.log(
      `\nboth servers started as: node ${nodeArgs.join(' ') || '(no flags)'}, pinned to CPU 0; load generator on CPU 1`,
    );
    for (const [label, target] of [
      ['proxy', proxy.url],
      ['ideal coalescing server (floor)', floor.url],
    ] as const) {
      const client = await BurstClient.open(target, requests);
      try {
        // Bursts on other keys first: a serving process has compiled its miss path and set up its
        // connections long before a burst comes; the first bursts of a new process measure V8's JIT.
        for (let warmup = 0; warmup < 5; warmup++) await client.burst(`/groups/${4_000_000 + warmup}`);
        for (let round = 0; round < rounds; round++) {
          const before = await backendStats(mock.url);
          const { answers, durationMs } = await client.burst(`/groups/${5_000_000 + round}`);
          const after = await backendStats(mock.url);
          const sorted = Float64Array.from(answers, (a) => a.latencyMs).sort();
          rows.push({
            scenario: `cold burst ${requests}, origin ${originLatencyMs} ms, ${label} (round ${round + 1})`,
            requests,
            downstreamCalls: label === 'proxy' ? after.calls - before.calls : 1,
            errors: answers.filter((a) => a.status !== 200).length,
            p50: percentile(sorted, 50),
            p95: percentile(sorted, 95),
            p99: percentile(sorted, 99),
            rps: perSecond(answers.length, durationMs),
          });
        }
      } finally {
        client.close();
      }
    }
    const target = originLatencyMs + 30;
    console.log(`\n| server | p99 per round, ms | median p99 | rounds with p99 ≤ ${target} ms (origin + 30) |`);
    console.log('| --- | --- | ---: | ---: |');
    for (const label of ['proxy', 'ideal coalescing server (floor)']) {
      const p99s = rows.filter((r) => r.scenario.includes(`, ${label} (`)).map((r) => r.p99);
      console.log(
        `| ${label} | ${p99s.map((p) => p.toFixed(1)).join(', ')} | ${median(p99s).toFixed(1)} | ${p99s.filter((p) => p <= target).length} of ${p99s.length} |`,
      );
    }
    return rows;
  } finally {
    await floor.stop();
    await proxy.stop();
    await mock.stop();
  }
}
