import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BurstClient } from '../bench/lib/burst-client.js';
import { commandstatsDelta, parseCommandstats, perOriginCall, roundTripsOf } from '../bench/lib/commandstats.js';
import { flagOf, parseFlags, UsageError } from '../bench/lib/flags.js';
import { parseWrk } from '../bench/lib/wrk.js';
import { percentile } from '../bench/lib/load.js';
import { markdownTable, perSecond, row } from '../bench/lib/report.js';
import { type RoundResult, roundRows } from '../bench/scenarios/distinct-burst.js';
import {
  MISS_PATH_TARGETS,
  type Measured,
  median,
  pairedRatios,
  type Setup,
  summarize,
  tripsPerCall,
} from '../bench/scenarios/miss-path.js';
import { barChartSvg } from '../bench/lib/svg.js';
import { seededRandom, zipfSampler } from '../bench/lib/zipf.js';

describe('benchmark helpers', () => {
  it('samples Zipf ranks within range, most often rank 1, with a long tail', () => {
    const sample = zipfSampler(100_000, 1.1, seededRandom(1));
    const counts = new Map<number, number>();
    for (let i = 0; i < 100_000; i++) {
      const k = sample();
      expect(k).toBeGreaterThanOrEqual(1);
      expect(k).toBeLessThanOrEqual(100_000);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    expect(top[0]![0]).toBe(1);
    expect(counts.get(1)! / 100_000).toBeGreaterThan(0.05);
    expect(counts.size).toBeGreaterThan(10_000);
  });

  it('computes nearest-rank percentiles', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
  });

  it('reports the reduction ratio as requests ÷ downstream calls', () => {
    const load = { requests: 1000, errors: 0, statuses: {}, durationMs: 1000, latencies: Float64Array.from([1, 2, 3]) };
    const table = markdownTable([row('burst', load, 1), row('direct', load, 1000, 1000)]);
    expect(table).toContain('| burst | 1000 | 1 | 1000.0 |');
    expect(table).toContain('| direct | 1000 | 1000 | 1.0 | 1000 | 1.000 |');
  });

  it('shows a rate that could not be measured as -, never NaN', () => {
    const load = { requests: 1, errors: 0, statuses: {}, durationMs: 1000, latencies: Float64Array.from([1]) };
    const table = markdownTable([{ ...row('no rate', load, 1), rps: Number.NaN }]);
    expect(table).not.toContain('NaN');
    expect(table).toMatch(/\| no rate \|.* \| - \|$/m);
  });

  it("gives every distinct-burst round the rate of its burst: answers over the burst's wall time", () => {
    const options = { requests: 4, originLatencyMs: 200, rounds: 2, warmupRequests: 0 };
    const round = (durationMs: number): RoundResult => ({
      answers: new Map([
        ['200', 3],
        ['503 OVERLOADED', 1],
      ]),
      backendCalls: 3,
      backendMaxInFlight: 3,
      breakerOpened: 0,
      breakerState: 'closed',
      shedBy: { expected_wait: 1, queue_timeout: 0, queue_full: 0 },
      limitAfter: 20,
      probe: '200',
      loopLagMaxMs: 1,
      latencies: Float64Array.from([200, 201, 202, 250]),
      durationMs,
    });
    const rows = roundRows(options, [round(250), round(500)]);
    expect(rows.map((r) => r.rps)).toEqual([16, 8]);
    expect(rows[0]).toMatchObject({ requests: 4, downstreamCalls: 3, distinctIds: 4, errors: 1, p99: 250 });
    // The rate survives the JSON written to bench/results (NaN would be null there).
    expect(JSON.parse(JSON.stringify(rows))[1].rps).toBe(8);
    expect(markdownTable(rows)).toMatch(/\| 1 \| 16 \|$/m);
  });

  it('draws one labelled bar per value', () => {
    const svg = barChartSvg('t', 'x', 'y', ['1', '10'], [{ name: 'a', color: '#000', values: [1, 10] }]);
    expect(svg.match(/<rect x=/g)).toHaveLength(2 + 1); // two bars and one legend swatch
    expect(svg).toContain('>10</text>');
  });
});

const WRK_OUTPUT = `Running 3s test @ http://127.0.0.1:40000/groups/42
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  502.11us  12.40ms   90.12%
    Req/Sec    42.10k     2.01k   45.00k    80.00%
  Latency Distribution
     50%    1.40ms
     75%    1.60ms
     90%    1.90ms
     99%  850.00us
  125667 requests in 3.00s, 201.29MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  41882.31
Transfer/sec:     67.08MB
`;

describe('wrk report parsing', () => {
  it('reads requests, rate, percentiles in any unit and every kind of error', () => {
    expect(parseWrk(WRK_OUTPUT)).toEqual({ requests: 125_667, rps: 41_882.31, p50Ms: 1.4, p99Ms: 0.85, errors: 7 });
  });
});

