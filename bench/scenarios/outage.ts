import { performance } from 'node:perf_hooks';
import { runLoad } from '../lib/load.js';
import { backendStats, setBackendMode, startMock, startProxy } from '../lib/processes.js';
import { row, type Row } from '../lib/report.js';

export interface OutageOptions {
  groups: number;
  connections: number;
  /** Phases, ms: before the outage, during it, after it. */
  beforeMs: number;
  outageMs: number;
  afterMs: number;
}

export const OUTAGE_DEFAULTS: OutageOptions = {
  groups: 100,
  connections: 50,
  beforeMs: 3000,
  outageMs: 4000,
  afterMs: 3000,
};

/**
 * Origin outage mid-run: steady traffic over popular (cached) groups while
 * the backend answers 500 for a while. Reports errors seen by clients and
 * downstream calls in each phase; the breaker should cut the outage's calls.
 */
export async function outage(options: Partial<OutageOptions> = {}): Promise<Row[]> {
  const o = { ...OUTAGE_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: '20' });
  // Short freshness so the outage meets stale entries, as it would after a while in production.
  const proxy = await startProxy({
    UPSTREAM_URL: mock.url,
    TTL_MS: '1000',
    STALE_TTL_MS: '0',
    NEGATIVE_STALE_TTL_MS: '0',
    BREAKER_RESET_MS: '2000',
  });
  try {
    for (let id = 1; id <= o.groups; id++) await fetch(`${proxy.url}/groups/${id}`).then((r) => r.arrayBuffer());
    const phases: { label: string; ms: number; mode: string }[] = [
      { label: 'before the outage', ms: o.beforeMs, mode: 'normal' },
      { label: 'backend failing (500)', ms: o.outageMs, mode: 'error' },
      { label: 'after recovery', ms: o.afterMs, mode: 'normal' },
    ];
    const rows: Row[] = [];
    for (const phase of phases) {
      await setBackendMode(mock.url, phase.mode);
      const before = (await backendStats(mock.url)).calls;
      const started = performance.now();
      const load = await runLoad({
        url: proxy.url,
        connections: o.connections,
        durationMs: phase.ms,
        path: (i) => `/groups/${1 + (i % o.groups)}`,
      });
      const calls = (await backendStats(mock.url)).calls - before;
      rows.push(row(`outage: ${phase.label} (${Math.round(performance.now() - started)} ms)`, load, calls));
    }
    return rows;
  } finally {
    await proxy.stop();
    await mock.stop();
  }
}
