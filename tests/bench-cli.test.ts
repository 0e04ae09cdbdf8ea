import { describe, expect, it, vi } from 'vitest';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommand, type Registry, runCli } from '../bench/lib/cli.js';
import { UsageError } from '../bench/lib/flags.js';
import type { Row } from '../bench/lib/report.js';
import {
  BURST_DEFAULTS,
  burst,
  CHART_PATH,
  CUSTOM_CHART_PATH,
  chartPathFor,
  checkBurstOptions,
} from '../bench/scenarios/burst.js';
import { SCENARIOS } from '../bench/scenarios/index.js';
import { checkMissPathOptions, MISS_PATH_DEFAULTS, missPath } from '../bench/scenarios/miss-path.js';

/** Collects what the CLI prints and saves instead of writing to the terminal and bench/results/. */
function capture(): CliIo & { stdout: string[]; stderr: string[]; saved: Map<string, readonly Row[]> } {
  const io = {
    stdout: [] as string[],
    stderr: [] as string[],
    saved: new Map<string, readonly Row[]>(),
    out: (text: string) => io.stdout.push(text),
    err: (text: string) => io.stderr.push(text),
    save: (name: string, rows: readonly Row[]) => io.saved.set(name, rows),
  };
  return io;
}

const ROW: Row = { scenario: 'a row', requests: 10, downstreamCalls: 1, errors: 0, p50: 1, p95: 2, p99: 3, rps: 500 };

/** A registry whose scenarios start nothing. */
function fakeRegistry(run: (options: Record<string, unknown>) => Promise<Row[]>): Registry {
  return {
    quick: {
      about: 'a quick one',
      defaults: { rounds: 3, levels: [1, 2] },
      check: (o) => {
        if (o.rounds === 0) throw new UsageError('--rounds must be an integer >= 1, got 0');
      },
      run,
    },
  };
}