describe('BurstClient', () => {
  it('writes one request per connection and frames each answer by Content-Length, even split across packets', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(req.url!);
      res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-length': '10' });
      res.write('01234');
      setTimeout(() => res.end('56789'), 5);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await BurstClient.open(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 150);
    try {
      const first = await client.burst('/groups/1');
      expect(first.answers).toHaveLength(150);
      expect(first.answers.every((a) => a.status === 200 && a.latencyMs >= 0)).toBe(true);
      // Keep-alive: the same connections carry the next burst.
      const second = await client.burst('/missing');
      expect(second.answers.map((a) => a.status)).toEqual(Array(150).fill(404));
      expect(seen.filter((url) => url === '/groups/1')).toHaveLength(150);
      expect(seen).toHaveLength(300);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("reports the burst's wall time, from the first write to the last answer, for its rate", async () => {
    const server = createServer((_req, res) => {
      setTimeout(() => res.end('ok'), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await BurstClient.open(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 20);
    try {
      const { answers, durationMs } = await client.burst('/groups/1');
      // Every answer waited 20 ms; the burst took at least as long as its slowest answer.
      expect(durationMs).toBeGreaterThanOrEqual(Math.max(...answers.map((a) => a.latencyMs)));
      expect(durationMs).toBeGreaterThanOrEqual(19);
      expect(Number.isFinite(perSecond(answers.length, durationMs))).toBe(true);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a target that is not on loopback', async () => {
    await expect(BurstClient.open('http://10.0.0.1:80', 1)).rejects.toThrow(/non-loopback/);
  });
});

describe('bench flags', () => {
  it('maps --kebab-case <number> pairs onto the options a scenario takes', () => {
    expect(parseFlags(['--rounds', '8', '--origin-latency-ms', '20'], ['rounds', 'originLatencyMs'])).toEqual({
      rounds: 8,
      originLatencyMs: 20,
    });
    expect(flagOf('maxSemiSpaceMb')).toBe('--max-semi-space-mb');
  });

  it('refuses a flag the scenario does not take, naming the ones it does', () => {
    expect(() => parseFlags(['--max-semi-space-size', '4'], ['maxSemiSpaceMb', 'profiles'])).toThrow(
      'unknown flag --max-semi-space-size: this scenario takes --max-semi-space-mb, --profiles',
    );
  });

  it('refuses a flag without a numeric value', () => {
    expect(() => parseFlags(['--rounds'], ['rounds'])).toThrow('bad flag near --rounds');
    expect(() => parseFlags(['--rounds', 'many'], ['rounds'])).toThrow('bad flag near --rounds');
    expect(() => parseFlags(['--rounds', ''], ['rounds'])).toThrow('bad flag near --rounds');
    expect(() => parseFlags(['--rounds', '--warmup', '3'], ['rounds', 'warmup'])).toThrow('bad flag near --rounds');
    expect(() => parseFlags(['rounds', '3'], ['rounds'])).toThrow('bad flag near rounds');
  });

  it('reports every bad flag as a usage error', () => {
    expect(() => parseFlags(['--rounds', 'many'], ['rounds'])).toThrow(UsageError);
    expect(() => parseFlags(['--laps', '3'], ['rounds'])).toThrow(UsageError);
  });

  it('refuses a flag given twice', () => {
    expect(() => parseFlags(['--rounds', '1', '--rounds', '2'], ['rounds'])).toThrow('--rounds is given twice');
  });

  it('reads numbers separated by commas for a list option, and only for one', () => {
    expect(parseFlags(['--levels', '1,10,100', '--requests', '50'], ['requests', 'levels'], ['levels'])).toEqual({
      levels: [1, 10, 100],
      requests: 50,
    });
    expect(parseFlags(['--levels', '7'], ['levels'], ['levels'])).toEqual({ levels: [7] });
    expect(() => parseFlags(['--levels', '1,,10'], ['levels'], ['levels'])).toThrow(
      'bad flag near --levels: use --levels <number>[,<number>]...',
    );
    expect(() => parseFlags(['--requests', '1,10'], ['requests', 'levels'], ['levels'])).toThrow(
      'bad flag near --requests',
    );
  });
});

describe('miss-path: Redis round trips from INFO commandstats', () => {
  // As redis-cli prints it from Redis 7 (CRLF lines, a subcommand, commands run inside scripts among them).
  const BEFORE = [
    '# Commandstats',
    'cmdstat_evalsha:calls=10,usec=500,usec_per_call=50.00,rejected_calls=0,failed_calls=1',
    'cmdstat_get:calls=40,usec=40,usec_per_call=1.00,rejected_calls=0,failed_calls=0',
    'cmdstat_client|setname:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0',
    'cmdstat_xread:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=0',
    '',
  ].join('\r\n');
  const AFTER = [
    '# Commandstats',
    'cmdstat_evalsha:calls=2010,usec=90000,usec_per_call=44.78,rejected_calls=2,failed_calls=1',
    'cmdstat_eval:calls=2,usec=200,usec_per_call=100.00,rejected_calls=0,failed_calls=0',
    'cmdstat_get:calls=2040,usec=2040,usec_per_call=1.00,rejected_calls=0,failed_calls=0',
    'cmdstat_set:calls=1000,usec=1500,usec_per_call=1.50,rejected_calls=0,failed_calls=0',
    'cmdstat_pttl:calls=700,usec=700,usec_per_call=1.00,rejected_calls=0,failed_calls=0',
    'cmdstat_client|setname:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0',
    'cmdstat_xadd:calls=5,usec=50,usec_per_call=10.00,rejected_calls=0,failed_calls=0',
    'cmdstat_xread:calls=11,usec=110,usec_per_call=10.00,rejected_calls=0,failed_calls=0',
    'cmdstat_info:calls=2,usec=100,usec_per_call=50.00,rejected_calls=0,failed_calls=0',
    '',
  ].join('\r\n');

  it('parses every cmdstat line into calls, rejected and failed calls', () => {
    const stats = parseCommandstats(BEFORE);
    expect(stats).toEqual({
      evalsha: { calls: 10, rejectedCalls: 0, failedCalls: 1 },
      get: { calls: 40, rejectedCalls: 0, failedCalls: 0 },
      'client|setname': { calls: 2, rejectedCalls: 0, failedCalls: 0 },
      xread: { calls: 3, rejectedCalls: 0, failedCalls: 0 },
    });
    // Redis before 6.2 has calls only; names are lower case either way.
    expect(parseCommandstats('cmdstat_EVALSHA:calls=7,usec=70,usec_per_call=10.00\n')).toEqual({
      evalsha: { calls: 7, rejectedCalls: 0, failedCalls: 0 },
    });
    expect(parseCommandstats('# Commandstats\r\n')).toEqual({});
    expect(() => parseCommandstats('cmdstat_get:usec=1')).toThrow('no calls count');
  });

  it('counts only client-issued commands over the window: EVALSHA + EVAL + XADD + XREAD, not what scripts ran', () => {
    const delta = commandstatsDelta(parseCommandstats(BEFORE), parseCommandstats(AFTER));
    expect(delta.get).toEqual({ calls: 2000, rejectedCalls: 0, failedCalls: 0 });
    expect(delta.eval).toEqual({ calls: 2, rejectedCalls: 0, failedCalls: 0 });
    expect(delta['client|setname']!.calls).toBe(0);
    // A rejected EVALSHA never ran but was sent: a round trip all the same. GET, SET, PTTL ran inside scripts.
    expect(roundTripsOf(delta)).toEqual({ evalsha: 2002, eval: 2, xadd: 5, xread: 8, total: 2017 });
    expect(roundTripsOf({})).toEqual({ evalsha: 0, eval: 0, xadd: 0, xread: 0, total: 0 });
  });

  it('divides round trips by origin calls, and has nothing to say without origin calls', () => {
    expect(perOriginCall(2017, 1000)).toBeCloseTo(2.017, 6);
    expect(perOriginCall(2200, 1000)).toBeLessThanOrEqual(MISS_PATH_TARGETS.roundTripsPerOriginCall);
    expect(perOriginCall(12, 0)).toBeNaN();
  });

  const measured = (setup: Setup, round: number, rps: number, trips?: number, originCalls = 1000): Measured => ({
    setup,
    round,
    requests: rps * 8,
    errors: 0,
    statuses: {},
    rps,
    p50: 10,
    p95: 50,
    p99: 100,
    originCalls,
    distinctIds: originCalls,
    roundTrips: trips === undefined ? undefined : { evalsha: trips, eval: 0, xadd: 0, xread: 0, total: trips },
    commandstats: undefined,
  });

  it('takes medians over rounds and pairs the ratios to (a) round by round', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
    expect(median([])).toBeNaN();
    const rounds = [
      measured('a', 1, 1000),
      measured('b', 1, 950, 2000),
      measured('a', 2, 800),
      measured('b', 2, 720, 2300),
      measured('a', 3, 900),
      measured('b', 3, 810, 2100, 1000),
    ];
    const ratios = pairedRatios(rounds, 'b', 'a', (m) => m.rps);
    expect(ratios.perRound.map((r) => r.toFixed(2))).toEqual(['0.95', '0.90', '0.90']);
    expect(ratios.median).toBeCloseTo(0.9, 6);
    expect(tripsPerCall(rounds[0]!)).toBeNaN();
    expect(tripsPerCall(rounds[3]!)).toBeCloseTo(2.3, 6);
    const b = summarize(rounds.filter((m) => m.setup === 'b'));
    expect(b.rps).toBe(810);
    expect(b.perOriginCall).toBeCloseTo(2.1, 6);
    expect(summarize(rounds.filter((m) => m.setup === 'a')).perOriginCall).toBeNaN();
  });
});
