/** Command-line flags of `npm run bench`: `--kebab-case <number>` pairs, checked against what a scenario takes. */
export const flagOf = (option: string): string => `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** `--name <number>` pairs → options; a flag the scenario does not take is an error, not silently ignored. */
export function parseFlags(args: string[], accepted: readonly string[]): Record<string, number> {
  const flags: Record<string, number> = {};
  for (let i = 0; i < args.length; i += 2) {
    const match = /^--([a-z0-9-]+)$/.exec(args[i]!);
    const value = Number(args[i + 1]);
    if (!match || args[i + 1] === undefined || !Number.isFinite(value))
      throw new Error(`bad flag near ${args[i]}: use --name <number>`);
    const option = match[1]!.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    if (!accepted.includes(option))
      throw new Error(`unknown flag ${args[i]}: this scenario takes ${accepted.map(flagOf).join(', ')}`);
    flags[option] = value;
  }
  return flags;
}
