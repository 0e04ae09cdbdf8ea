import { writeFileSync } from 'node:fs';
import { checkInteger, UsageError } from '../lib/flags.js';
import { runLoad } from '../lib/load.js';
import { backendStats, resetBackend, startMock, startProxy } from '../lib/processes.js';
import { row, type Row } from '../lib/report.js';
import { barChartSvg } from '../lib/svg.js';

export interface BurstOptions {
  /** Simultaneous requests for one cold group, each on a connection of its own. */
  requests: number;
  originLatencyMs: number;
  /** Concurrency levels of the with/without-proxy sweep drawn in the chart. */
  levels: readonly number[];
}

export const BURST_DEFAULTS: BurstOptions = { requests: 1000, originLatencyMs: 50, levels: [1, 10, 100, 1000, 5000] };

/** Every request of a burst has a connection of its own; the proxy accepts 10,000 by default (MAX_CONNECTIONS). */
export const BURST_MAX_REQUESTS = 10_000;

/** The published chart (README, docs), drawn from the default sweep. */
export const CHART_PATH = new URL('../results/downstream-calls.svg', import.meta.url);
/** A sweep other than the default one is drawn here, so a quick try never overwrites the published chart. */
export const CUSTOM_CHART_PATH = new URL('../results/downstream-calls.custom.svg', import.meta.url);

/** Throws a UsageError naming the flag of the first option the burst cannot run with. */
export function checkBurstOptions(o: BurstOptions): void {
  checkInteger('requests', o.requests, 1, BURST_MAX_REQUESTS);
  checkInteger('originLatencyMs', o.originLatencyMs, 0, 30_000);
  if (o.levels.length === 0) throw new UsageError('--levels needs at least one concurrency level');
  for (const level of o.levels) {
    if (!Number.isInteger(level) || level < 1 || level > BURST_MAX_REQUESTS)
      throw new UsageError(
        `--levels takes integers from 1 to ${BURST_MAX_REQUESTS} separated by commas, got ${o.levels.join(',')}`,
      );
  }
}

/** Where the sweep's chart goes: the published chart only for the sweep it shows. */
export function chartPathFor(o: BurstOptions): URL {
  const published =
    o.originLatencyMs === BURST_DEFAULTS.originLatencyMs &&
    o.levels.length === BURST_DEFAULTS.levels.length &&
    o.levels.every((level, i) => level === BURST_DEFAULTS.levels[i]);
  return published ? CHART_PATH : CUSTOM_CHART_PATH;
}

/**
 * Burst: N simultaneous requests for one cold group, through the proxy and
 * straight to the backend; then the same at each concurrency level of the
 * sweep, drawn as bench/results/downstream-calls.svg (downstream-calls.custom.svg
 * for another sweep or origin latency).
 */
export async function burst(options: Partial<BurstOptions> = {}): Promise<Row[]> {
  const o = { ...BURST_DEFAULTS, ...options };
  checkBurstOptions(o);
  const chartPath = chartPathFor(o);
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
      chartPath,
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
    console.error(`chart written to ${chartPath.pathname}`);
  } finally {
    await proxy.stop();
    await mock.stop();
  }
  return rows;
}
