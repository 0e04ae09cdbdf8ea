import { runLoad } from '../lib/load.js';
import { backendStats, startMock, startProxy } from '../lib/processes.js';
import { row, type Row } from '../lib/report.js';
import { seededRandom, zipfSampler } from '../lib/zipf.js';

export interface ZipfOptions {
  durationMs: number;
  connections: number;
  ids: number;
  exponent: number;
  originLatencyMs: number;
  /** BATCH_WINDOW_MS of the second batching run (the first uses the proxy's default, 2). */
  batchWindowMs: number;
}

export const ZIPF_DEFAULTS: ZipfOptions = {
  durationMs: 10_000,
  connections: 64,
  ids: 100_000,
  exponent: 1.1,
  originLatencyMs: 50,
  batchWindowMs: 5,
};

/**
 * Zipf(1.1) over 100k group ids from a cold cache, 64 connections, closed
 * loop: how many upstream requests per distinct id fetched, with batching off
 * and on, and the latency that costs.
 */
export async function zipf(options: Partial<ZipfOptions> = {}): Promise<Row[]> {
  const o = { ...ZIPF_DEFAULTS, ...options };
  const rows: Row[] = [];
  const runs = [
    { batch: 'off', windowMs: 2 },
    { batch: 'on', windowMs: 2 },
    { batch: 'on', windowMs: o.batchWindowMs },
  ] as const;
  for (const { batch, windowMs } of runs) {
    const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs), MOCK_MAX_ID: String(o.ids) });
    const proxy = await startProxy({
      UPSTREAM_URL: mock.url,
      UPSTREAM_BATCH: batch,
      BATCH_WINDOW_MS: String(windowMs),
    }).catch(async (error: unknown) => {
      await mock.stop();
      throw error;
    });
    try {
      const sample = zipfSampler(o.ids, o.exponent, seededRandom(42));
      const load = await runLoad({
        url: proxy.url,
        connections: o.connections,
        durationMs: o.durationMs,
        path: () => `/groups/${sample()}`,
      });
      const stats = await backendStats(mock.url);
      rows.push(
        row(
          `zipf(${o.exponent}) ${o.ids} ids, batching ${batch === 'on' ? `on (${windowMs} ms window)` : 'off'}`,
          load,
          stats.calls,
          Object.keys(stats.byId).length,
        ),
      );
    } finally {
      await proxy.stop();
      await mock.stop();
    }
  }
  return rows;
}
