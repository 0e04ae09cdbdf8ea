import { performance } from 'node:perf_hooks';
import { percentile, runLoad, type LoadResult } from '../lib/load.js';
import { backendStats, startMock, startProxy } from '../lib/processes.js';
import type { Row } from '../lib/report.js';
import { seededRandom, zipfSampler } from '../lib/zipf.js';
import { BloomBits, bloomPositions, bloomShape, falsePositiveRateOf } from '../../src/penetration/bloom.js';

export interface PenetrationOptions {
  /** Groups that exist (the mock's id space); the filter is filled with them from the export. */
  groups: number;
  /** Made-up ids the scanners ask for, in all. */
  scanIds: number;
  scanners: number;
  /** Connections of legitimate Zipf traffic, each a client of its own. */
  members: number;
  /** Distinct groups the members ask for (Zipf 1.1). */
  memberIds: number;
  /** Longest a run takes, ms (without a guard the scan is bound by the upstream's latency). */
  maxRunMs: number;
  originLatencyMs: number;
  /** Ids of the in-process memory and false-positive measurement. */
  filterIds: number;
}

export const PENETRATION_DEFAULTS: PenetrationOptions = {
  groups: 1_000_000,
  scanIds: 100_000,
  scanners: 10,
  members: 54,
  memberIds: 10_000,
  maxRunMs: 90_000,
  originLatencyMs: 50,
  filterIds: 10_000_000,
};

/** The in-process filter for `ids` ids at 1 %: its memory, fill time and measured false-positive rate over 1 million absent ids. */
function filterMemory(ids: number): string {
  const shape = bloomShape(ids, 0.01);
  const heapBefore = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  const bits = new BloomBits(shape);
  const positions: number[] = [];
  for (let id = 1; id <= ids; id++) bits.set(bloomPositions(String(id), shape, positions));
  const fillMs = performance.now() - started;
  const bytes = process.memoryUsage().arrayBuffers - heapBefore;
  const random = seededRandom(9);
  let falsePositives = 0;
  const probes = 1_000_000;
  for (let i = 0; i < probes; i++)
    if (bits.has(bloomPositions(String(ids + 1 + Math.floor(random() * 1e12)), shape, positions))) falsePositives++;
  return (
    `filter for ${ids.toLocaleString('en')} ids at 1 %: ${shape.bits.toLocaleString('en')} bits, ${shape.hashes} hashes, ` +
    `${(bits.bytes / 2 ** 20).toFixed(1)} MiB (array buffers grew ${(bytes / 2 ** 20).toFixed(1)} MiB), filled in ${(fillMs / 1000).toFixed(1)} s; ` +
    `measured false positives ${((100 * falsePositives) / probes).toFixed(3)} % over ${probes.toLocaleString('en')} absent ids (estimate ${(100 * falsePositiveRateOf(shape, bits.setBits)).toFixed(3)} %)`
  );
}

/**
 * Cache penetration: scanners ask for made-up ids (above the mock's id space) while members send
 * Zipf traffic over existing groups; without a guard, with the existence filter (filled from the
 * mock's id export), and with the per-client miss budget alone. Upstream calls the scan caused,
 * and the members' p99.
 */
