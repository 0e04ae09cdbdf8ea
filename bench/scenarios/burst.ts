import { writeFileSync } from 'node:fs';
import { runLoad } from '../lib/load.js';
import { backendStats, resetBackend, startMock, startProxy } from '../lib/processes.js';
import { row, type Row } from '../lib/report.js';
import { barChartSvg } from '../lib/svg.js';

export interface BurstOptions {
  /** Simultaneous requests for one cold group. */
  requests: number;
  originLatencyMs: number;
  /** Concurrency levels of the with/without-proxy sweep drawn in the chart. */
  levels: number[];
}

export const BURST_DEFAULTS: BurstOptions = { requests: 1000, originLatencyMs: 50, levels: [1, 10, 100, 1000, 5000] };

export const CHART_PATH = new URL('../results/downstream-calls.svg', import.meta.url);

/**
 * Burst: N simultaneous requests for one cold group, through the proxy and
 * straight to the backend; then the same at each concurrency level of the
 * sweep, drawn as bench/results/downstream-calls.svg.
 */
export async function burst(options: Partial<BurstOptions> = {}): Promise<Row[]> {
  const o = { ...BURST_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs) });
  const proxy = await startProxy({ UPSTREAM_URL: mock.url });
  const rows: Row[] = [];
  let nextGroup = 1_000_000;
  const once = async (target: string, label: string, concurrency: number): Promise<Row> => {
    await resetBackend(mock.url);
    const group = nextGroup++; // a cold group every time
    const load = await runLoad({
      url: target,
      connections: concurrency,
      requests: concurrency,
      durationMs: 60_000,
      path: () => `/groups/${group}`,
    });
    return row(label, load, (await backendStats(mock.url)).calls);
  };
  try {
    rows.push(await once(proxy.url, `burst ${o.requests} → proxy`, o.requests));
    rows.push(await once(mock.url, `burst ${o.requests} → backend directly`, o.requests));
    const withProxy: number[] = [];
    const without: number[] = [];
    for (const level of o.levels) {
      const viaProxy = await once(proxy.url, `sweep ${level} → proxy`, level);
      const direct = await once(mock.url, `sweep ${level} → backend directly`, level);
      rows.push(viaProxy, direct);
      withProxy.push(viaProxy.downstreamCalls);
      without.push(direct.downstreamCalls);
    }
    writeFileSync(
      CHART_PATH,
      barChartSvg(
        `Downstream calls for N simultaneous requests of one group (origin ${o.originLatencyMs} ms)`,
        'simultaneous requests (N)',
        'calls to the group-profile service (log scale)',
        o.levels.map(String),
        [
          { name: 'without the proxy', color: '#d9534f', values: without },
          { name: 'with group-profile-proxy', color: '#2b7bb9', values: withProxy },
        ],
      ),
    );
    console.error(`chart written to ${CHART_PATH.pathname}`);
  } finally {
    await proxy.stop();
    await mock.stop();
  }
  return rows;
}
