/**
 * Command-line flags of `npm run bench`: `--kebab-case <value>` pairs, checked against what a scenario takes.
 * A value is a number, or for an option whose default is a list, numbers separated by commas (`--levels 1,10,100`).
 */

/** A bad command line (unknown scenario, unknown flag, a value out of range): `npm run bench` exits 2 on it. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type FlagValue = number | readonly number[];

export const flagOf = (option: string): string => `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A value as it is written on the command line: `1000`, `1,10,100`. */
export const formatFlagValue = (value: FlagValue): string =>
  typeof value === 'number' ? String(value) : value.join(',');

/**
 * `--name <value>` pairs → options. A flag the scenario does not take is an error, not silently ignored;
 * options named in `lists` take comma-separated numbers and come back as arrays.
 */
export function parseFlags(
  args: readonly string[],
  accepted: readonly string[],
  lists: readonly string[] = [],
): Record<string, FlagValue> {
  const flags: Record<string, FlagValue> = {};
  for (let i = 0; i < args.length; i += 2) {
    const match = /^--([a-z0-9-]+)$/.exec(args[i]!);
    const text = args[i + 1];
    if (!match || text === undefined || text.startsWith('--'))
      throw new UsageError(`bad flag near ${args[i]}: use --name <value>`);
    const option = match[1]!.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    if (!accepted.includes(option))
      throw new UsageError(`unknown flag ${args[i]}: this scenario takes ${accepted.map(flagOf).join(', ')}`);
    if (option in flags) throw new UsageError(`${args[i]} is given twice`);
    if (lists.includes(option)) {
      const values = text.split(',').map((part) => (part.trim() === '' ? Number.NaN : Number(part)));
      if (!values.every(Number.isFinite))
        throw new UsageError(`bad flag near ${args[i]}: use ${args[i]} <number>[,<number>]...`);
      flags[option] = values;
    } else {
      const value = text.trim() === '' ? Number.NaN : Number(text);
      if (!Number.isFinite(value)) throw new UsageError(`bad flag near ${args[i]}: use --name <number>`);
      flags[option] = value;
    }
  }
  return flags;
}

/** Throws a UsageError naming the flag unless `value` is an integer from `min` to `max`. */
export function checkInteger(option: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw new UsageError(`${flagOf(option)} must be ${range}, got ${value}`);
  }
}
