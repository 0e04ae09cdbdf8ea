/**
 * Redis round trips from a redis-server's `INFO commandstats`: what the proxies sent it over a window,
 * counted on the server, so nothing in the proxy has to be trusted to count itself.
 *
 * A round trip is a command a client sent. Every script call of the proxy is one EVALSHA (or an EVAL when
 * the script was not loaded yet), and it calls XADD (hints, changes) and XREAD (its feed readers) itself,
 * never from a script. The commands a script runs inside Redis (GET, SET, PTTL, ...) appear in
 * commandstats under their own names but cost no round trip, so they are not counted.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export interface CommandStat {
  /** Executed calls, failed ones included (Redis 7: `calls`). */
  calls: number;
  /** Calls refused before they ran (Redis 7: `rejected_calls`; not in `calls`, but a round trip all the same). */
  rejectedCalls: number;
  /** Calls that ran and failed, such as an EVALSHA answered NOSCRIPT (Redis 7: `failed_calls`; in `calls`). */
  failedCalls: number;
}

/** Command name (lower case, `client|list` for a subcommand) → its counters. */
export type CommandStats = Record<string, CommandStat>;

/** The client-issued commands that are round trips of the proxy (see the top of this file). */
export const ROUND_TRIP_COMMANDS = ['evalsha', 'eval', 'xadd', 'xread'] as const;
export type RoundTripCommand = (typeof ROUND_TRIP_COMMANDS)[number];

export type RoundTrips = Record<RoundTripCommand, number> & { total: number };

/** Parses the text of `INFO commandstats` (`cmdstat_get:calls=3,usec=..,rejected_calls=0,failed_calls=0` lines). */
export function parseCommandstats(text: string): CommandStats {
  const stats: CommandStats = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^cmdstat_([^:]+):(.*)$/.exec(line.trim());
    if (match === null) continue;
    const fields = new Map<string, number>();
    for (const pair of match[2]!.split(',')) {
      const [key, value] = pair.split('=');
      if (key !== undefined && value !== undefined) fields.set(key, Number(value));
    }
    const calls = fields.get('calls');
    if (calls === undefined || !Number.isFinite(calls)) throw new Error(`no calls count in commandstats line: ${line}`);
    stats[match[1]!.toLowerCase()] = {
      calls,
      // Redis before 6.2 has neither field.
      rejectedCalls: fields.get('rejected_calls') ?? 0,
      failedCalls: fields.get('failed_calls') ?? 0,
    };
  }
  return stats;
}

/** What happened between two snapshots of the same server: `after - before`, per command (absent before = 0). */
export function commandstatsDelta(before: CommandStats, after: CommandStats): CommandStats {
  const delta: CommandStats = {};
  for (const [name, a] of Object.entries(after)) {
    const b = before[name] ?? { calls: 0, rejectedCalls: 0, failedCalls: 0 };
    delta[name] = {
      calls: a.calls - b.calls,
      rejectedCalls: a.rejectedCalls - b.rejectedCalls,
      failedCalls: a.failedCalls - b.failedCalls,
    };
  }
  return delta;
}

/** The round trips in a delta: each of ROUND_TRIP_COMMANDS (calls + rejected calls) and their total. */
export function roundTripsOf(delta: CommandStats): RoundTrips {
  const trips = { evalsha: 0, eval: 0, xadd: 0, xread: 0, total: 0 };
  for (const name of ROUND_TRIP_COMMANDS) {
    const stat = delta[name];
    trips[name] = stat === undefined ? 0 : stat.calls + stat.rejectedCalls;
    trips.total += trips[name];
  }
  return trips;
}

/** Round trips per call that reached the origin; NaN when none did (nothing to divide by). */
export function perOriginCall(roundTrips: number, originCalls: number): number {
  return originCalls > 0 ? roundTrips / originCalls : Number.NaN;
}

/** `INFO commandstats` of the redis-server on loopback at `url` (redis://127.0.0.1:<port>), through redis-cli. */
export async function readCommandstats(url: string): Promise<CommandStats> {
  const { hostname, port } = new URL(url);
  const { stdout } = await promisify(execFile)(
    'redis-cli',
    ['-h', hostname, '-p', port || '6379', 'INFO', 'commandstats'],
    {
      encoding: 'utf8',
    },
  );
  return parseCommandstats(stdout);
}
