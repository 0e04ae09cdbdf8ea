import {
  type CommandStats,
  commandstatsDelta,
  perOriginCall,
  type RoundTrips,
  readCommandstats,
  roundTripsOf,
} from '../lib/commandstats.js';
import { checkInteger, UsageError } from '../lib/flags.js';
import { percentile, runLoad } from '../lib/load.js';
import { backendStats, type Running, startMock, startProxy } from '../lib/processes.js';
import { startRedis } from '../lib/redis.js';
import type { Row } from '../lib/report.js';
import { seededRandom, zipfSampler } from '../lib/zipf.js';

export interface MissPathOptions {
  /** Length of each measurement window, s. */
  seconds: number;
  /** Rounds of the three setups, run in turn: a, b, c, a, b, c, ... */
  rounds: number;
  connections: number;
  ids: number;
  exponent: number;
  originLatencyMs: number;
  /** Proxy processes of setup (c), the member under test included. */
  members: number;
}

export const MISS_PATH_DEFAULTS: MissPathOptions = {
  seconds: 8,
  rounds: 3,
  connections: 64,
  ids: 100_000,
  exponent: 1.1,
  originLatencyMs: 50,
  members: 4,
};

/** The issue's targets: req/s of (b) and (c) against (a), Redis round trips per origin call of (b) and (c). */
export const MISS_PATH_TARGETS = { redisRps: 0.9, fleetRps: 0.85, roundTripsPerOriginCall: 2.2 } as const;

/** Throws a UsageError naming the flag of the first option the scenario cannot run with. */
export function checkMissPathOptions(o: MissPathOptions): void {
  checkInteger('seconds', o.seconds, 1, 600);
  checkInteger('rounds', o.rounds, 1, 50);
  checkInteger('connections', o.connections, 1, 1024);
  checkInteger('ids', o.ids, 1, 10_000_000);
  if (!(o.exponent > 0 && o.exponent <= 10))
    throw new UsageError(`--exponent must be > 0 and <= 10, got ${o.exponent}`);
  checkInteger('originLatencyMs', o.originLatencyMs, 0, 30_000);
  checkInteger('members', o.members, 2, 16);
}

export type Setup = 'a' | 'b' | 'c';
export const SETUPS: readonly Setup[] = ['a', 'b', 'c'];

export function setupLabel(setup: Setup, members: number): string {
  if (setup === 'a') return '(a) one proxy, no Redis';
  if (setup === 'b') return '(b) one proxy + redis-server';
  return `(c) fleet of ${members} sharing redis-server, load on one`;
}

export interface Measured {
  setup: Setup;
  round: number;
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  originCalls: number;
  distinctIds: number;
  /** Fleet-wide, from the redis-server's commandstats over the window; undefined without Redis. */
  roundTrips: RoundTrips | undefined;
  /** The whole commandstats delta over the window (commands run inside scripts included), for the JSON. */
  commandstats: CommandStats | undefined;
}

export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Round trips per origin call of one measured round (NaN without Redis or without origin calls). */
export const tripsPerCall = (m: Measured): number =>
  m.roundTrips === undefined ? Number.NaN : perOriginCall(m.roundTrips.total, m.originCalls);

/** Per-round ratios of `of` between two setups measured in the same rounds, and their median. */
export function pairedRatios(
  rounds: readonly Measured[],
  numerator: Setup,
  denominator: Setup,
  of: (m: Measured) => number,
): { perRound: number[]; median: number } {
  const perRound: number[] = [];
  for (const round of new Set(rounds.map((m) => m.round))) {
    const top = rounds.find((m) => m.round === round && m.setup === numerator);
    const bottom = rounds.find((m) => m.round === round && m.setup === denominator);
    if (top !== undefined && bottom !== undefined) perRound.push(of(top) / of(bottom));
  }
  return { perRound, median: median(perRound) };
}

