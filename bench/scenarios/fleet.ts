import { runLoad } from '../lib/load.js';
import { backendStats, startMock, startProxy, type Running } from '../lib/processes.js';
import { startRedis } from '../lib/redis.js';
import { row, type Row } from '../lib/report.js';

export interface FleetOptions {
  proxies: number;
  requests: number;
  originLatencyMs: number;
}

export const FLEET_DEFAULTS: FleetOptions = { proxies: 4, requests: 1000, originLatencyMs: 50 };

/**
 * Fleet: N proxy processes sharing one Redis; a burst for one cold group
 * spread round-robin over them. Per-process caches would make N calls; the
 * fleet-wide lease makes one.
 */
export async function fleet(options: Partial<FleetOptions> = {}): Promise<Row[]> {
  const o = { ...FLEET_DEFAULTS, ...options };
  const redis = await startRedis();
  const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs) });
  const proxies: Running[] = [];
  try {
    for (let i = 0; i < o.proxies; i++)
      proxies.push(await startProxy({ UPSTREAM_URL: mock.url, REDIS_URL: redis.url, REDIS_PREFIX: 'bench:' }));
    await new Promise((resolve) => setTimeout(resolve, 500)); // let every instance connect to Redis
    const loads = await Promise.all(
      proxies.map((proxy) =>
        runLoad({
          url: proxy.url,
          connections: Math.ceil(o.requests / o.proxies),
          requests: Math.ceil(o.requests / o.proxies),
          path: () => '/groups/7777777',
        }),
      ),
    );
    const merged = {
      requests: loads.reduce((n, l) => n + l.requests, 0),
      errors: loads.reduce((n, l) => n + l.errors, 0),
      statuses: {},
      durationMs: Math.max(...loads.map((l) => l.durationMs)),
      latencies: Float64Array.from(loads.flatMap((l) => [...l.latencies])).sort(),
    };
    return [
      row(
        `fleet: ${o.requests} requests over ${o.proxies} proxies sharing Redis`,
        merged,
        (await backendStats(mock.url)).calls,
      ),
    ];
  } finally {
    for (const proxy of proxies) await proxy.stop();
    await mock.stop();
    redis.stop();
  }
}
