import { percentile } from '../lib/load.js';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';
import { BurstClient } from '../lib/burst-client.js';
import { backendStats, pinThisProcess, startMock, startNode, startProxy } from '../lib/processes.js';
import { wrk } from '../lib/wrk.js';
import type { Row } from '../lib/report.js';

export interface HotPathOptions {
  seconds: number;
  connections: number;
  rounds: number;
  /** 1: start the proxy with plain `node`, without SIDECAR_NODE_FLAGS (to see what the flags cost). */
  stockNode: number;
}

export const HOT_PATH_DEFAULTS: HotPathOptions = { seconds: 5, connections: 64, rounds: 5, stockNode: 0 };

/**
 * L1-hit throughput on one core next to a bare node:http server serving the
 * same bytes and headers, measured side by side in the same run: each server
 * pinned to CPU 0, wrk pinned to CPU 1, 64 connections.
 */
export async function hotPath(options: Partial<HotPathOptions> = {}): Promise<Row[]> {
  const o = { ...HOT_PATH_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: '0' });
  // Both servers run on the same V8 flags, so the ratio is the cost of the proxy's code alone.
  const nodeArgs = o.stockNode === 1 ? [] : [...SIDECAR_NODE_FLAGS];
  const proxy = await startProxy({ UPSTREAM_URL: mock.url, TTL_MS: '3600000' }, { cpu: '0', nodeArgs });
  try {
    const hit = await fetch(`${proxy.url}/groups/42`);
    const body = Buffer.from(await hit.arrayBuffer());
    const headers: Record<string, string> = {};
    for (const name of ['content-type', 'cache-control', 'age', 'cache-status', 'etag']) headers[name] = (await fetch(`${proxy.url}/groups/42`)).headers.get(name)!;
    const bare = await startNode('bench/bare-server.mjs', {}, /bare server listening/, {
      args: [JSON.stringify({ headers, body: body.toString('base64') })],
      cpu: '0',
      nodeArgs,
    });
    try {
      const results = { bare: [] as ReturnType<typeof wrk>[], proxy: [] as ReturnType<typeof wrk>[] };
      // Warm both JITs before measuring; then interleave rounds so noise hits both alike.
      wrk(`${bare.url}/groups/42`, { connections: o.connections, seconds: 3, cpu: '1' });
      wrk(`${proxy.url}/groups/42`, { connections: o.connections, seconds: 3, cpu: '1' });
      for (let round = 0; round < o.rounds; round++) {
        results.bare.push(wrk(`${bare.url}/groups/42`, { connections: o.connections, seconds: o.seconds, cpu: '1' }));
        results.proxy.push(wrk(`${proxy.url}/groups/42`, { connections: o.connections, seconds: o.seconds, cpu: '1' }));
      }
      // The median round of each, by throughput.
      const median = (list: ReturnType<typeof wrk>[]) => [...list].sort((a, b) => a.rps - b.rps)[Math.floor(list.length / 2)]!;
      const bareBest = median(results.bare);
      const proxyBest = median(results.proxy);
      console.log(`\nboth servers started as: node ${nodeArgs.join(' ') || '(no flags)'}`);
      console.log(`\n| server (pinned to one core), median of ${o.rounds} rounds | req/s | p50 ms | p99 ms | errors | vs bare node:http |`);
      console.log(`| --- | ---: | ---: | ---: | ---: | ---: |`);
      for (const [name, r] of [['bare node:http, same bytes and headers', bareBest], ['proxy, L1 hit', proxyBest]] as const) {
        console.log(`| ${name} | ${Math.round(r.rps)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.errors} | ${(r.rps / bareBest.rps).toFixed(3)} |`);
      }
      const ratios = results.proxy.map((r, i) => (r.rps / results.bare[i]!.rps).toFixed(3));
      console.log(`\nall rounds, req/s: bare ${results.bare.map((r) => Math.round(r.rps)).join(', ')}; proxy ${results.proxy.map((r) => Math.round(r.rps)).join(', ')}; per-round ratio ${ratios.join(', ')}`);
      return [
        { scenario: 'hot-path: bare node:http', requests: Math.round(bareBest.rps * o.seconds), downstreamCalls: 0, errors: bareBest.errors, p50: bareBest.p50Ms, p95: Number.NaN, p99: bareBest.p99Ms, rps: bareBest.rps },
        { scenario: 'hot-path: proxy L1 hit', requests: Math.round(proxyBest.rps * o.seconds), downstreamCalls: 1, errors: proxyBest.errors, p50: proxyBest.p50Ms, p95: Number.NaN, p99: proxyBest.p99Ms, rps: proxyBest.rps },
      ];
    } finally {
      await bare.stop();
    }
  } finally {
    await proxy.stop();
    await mock.stop();
  }
}

/**
 * A cold burst of 1000 identical requests over already-open keep-alive
 * connections against a 50 ms origin: the latency the proxy adds to waiters.
 * The server is pinned to CPU 0 and this process, the load generator (raw
 * sockets, see burst-client.ts), to CPU 1. The same burst against an ideal
 * coalescing server (bench/bare-burst-server.mjs) gives the floor of this
 * generator on this machine.
 */
export async function coldBurst(options: { requests?: number; originLatencyMs?: number; rounds?: number; stockNode?: number } = {}): Promise<Row[]> {
  const requests = options.requests ?? 1000;
  const originLatencyMs = options.originLatencyMs ?? 50;
  const rounds = options.rounds ?? 5;
  const nodeArgs = options.stockNode === 1 ? [] : [...SIDECAR_NODE_FLAGS];
  pinThisProcess('1');
  const rows: Row[] = [];
  const mock = await startMock({ MOCK_LATENCY_MS: String(originLatencyMs) });
  const proxy = await startProxy({ UPSTREAM_URL: mock.url }, { cpu: '0', nodeArgs });
  const floor = await startNode('bench/bare-burst-server.mjs', { ORIGIN_MS: String(originLatencyMs) }, /bare burst server listening/, { cpu: '0', nodeArgs });
  try {
    console.log(`\nboth servers started as: node ${nodeArgs.join(' ') || '(no flags)'}, pinned to CPU 0; load generator on CPU 1`);
    for (const [label, target] of [['proxy', proxy.url], ['ideal coalescing server (floor)', floor.url]] as const) {
      const client = await BurstClient.open(target, requests);
      try {
        // Bursts on other keys first: a serving process has compiled its miss path and set up its
        // connections long before a burst comes; the first bursts of a new process measure V8's JIT.
        for (let warmup = 0; warmup < 5; warmup++) await client.burst(`/groups/${4_000_000 + warmup}`);
        for (let round = 0; round < rounds; round++) {
          const before = await backendStats(mock.url);
          const answers = await client.burst(`/groups/${5_000_000 + round}`);
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
            rps: Number.NaN,
          });
        }
      } finally {
        client.close();
      }
    }
    return rows;
  } finally {
    await floor.stop();
    await proxy.stop();
    await mock.stop();
  }
}