/** Waits until the proxy says it is ready, and with Redis until its L2 is healthy and its feed read. */
async function waitReady(proxy: Running, withRedis: boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${proxy.url}/readyz`);
      last = await response.text();
      const body = JSON.parse(last) as { l2?: string; feed?: { state?: string } };
      if (response.status === 200 && (!withRedis || (body.l2 === 'ok' && body.feed?.state === 'ok'))) return;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`proxy ${proxy.url} not ready (with Redis: ${withRedis}) after 15 s: ${last}`);
}

/** One cold round of one setup: a fresh mock backend, an empty redis-server and fresh proxy processes. */
async function measure(setup: Setup, round: number, o: MissPathOptions): Promise<Measured> {
  const stops: (() => unknown)[] = [];
  try {
    const mock = await startMock({ MOCK_LATENCY_MS: String(o.originLatencyMs), MOCK_MAX_ID: String(o.ids) });
    stops.push(() => mock.stop());
    let redisUrl: string | undefined;
    if (setup !== 'a') {
      const redis = await startRedis();
      stops.push(() => redis.stop());
      redisUrl = redis.url;
    }
    const env: Record<string, string> = {
      UPSTREAM_URL: mock.url,
      ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl, REDIS_PREFIX: 'bench:' }),
    };
    const started = await Promise.allSettled(
      Array.from({ length: setup === 'c' ? o.members : 1 }, () => startProxy(env)),
    );
    const proxies: Running[] = [];
    for (const result of started) if (result.status === 'fulfilled') proxies.push(result.value);
    stops.push(() => Promise.all(proxies.map((proxy) => proxy.stop())));
    const failed = started.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await Promise.all(proxies.map((proxy) => waitReady(proxy, redisUrl !== undefined)));

    const sample = zipfSampler(o.ids, o.exponent, seededRandom(42));
    const callsBefore = (await backendStats(mock.url)).calls;
    const statsBefore = redisUrl === undefined ? undefined : await readCommandstats(redisUrl);
    // Every request goes to the first proxy: the member under test; the others only read the feed.
    const load = await runLoad({
      url: proxies[0]!.url,
      connections: o.connections,
      durationMs: o.seconds * 1000,
      path: () => `/groups/${sample()}`,
    });
    const statsAfter = redisUrl === undefined ? undefined : await readCommandstats(redisUrl);
    const backend = await backendStats(mock.url);
    const commandstats =
      statsBefore === undefined || statsAfter === undefined ? undefined : commandstatsDelta(statsBefore, statsAfter);
    return {
      setup,
      round,
      requests: load.requests,
      errors: load.errors,
      statuses: load.statuses,
      rps: load.requests / (load.durationMs / 1000),
      p50: percentile(load.latencies, 50),
      p95: percentile(load.latencies, 95),
      p99: percentile(load.latencies, 99),
      originCalls: backend.calls - callsBefore,
      distinctIds: Object.keys(backend.byId).length,
      roundTrips: commandstats === undefined ? undefined : roundTripsOf(commandstats),
      commandstats,
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const whole = (value: number): string => (Number.isFinite(value) ? String(Math.round(value)) : '-');
const trips = (m: Measured, of: (r: RoundTrips) => number): number =>
  m.roundTrips === undefined ? Number.NaN : of(m.roundTrips);

export interface Summary {
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  requests: number;
  originCalls: number;
  distinctIds: number;
  errors: number;
  roundTrips: number;
  perOriginCall: number;
  evalsha: number;
  eval: number;
  xadd: number;
  xread: number;
}

/** Medians over the rounds of one setup (errors summed). */
export function summarize(rounds: readonly Measured[]): Summary {
  const of = (f: (m: Measured) => number) => median(rounds.map(f));
  return {
    rps: of((m) => m.rps),
    p50: of((m) => m.p50),
    p95: of((m) => m.p95),
    p99: of((m) => m.p99),
    requests: of((m) => m.requests),
    originCalls: of((m) => m.originCalls),
    distinctIds: of((m) => m.distinctIds),
    errors: rounds.reduce((n, m) => n + m.errors, 0),
    roundTrips: of((m) => trips(m, (r) => r.total)),
    perOriginCall: of(tripsPerCall),
    evalsha: of((m) => trips(m, (r) => r.evalsha)),
    eval: of((m) => trips(m, (r) => r.eval)),
    xadd: of((m) => trips(m, (r) => r.xadd)),
    xread: of((m) => trips(m, (r) => r.xread)),
  };
}

const TABLE_HEAD = [
  '| setup | round | req/s | p50 ms | p99 ms | origin calls | Redis round trips | per origin call | evalsha | eval | xadd | xread | errors |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];

function tableLine(label: string, round: string, s: Summary): string {
  return `| ${label} | ${round} | ${whole(s.rps)} | ${fixed(s.p50, 1)} | ${fixed(s.p99, 1)} | ${whole(s.originCalls)} | ${whole(s.roundTrips)} | ${fixed(s.perOriginCall, 2)} | ${whole(s.evalsha)} | ${whole(s.eval)} | ${whole(s.xadd)} | ${whole(s.xread)} | ${s.errors} |`;
}

/** A row of bench/results/miss-path.json: the usual fields, and the round trips and ratios beside them. */
export interface MissPathRow extends Row {
  setup: Setup;
  round: number | 'median';
  originCalls: number;
  /** Fleet-wide Redis round trips over the window (medians for a median row); null without Redis. */
  roundTrips: RoundTrips | null;
  roundTripsPerOriginCall: number;
  rpsRatioToA?: { medianOfRounds: number; ofMedians: number; perRound: number[]; target: number };
  commandstats?: CommandStats;
  statuses?: Record<string, number>;
}

/**
 * The miss path from cold under Zipf load, in three setups run as rounds in turn (a, b, c, a, b, c, ...)
 * so that drift of the machine hits all alike: (a) one proxy without Redis, (b) one proxy with a
 * redis-server, (c) a fleet sharing that redis-server with every request sent to one member. Each round
 * starts fresh processes and an empty Redis. Redis round trips are counted by the redis-server
 * (commandstats, fleet-wide) over the measurement window.
 */
export async function missPath(options: Partial<MissPathOptions> = {}): Promise<Row[]> {
  const o = { ...MISS_PATH_DEFAULTS, ...options };
  checkMissPathOptions(o);
  const measured: Measured[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const setup of SETUPS) {
      const m = await measure(setup, round, o);
      measured.push(m);
      console.log(
        `round ${round}/${o.rounds} ${setupLabel(setup, o.members)}: ${whole(m.rps)} req/s, p99 ${fixed(m.p99, 1)} ms, ${m.originCalls} origin calls, ${m.roundTrips === undefined ? 'no Redis' : `${m.roundTrips.total} round trips (${fixed(tripsPerCall(m), 2)} per origin call)`}, ${m.errors} errors`,
      );
    }
  }
  const of = (setup: Setup) => measured.filter((m) => m.setup === setup);
  const summaries = Object.fromEntries(SETUPS.map((setup) => [setup, summarize(of(setup))])) as Record<Setup, Summary>;
  const ratio = (setup: Setup, target: number) => {
    const paired = pairedRatios(measured, setup, 'a', (m) => m.rps);
    return {
      medianOfRounds: paired.median,
      ofMedians: summaries[setup].rps / summaries.a.rps,
      perRound: paired.perRound,
      target,
    };
  };
  const ratios = { b: ratio('b', MISS_PATH_TARGETS.redisRps), c: ratio('c', MISS_PATH_TARGETS.fleetRps) };

  console.log(
    `\nmiss path: Zipf(${o.exponent}) over ${o.ids} ids from cold, ${o.connections} keep-alive connections, ${o.seconds} s windows, origin ${o.originLatencyMs} ms; ${o.rounds} rounds of a, b, c in turn`,
  );
  console.log(
    'Redis round trips = EVALSHA + EVAL + XADD + XREAD the redis-server counted over the window, fleet-wide\n',
  );
  console.log(TABLE_HEAD.join('\n'));
  for (const setup of SETUPS)
    console.log(tableLine(setupLabel(setup, o.members), `median of ${o.rounds}`, summaries[setup]));
  for (const setup of SETUPS)
    for (const m of of(setup)) console.log(tableLine(setupLabel(setup, o.members), String(m.round), summarize([m])));
  const met = (ok: boolean) => (ok ? 'met' : 'missed');
  console.log('\n| measured | value | per round | target | |');
  console.log('| --- | ---: | --- | ---: | --- |');
  for (const [setup, name] of [
    ['b', '(b) ÷ (a) req/s'],
    ['c', '(c) ÷ (a) req/s'],
  ] as const) {
    const r = ratios[setup];
    console.log(
      `| ${name} (median of per-round ratios; ratio of medians ${fixed(r.ofMedians, 3)}) | ${fixed(r.medianOfRounds, 3)} | ${r.perRound.map((x) => fixed(x, 3)).join(', ')} | ≥ ${r.target} | ${met(r.medianOfRounds >= r.target)} |`,
    );
  }
  for (const setup of ['b', 'c'] as const) {
    const value = summaries[setup].perOriginCall;
    console.log(
      `| ${setup === 'b' ? '(b)' : '(c)'} Redis round trips per origin call (median) | ${fixed(value, 2)} | ${of(setup)
        .map((m) => fixed(tripsPerCall(m), 2))
        .join(
          ', ',
        )} | ≤ ${MISS_PATH_TARGETS.roundTripsPerOriginCall} | ${met(value <= MISS_PATH_TARGETS.roundTripsPerOriginCall)} |`,
    );
  }

  const rows: MissPathRow[] = [];
  for (const setup of SETUPS) {
    const s = summaries[setup];
    const label = setupLabel(setup, o.members);
    rows.push({
      scenario: `miss-path ${label}, median of ${o.rounds}`,
      setup,
      round: 'median',
      requests: s.requests,
      downstreamCalls: s.originCalls,
      distinctIds: s.distinctIds,
      errors: s.errors,
      p50: s.p50,
      p95: s.p95,
      p99: s.p99,
      rps: s.rps,
      originCalls: s.originCalls,
      roundTrips:
        setup === 'a' ? null : { evalsha: s.evalsha, eval: s.eval, xadd: s.xadd, xread: s.xread, total: s.roundTrips },
      roundTripsPerOriginCall: s.perOriginCall,
      ...(setup === 'a' ? {} : { rpsRatioToA: ratios[setup] }),
    });
    for (const m of of(setup)) {
      rows.push({
        scenario: `miss-path ${label}, round ${m.round}`,
        setup,
        round: m.round,
        requests: m.requests,
        downstreamCalls: m.originCalls,
        distinctIds: m.distinctIds,
        errors: m.errors,
        p50: m.p50,
        p95: m.p95,
        p99: m.p99,
        rps: m.rps,
        originCalls: m.originCalls,
        roundTrips: m.roundTrips ?? null,
        roundTripsPerOriginCall: tripsPerCall(m),
        statuses: m.statuses,
        ...(m.commandstats === undefined ? {} : { commandstats: m.commandstats }),
      });
    }
  }
  return rows;
}
