/**
 * The command line of `npm run bench` (bench/run.ts), apart from the process so it can be tested:
 *
 *   npm run bench -- <scenario> [--flag <value>]...   run it; exit 0, or 1 when the run fails
 *   npm run bench -- --help | -h | help              every scenario, one line each, with its flags; exit 0
 *   npm run bench -- <scenario> --help               that scenario and its flags; exit 0
 *
 * Every usage error (no scenario, an unknown one, an unknown flag, a bad or out-of-range value) is
 * named on stderr and exits 2, before anything is started; a run that fails exits 1.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { type FlagValue, flagOf, formatFlagValue, parseFlags, UsageError } from './flags.js';
import { markdownTable, type Row } from './report.js';

export type Options = Record<string, FlagValue>;

export interface Scenario {
  /** One line: what it measures at its defaults. */
  about: string;
  /** Every option it takes, with its default: one flag each, taking a comma-separated list where the default is one. */
  defaults: Options;
  /** Throws a UsageError for options it cannot run with; called on the command line's options before the run. */
  check?: (options: Options) => void;
  run: (options: Options) => Promise<Row[]>;
}

export type Registry = Readonly<Record<string, Scenario>>;

/** A registry entry from a scenario's own option types (parseFlags only gives it options of its defaults' keys and kinds). */
export function scenario<O extends { [K in keyof O]: FlagValue }>(spec: {
  about: string;
  defaults: O;
  check?: (options: O) => void;
  run: (options: Partial<O>) => Promise<Row[]>;
}): Scenario {
  return spec as unknown as Scenario;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const HELP = new Set(['--help', '-h', 'help']);
const INDENT = 18;

export type Command = { kind: 'help'; text: string } | { kind: 'run'; name: string; options: Options };

const listOptions = (defaults: Options): string[] =>
  Object.keys(defaults).filter((key) => typeof defaults[key] !== 'number');

const flagsLine = (defaults: Options): string =>
  Object.entries(defaults)
    .map(([key, value]) => `${flagOf(key)} ${formatFlagValue(value)}`)
    .join('  ');

/** Every scenario with its line and its flags (at their defaults). */
export function usage(registry: Registry): string {
  const lines = [
    'usage: npm run bench -- <scenario> [--flag <value>]...',
    '       npm run bench -- <scenario> --help',
    '       npm run bench -- --help',
    '',
    'Starts what the scenario needs (mock backend, proxies, redis-server) on loopback, prints a markdown',
    'table and writes bench/results/<scenario>.json. A flag takes a number, or numbers separated by commas',
    'where its default is a list. Exit status: 0 done, 1 the run failed, 2 a usage error.',
    '',
    'scenarios, with their flags at their defaults:',
  ];
  for (const [name, { about, defaults }] of Object.entries(registry)) {
    lines.push(`  ${name.padEnd(INDENT - 3)} ${about}`);
    if (Object.keys(defaults).length > 0) lines.push(`${' '.repeat(INDENT)}${flagsLine(defaults)}`);
  }
  return lines.join('\n');
}

/** One scenario: its line and its flags (at their defaults). */
export function scenarioUsage(name: string, { about, defaults }: Scenario): string {
  const lists = listOptions(defaults);
  return [
    `usage: npm run bench -- ${name} [--flag <value>]...`,
    '',
    about,
    '',
    'flags, at their defaults:',
    ...Object.entries(defaults).map(
      ([key, value]) =>
        `  ${flagOf(key)} ${formatFlagValue(value)}${lists.includes(key) ? '   (numbers separated by commas)' : ''}`,
    ),
  ].join('\n');
}

/** The command `argv` (after `npm run bench --`) asks for; throws a UsageError for a bad command line. */
export function parseCommand(argv: readonly string[], registry: Registry): Command {
  const names = Object.keys(registry).join(', ');
  const [name, ...rest] = argv;
  if (name === undefined) throw new UsageError(`no scenario given; scenarios: ${names}`);
  if (HELP.has(name)) return { kind: 'help', text: usage(registry) };
  if (!Object.hasOwn(registry, name)) {
    if (name.startsWith('-'))
      throw new UsageError(`expected a scenario before the flags, got "${name}"; scenarios: ${names}`);
    throw new UsageError(`unknown scenario "${name}"; scenarios: ${names}`);
  }
  const spec = registry[name]!;
  if (rest.some((arg) => arg === '--help' || arg === '-h')) return { kind: 'help', text: scenarioUsage(name, spec) };
  const options = parseFlags(rest, Object.keys(spec.defaults), listOptions(spec.defaults));
  spec.check?.({ ...spec.defaults, ...options });
  return { kind: 'run', name, options };
}

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Keeps a run's rows: bench/results/<scenario>.json. */
  save(name: string, rows: readonly Row[]): void;
}

export function saveResults(name: string, rows: readonly Row[]): void {
  mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL(`../results/${name}.json`, import.meta.url),
    `${JSON.stringify({ scenario: name, node: process.version, rows }, null, 2)}\n`,
  );
}

const STDIO: CliIo = {
  out: (text) => console.log(text),
  err: (text) => console.error(text),
  save: saveResults,
};

/** Runs the command `argv` asks for; resolves with the exit status (EXIT_OK, EXIT_FAILED or EXIT_USAGE). */
export async function runCli(argv: readonly string[], registry: Registry, io: CliIo = STDIO): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(argv, registry);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const name = argv[0];
    const hint =
      name !== undefined && Object.hasOwn(registry, name)
        ? `npm run bench -- ${name} --help lists its flags`
        : 'npm run bench -- --help lists every scenario and its flags';
    io.err(`${error.message}\n(${hint})`);
    return EXIT_USAGE;
  }
  if (command.kind === 'help') {
    io.out(command.text);
    return EXIT_OK;
  }
  try {
    const rows = await registry[command.name]!.run(command.options);
    // A scenario without load rows (instructions) prints and writes its own results.
    if (rows.length === 0) return EXIT_OK;
    io.out(`\n### ${command.name}\n\n${markdownTable(rows)}\n`);
    io.save(command.name, rows);
    return EXIT_OK;
  } catch (error) {
    // A scenario checking its options again when it starts refuses them as the command line would.
    if (error instanceof UsageError) {
      io.err(error.message);
      return EXIT_USAGE;
    }
    io.err(error instanceof Error ? (error.stack ?? error.message) : String(error));
    return EXIT_FAILED;
  }
}
