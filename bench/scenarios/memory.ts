import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';
import { startMock, startProxy } from '../lib/processes.js';
import type { Row } from '../lib/report.js';

export interface MemoryOptions {
  profiles: number;
  connections: number;
  /** V8 old-space cap of the proxy, MB (0 = Node's default). */
  maxOldSpaceMb: number;
  /** V8 semi-space cap of the proxy, MB (0 = Node's default). */
  maxSemiSpaceMb: number;
  /** 1: start the proxy with plain `node`, without SIDECAR_NODE_FLAGS. */
  stockNode: number;
  /** First RSS reading, this long after the fill, ms: the heap still holds the fill's garbage. */
  settleMs: number;
  /** Second reading, this long after the fill, ms: V8's memory reducer has run a compacting GC on the idle process. */
  restMs: number;
}

export const MEMORY_DEFAULTS: MemoryOptions = {
  profiles: 100_000,
  connections: 64,
  maxOldSpaceMb: 0,
  maxSemiSpaceMb: 0,
  stockNode: 0,
  settleMs: 2_000,
  restMs: 12_000,
};

function residentBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

async function gauge(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

/**
 * Fills L1 with 100k distinct ~1.5 KB profiles and reads the proxy's resident
 * memory twice (target: at most 1.3 × payload + 80 MB): 2 s after the fill,
 * with the fill's garbage still on the heap, and at rest, once V8's memory
 * reducer has compacted the idle heap. Then fills again under a
 * small L1_MAX_BYTES to show the bound holds.
 */
export async function memory(options: Partial<MemoryOptions> = {}): Promise<Row[]> {
  const o = { ...MEMORY_DEFAULTS, ...options };
  const MB = 1024 * 1024;
  const lines: string[] = [];
  const nodeArgs = [
    ...(o.stockNode === 1 ? [] : SIDECAR_NODE_FLAGS),
    ...(o.maxOldSpaceMb > 0 ? [`--max-old-space-size=${o.maxOldSpaceMb}`] : []),
    ...(o.maxSemiSpaceMb > 0 ? [`--max-semi-space-size=${o.maxSemiSpaceMb}`] : []),
  ];
  for (const maxBytes of [1024 * MB, 64 * MB]) {
    const mock = await startMock({ MOCK_LATENCY_MS: '0' });
    const proxy = await startProxy(
      {
        UPSTREAM_URL: mock.url,
        L1_MAX_ENTRIES: String(Math.max(100_000, o.profiles)),
        L1_MAX_BYTES: String(maxBytes),
        TTL_MS: '3600000',
      },
      { nodeArgs },
    );
    const pool = new Pool(proxy.url, { connections: o.connections });
    try {
      const baseline = residentBytes(proxy.child.pid!);
      let payload = 0;
      let next = 1;
      await Promise.all(
        Array.from({ length: o.connections }, async () => {
          while (next <= o.profiles) {
            const id = next++;
            const response = await pool.request({ path: `/groups/${id}`, method: 'GET' });
            payload += (await response.body.arrayBuffer()).byteLength;
          }
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, o.settleMs));
      const rssAfterFill = residentBytes(proxy.child.pid!);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, o.restMs - o.settleMs)));
      const rss = residentBytes(proxy.child.pid!);
      const entries = await gauge(proxy.url, 'gpp_l1_entries');
      const l1Bytes = await gauge(proxy.url, 'gpp_l1_bytes');
      const heapUsed = await gauge(proxy.url, 'gpp_nodejs_heap_size_used_bytes');
      const heapTotal = await gauge(proxy.url, 'gpp_nodejs_heap_size_total_bytes');
      const external = await gauge(proxy.url, 'gpp_nodejs_external_memory_bytes');
      console.error(
        `heap used ${(heapUsed / MB).toFixed(0)} MB, heap total ${(heapTotal / MB).toFixed(0)} MB, external ${(external / MB).toFixed(0)} MB`,
      );
      const limit = 1.3 * payload + 80 * MB;
      lines.push(
        `| ${maxBytes / MB} MiB | ${o.profiles} | ${(payload / MB).toFixed(1)} MB | ${entries} | ${(l1Bytes / MB).toFixed(1)} MB | ${(baseline / MB).toFixed(0)} MB | ${(rssAfterFill / MB).toFixed(0)} MB | ${(rss / MB).toFixed(0)} MB | ${(limit / MB).toFixed(0)} MB | ${rss <= limit ? 'yes' : 'NO'} / ${rssAfterFill <= limit ? 'yes' : 'NO'} | ${l1Bytes <= maxBytes ? 'yes' : 'NO'} |`,
      );
    } finally {
      await pool.close();
      await proxy.stop();
      await mock.stop();
    }
  }
  console.log(`\nproxy started as: node ${[...nodeArgs, 'dist/cli.js'].join(' ')}`);
  console.log(
    `\n| L1_MAX_BYTES | profiles fetched | payload | L1 entries | L1 bytes | RSS at start | RSS ${o.settleMs / 1000} s after fill | RSS at rest (${o.restMs / 1000} s) | target (1.3 × payload + 80 MB) | within target (at rest / after fill) | L1_MAX_BYTES respected |`,
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const line of lines) console.log(line);
  return [];
}