export async function penetration(options: Partial<PenetrationOptions> = {}): Promise<Row[]> {
  const o = { ...PENETRATION_DEFAULTS, ...options };
  const rows: Row[] = [];
  const runs: { label: string; env: Record<string, string> }[] = [
    { label: 'no guard', env: {} },
    { label: 'existence filter (authoritative)', env: { EXISTENCE_FILTER: 'on', UPSTREAM_ID_EXPORT: 'on' } },
    // The budget alone: it cannot tell made-up ids from real ones, but caps what each scanner costs.
    {
      label: 'miss budget alone (100 at once, 10/s)',
      env: { MISS_BUDGET: 'on', MISS_BUDGET_CLIENT_HEADER: 'x-client-id' },
    },
  ];
  for (const run of runs) {
    const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs), MOCK_MAX_ID: String(o.groups) });
    const proxy = await startProxy({ UPSTREAM_URL: mock.url, ...run.env }).catch(async (error: unknown) => {
      await mock.stop();
      throw error;
    });
    try {
      if (run.env.EXISTENCE_FILTER === 'on') {
        // The fill runs in the background after start: wait until the filter says it is authoritative.
        const started = performance.now();
        while (!/gpp_existence_filter_authoritative 1/.test(await (await fetch(`${proxy.url}/metrics`)).text())) {
          if (performance.now() - started > 120_000)
            throw new Error('the existence filter was not filled within 120 s');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        console.log(
          `${run.label}: filter filled from the export in ${((performance.now() - started) / 1000).toFixed(1)} s`,
        );
      }
      const random = seededRandom(7);
      const made = Array.from({ length: o.scanIds }, () => o.groups + 1 + Math.floor(random() * 1e12));
      const perScanner = Math.ceil(o.scanIds / o.scanners);
      const sample = zipfSampler(o.memberIds, 1.1, seededRandom(8));
      const [scans, members] = await Promise.all([
        Promise.all(
          Array.from({ length: o.scanners }, (_, s) =>
            runLoad({
              url: proxy.url,
              connections: 1,
              requests: perScanner,
              durationMs: o.maxRunMs,
              path: (i) => `/groups/${made[s * perScanner + i]}`,
              headers: { 'x-client-id': `scanner-${s}` },
            }),
          ),
        ),
        Promise.all(
          Array.from({ length: o.members }, (_, m) =>
            runLoad({
              url: proxy.url,
              connections: 1,
              durationMs: o.maxRunMs,
              path: () => `/groups/${sample()}`,
              headers: { 'x-client-id': `member-${m}` },
            }),
          ),
        ),
      ]);
      const stats = await backendStats(mock.url);
      let scanCalls = 0;
      for (const [id, count] of Object.entries(stats.byId)) if (Number(id) > o.groups) scanCalls += count;
      const merge = (loads: LoadResult[]): LoadResult => ({
        requests: loads.reduce((n, l) => n + l.requests, 0),
        errors: loads.reduce((n, l) => n + l.errors, 0),
        statuses: {},
        durationMs: Math.max(...loads.map((l) => l.durationMs)),
        latencies: Float64Array.from(loads.flatMap((l) => [...l.latencies])).sort(),
      });
      const scan = merge(scans);
      const member = merge(members);
      const limited = scans.reduce((n, l) => n + (l.statuses['429'] ?? 0), 0);
      console.log(
        `${run.label}: scan ${scan.requests} requests (${limited} answered 429), ${scanCalls} upstream calls = ${((100 * scanCalls) / Math.max(1, scan.requests)).toFixed(2)} % of the scan; ` +
          `members ${member.requests} requests, p50 ${percentile(member.latencies, 50).toFixed(1)} ms, p99 ${percentile(member.latencies, 99).toFixed(1)} ms, ${member.errors} errors`,
      );
      rows.push({
        scenario: `scan: ${run.label}`,
        requests: scan.requests,
        downstreamCalls: scanCalls,
        errors: scan.errors,
        p50: percentile(scan.latencies, 50),
        p95: percentile(scan.latencies, 95),
        p99: percentile(scan.latencies, 99),
        rps: scan.requests / (scan.durationMs / 1000),
      });
      rows.push({
        scenario: `members' Zipf traffic: ${run.label}`,
        requests: member.requests,
        downstreamCalls: stats.calls - scanCalls,
        distinctIds: Object.keys(stats.byId).filter((id) => Number(id) <= o.groups).length,
        errors: member.errors,
        p50: percentile(member.latencies, 50),
        p95: percentile(member.latencies, 95),
        p99: percentile(member.latencies, 99),
        rps: member.requests / (member.durationMs / 1000),
      });
    } finally {
      await proxy.stop();
      await mock.stop();
    }
  }
  console.log(filterMemory(o.filterIds));
  return rows;
}