describe('npm run bench: help and usage errors', () => {
  it.each(['--help', '-h', 'help'])('%s prints every scenario with its line and flags, and exits 0', async (arg) => {
    const io = capture();
    expect(await runCli([arg], SCENARIOS, io)).toBe(EXIT_OK);
    expect(io.stderr).toEqual([]);
    const text = io.stdout.join('\n');
    expect(text).toMatch(/^usage: npm run bench -- <scenario> \[--flag <value>\]\.\.\./);
    for (const [name, { about, defaults }] of Object.entries(SCENARIOS)) {
      expect(text).toContain(`  ${name.padEnd(15)} ${about}\n`);
      for (const key of Object.keys(defaults))
        expect(text).toContain(`--${key.replace(/[A-Z]/g, '-$&').toLowerCase()} `);
    }
    expect(text).toContain('--requests 1000  --origin-latency-ms 50  --levels 1,10,100,1000,5000');
  });

  it('<scenario> --help prints that scenario and its flags at their defaults, and exits 0', async () => {
    const io = capture();
    expect(await runCli(['burst', '--requests', '10', '--help'], SCENARIOS, io)).toBe(EXIT_OK);
    const text = io.stdout.join('\n');
    expect(text).toContain('usage: npm run bench -- burst [--flag <value>]...');
    expect(text).toContain('  --requests 1000\n');
    expect(text).toContain('  --origin-latency-ms 50\n');
    expect(text).toContain('  --levels 1,10,100,1000,5000   (numbers separated by commas)');
  });

  it('names an unknown scenario and the ones there are, and exits 2', async () => {
    const io = capture();
    expect(await runCli(['foo', '--requests', '1'], SCENARIOS, io)).toBe(EXIT_USAGE);
    expect(io.stdout).toEqual([]);
    expect(io.stderr.join('\n')).toContain(`unknown scenario "foo"; scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`);
    expect(io.stderr.join('\n')).toContain('npm run bench -- --help');
  });

  it("never takes a name of Object's prototype for a scenario", () => {
    for (const name of ['constructor', 'toString', '__proto__'])
      expect(() => parseCommand([name], SCENARIOS)).toThrow(`unknown scenario "${name}"`);
  });

  it('exits 2 without a scenario, or with flags before one', async () => {
    const none = capture();
    expect(await runCli([], SCENARIOS, none)).toBe(EXIT_USAGE);
    expect(none.stderr.join('\n')).toContain('no scenario given; scenarios: burst, distinct-burst,');
    const flagsFirst = capture();
    expect(await runCli(['--requests', '5', 'burst'], SCENARIOS, flagsFirst)).toBe(EXIT_USAGE);
    expect(flagsFirst.stderr.join('\n')).toContain('expected a scenario before the flags, got "--requests"');
  });

  it('exits 2 on a bad flag or value, before running anything', async () => {
    const run = vi.fn(async () => [ROW]);
    for (const argv of [
      ['quick', '--laps', '3'],
      ['quick', '--rounds', 'many'],
      ['quick', '--rounds'],
      ['quick', '--levels', '1,x'],
      ['quick', '--rounds', '0'],
    ]) {
      const io = capture();
      expect(await runCli(argv, fakeRegistry(run), io), argv.join(' ')).toBe(EXIT_USAGE);
      expect(io.stderr).toHaveLength(1);
      expect(io.stderr[0]).toContain('(npm run bench -- quick --help lists its flags)');
    }
    expect(run).not.toHaveBeenCalled();
  });

  it('passes the flags given, lists as arrays, and saves the rows: exit 0', async () => {
    const run = vi.fn(async (_options: Record<string, unknown>) => [ROW]);
    const io = capture();
    expect(await runCli(['quick', '--levels', '4,8'], fakeRegistry(run), io)).toBe(EXIT_OK);
    expect(run).toHaveBeenCalledWith({ levels: [4, 8] });
    expect(io.stdout.join('\n')).toContain('| a row | 10 | 1 | 10.0 |');
    expect(io.saved.get('quick')).toEqual([ROW]);
  });

  it('exits 1 when the run fails, with its error', async () => {
    const io = capture();
    const failing = fakeRegistry(async () => {
      throw new Error('redis-server not found');
    });
    expect(await runCli(['quick'], failing, io)).toBe(EXIT_FAILED);
    expect(io.stderr.join('\n')).toContain('redis-server not found');
    expect(io.saved.size).toBe(0);
  });
});

describe('npm run bench -- burst: its sizes as flags', () => {
  it('takes --requests, --origin-latency-ms and --levels, the defaults being the published sizes', () => {
    expect(BURST_DEFAULTS).toEqual({ requests: 1000, originLatencyMs: 50, levels: [1, 10, 100, 1000, 5000] });
    expect(
      parseCommand(['burst', '--requests', '20', '--levels', '1,5,20', '--origin-latency-ms', '10'], SCENARIOS),
    ).toEqual({ kind: 'run', name: 'burst', options: { requests: 20, levels: [1, 5, 20], originLatencyMs: 10 } });
    expect(parseCommand(['burst'], SCENARIOS)).toEqual({ kind: 'run', name: 'burst', options: {} });
  });

  it.each([
    [['--requests', '0'], '--requests must be an integer from 1 to 10000, got 0'],
    [['--requests', '2.5'], '--requests must be an integer from 1 to 10000, got 2.5'],
    [['--requests', '20000'], '--requests must be an integer from 1 to 10000, got 20000'],
    [['--origin-latency-ms', '-1'], '--origin-latency-ms must be an integer from 0 to 30000, got -1'],
    [['--levels', '1,0,10'], '--levels takes integers from 1 to 10000 separated by commas, got 1,0,10'],
    [['--levels', '1,10001'], '--levels takes integers from 1 to 10000 separated by commas, got 1,10001'],
  ])('refuses %j: %s', (flags, message) => {
    expect(() => parseCommand(['burst', ...flags], SCENARIOS)).toThrow(message);
    expect(() => parseCommand(['burst', ...flags], SCENARIOS)).toThrow(UsageError);
  });

  it('refuses bad sizes when called directly too, before starting anything', async () => {
    await expect(burst({ levels: [] })).rejects.toThrow('--levels needs at least one concurrency level');
    expect(() => checkBurstOptions({ ...BURST_DEFAULTS, requests: -3 })).toThrow(UsageError);
  });

  it('redraws the published chart only for the published sweep; a quick one goes next to it', () => {
    expect(chartPathFor(BURST_DEFAULTS)).toBe(CHART_PATH);
    expect(chartPathFor({ ...BURST_DEFAULTS, requests: 10 })).toBe(CHART_PATH);
    expect(chartPathFor({ ...BURST_DEFAULTS, levels: [1, 10] })).toBe(CUSTOM_CHART_PATH);
    expect(chartPathFor({ ...BURST_DEFAULTS, originLatencyMs: 5 })).toBe(CUSTOM_CHART_PATH);
  });
});

