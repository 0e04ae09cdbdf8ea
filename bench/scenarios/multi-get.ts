import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { percentile } from '../lib/load.js';
import { backendStats, startMock, startProxy } from '../lib/processes.js';
import type { Row } from '../lib/report.js';
import { seededRandom } from '../lib/zipf.js';

export interface MultiGetOptions {
  /** Clients, all starting at once. */
  clients: number;
  /** Groups each client asks for. */
  groupsPerClient: number;
  /** Distinct groups the clients draw from (their lists overlap). */
  ids: number;
  /** Requests one client has in flight at once when it asks one group per request (a browser's per-host limit). */
  perClientConcurrency: number;
  /** Connections to the proxy, shared by every client. */
  connections: number;
  originLatencyMs: number;
}

export const MULTI_GET_DEFAULTS: MultiGetOptions = {
  clients: 1000,
  groupsPerClient: 50,
  ids: 2000,
  perClientConcurrency: 6,
  connections: 256,
  originLatencyMs: 50,
};

interface Run {
  requests: number;
  errors: number;
  /** Per client: from its start to its last group answered, ms, sorted. */
  clientMs: Float64Array;
  wallMs: number;
}

/** Each client's list: `groupsPerClient` distinct ids out of `ids`, seeded, so both modes ask for the same groups. */
function listsOf(o: MultiGetOptions): number[][] {
  const random = seededRandom(2026);
  return Array.from({ length: o.clients }, () => {
    const list = new Set<number>();
    while (list.size < o.groupsPerClient) list.add(1 + Math.floor(random() * o.ids));
    return [...list];
  });
}

async function runClients(url: string, lists: number[][], mode: 'multi' | 'single', o: MultiGetOptions): Promise<Run> {
  const pool = new Pool(url, { connections: o.connections, pipelining: 1 });
  let requests = 0;
  let errors = 0;
  const get = async (path: string): Promise<void> => {
    requests++;
    try {
      const response = await pool.request({ path, method: 'GET' });
      const body = await response.body.text();
      if (response.statusCode !== 200) errors++;
      // A multi-get is only good if every id in it is: count the ids answered with an error.
      else if (mode === 'multi') errors += (body.match(/"error":\{"code":"(?!GROUP_NOT_FOUND)/g) ?? []).length;
    } catch {
      errors++;
    }
  };
  const client = async (list: number[]): Promise<number> => {
    const started = performance.now();
    if (mode === 'multi') {
      await get(`/groups?ids=${list.join(',')}`);
    } else {
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < list.length) await get(`/groups/${list[next++]!}`);
      };
      await Promise.all(Array.from({ length: o.perClientConcurrency }, lane));
    }
    return performance.now() - started;
  };
  const started = performance.now();
  const clientMs = Float64Array.from(await Promise.all(lists.map(client))).sort();
  const wallMs = performance.now() - started;
  await pool.close();
  return { requests, errors, clientMs, wallMs };
}

/**
 * 1,000 clients each asking for 50 groups out of 2,000 (lists overlap), all at once, from a cold
 * proxy: one multi-get per client against 50 single requests per client (6 at a time, as a
 * browser would). Requests, upstream calls and each client's time to its last group.
 */
export async function multiGet(options: Partial<MultiGetOptions> = {}): Promise<Row[]> {
  const o = { ...MULTI_GET_DEFAULTS, ...options };
  const lists = listsOf(o);
  const distinct = new Set(lists.flat()).size;
  const rows: Row[] = [];
  // The old defaults (a fixed bound of 64, batching off) beside today's (adaptive limit, batching auto).
  const OLD_DEFAULTS = { UPSTREAM_CONCURRENCY: 'fixed', UPSTREAM_MAX_CONCURRENCY: '64', UPSTREAM_CONNECTIONS: '64' };
  const runs = [
    { mode: 'multi', batch: 'off', limit: 'fixed 64', env: OLD_DEFAULTS },
    { mode: 'single', batch: 'off', limit: 'adaptive', env: {} },
    { mode: 'multi', batch: 'off', limit: 'adaptive', env: {} },
    { mode: 'single', batch: 'auto', limit: 'adaptive', env: {} },
    { mode: 'multi', batch: 'auto', limit: 'adaptive', env: {} },
  ] as const;
  for (const { mode, batch, limit, env } of runs) {
    const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs), MOCK_MAX_ID: String(o.ids) });
    const proxy = await startProxy({
      UPSTREAM_URL: mock.url,
      UPSTREAM_BATCH: batch,
      MAX_CONNECTIONS: String(o.connections * 2),
      ...env,
    }).catch(async (error: unknown) => {
      await mock.stop();
      throw error;
    });
    try {
      const run = await runClients(proxy.url, lists, mode, o);
      const stats = await backendStats(mock.url);
      const label =
        mode === 'multi'
          ? `1 multi-get of ${o.groupsPerClient} per client`
          : `${o.groupsPerClient} single requests per client`;
      rows.push({
        scenario: `${o.clients} clients × ${o.groupsPerClient} of ${o.ids} groups: ${label}, batching ${batch}, ${limit} limit`,
        requests: run.requests,
        downstreamCalls: stats.calls,
        distinctIds: Object.keys(stats.byId).length,
        errors: run.errors,
        // Latencies here are per client (its last group answered), not per request.
        p50: percentile(run.clientMs, 50),
        p95: percentile(run.clientMs, 95),
        p99: percentile(run.clientMs, 99),
        rps: run.requests / (run.wallMs / 1000),
      });
    } finally {
      await proxy.stop();
      await mock.stop();
    }
  }
  console.log(
    `${distinct} distinct groups asked for in all; latencies are per client, from its start to its last group answered`,
  );
  return rows;
}
