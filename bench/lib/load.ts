import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

export interface LoadOptions {
  /** Base URL of the target, e.g. http://127.0.0.1:8080 (loopback only). */
  url: string;
  /** Concurrent connections, each running one request at a time (closed loop). */
  connections: number;
  /** Stop after this long, ms (closed loop). */
  durationMs?: number;
  /** Or stop after this many requests in total; with `connections` equal to it, a burst. */
  requests?: number;
  /** Path of the i-th request. */
  path: (i: number) => string;
  /** Headers of every request (e.g. a client id). Default: none. */
  headers?: Record<string, string>;
}

export interface LoadResult {
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  durationMs: number;
  /** Latencies in ms, sorted ascending. */
  latencies: Float64Array;
}

/** A bounded load on a loopback target: stops after `durationMs` or `requests`, whichever comes first. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/.test(options.url))
    throw new Error(`refusing to load a non-loopback target: ${options.url}`);
  const limit = options.requests ?? Number.POSITIVE_INFINITY;
  const durationMs = options.durationMs ?? 60_000;
  const pool = new Pool(options.url, { connections: options.connections, pipelining: 1 });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let issued = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const worker = async (): Promise<void> => {
    while (issued < limit && performance.now() < deadline) {
      const i = issued++;
      const t0 = performance.now();
      try {
        const response = await pool.request({ path: options.path(i), method: 'GET', headers: options.headers });
        await response.body.dump();
        statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1;
        if (response.statusCode >= 500) errors++;
      } catch {
        errors++;
        statuses.error = (statuses.error ?? 0) + 1;
      }
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: options.connections }, worker));
  const elapsed = performance.now() - started;
  await pool.close();
  return {
    requests: latencies.length,
    errors,
    statuses,
    durationMs: elapsed,
    latencies: Float64Array.from(latencies).sort(),
  };
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