describe('npm run bench -- miss-path: flags', () => {
  it('lists its flags at their defaults', async () => {
    const io = capture();
    expect(await runCli(['miss-path', '--help'], SCENARIOS, io)).toBe(EXIT_OK);
    const text = io.stdout.join('\n');
    for (const flag of ['--seconds 8', '--rounds 3', '--connections 64', '--ids 100000', '--exponent 1.1'])
      expect(text).toContain(`  ${flag}\n`);
    expect(text).toContain('  --origin-latency-ms 50\n');
    expect(text).toContain('  --members 4');
  });

  it('takes the run flags', () => {
    expect(parseCommand(['miss-path', '--rounds', '5', '--seconds', '10'], SCENARIOS)).toEqual({
      kind: 'run',
      name: 'miss-path',
      options: { rounds: 5, seconds: 10 },
    });
  });

  it.each([
    [['--seconds', '0'], '--seconds must be an integer from 1 to 600, got 0'],
    [['--seconds', '2.5'], '--seconds must be an integer from 1 to 600, got 2.5'],
    [['--rounds', '0'], '--rounds must be an integer from 1 to 50, got 0'],
    [['--connections', '0'], '--connections must be an integer from 1 to 1024, got 0'],
    [['--members', '1'], '--members must be an integer from 2 to 16, got 1'],
    [['--exponent', '-1'], '--exponent must be > 0 and <= 10, got -1'],
    [['--origin-latency-ms', '-5'], '--origin-latency-ms must be an integer from 0 to 30000, got -5'],
    [['--duration-ms', '8000'], 'unknown flag --duration-ms'],
  ])('refuses %j with exit 2: %s', async (flags, message) => {
    expect(() => parseCommand(['miss-path', ...flags], SCENARIOS)).toThrow(message);
    const io = capture();
    expect(await runCli(['miss-path', ...flags], SCENARIOS, io)).toBe(EXIT_USAGE);
    expect(io.stderr.join('\n')).toContain(message);
    expect(io.stdout).toEqual([]);
  });

  it('refuses bad options when called directly too, before starting anything', async () => {
    await expect(missPath({ rounds: -1 })).rejects.toThrow(UsageError);
    expect(() => checkMissPathOptions(MISS_PATH_DEFAULTS)).not.toThrow();
  });
});

describe('npm run bench -- distinct-burst, a small real run', () => {
  it('reports a request rate: a number in the table and in the JSON, never NaN or null', async () => {
    const io = capture();
    const argv = ['distinct-burst', '--requests', '20', '--rounds', '1', '--warmup-requests', '0'];
    expect(await runCli([...argv, '--origin-latency-ms', '5'], SCENARIOS, io)).toBe(EXIT_OK);
    const rows = JSON.parse(JSON.stringify(io.saved.get('distinct-burst'))) as Row[];
    expect(rows).toHaveLength(1);
    expect(rows[0]!.requests).toBe(20);
    expect(rows[0]!.rps).toBeGreaterThan(0);
    expect(io.stdout.join('\n')).not.toContain('NaN');
  }, 60_000);
});
