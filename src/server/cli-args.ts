import { SETTINGS } from './config.js';

/** `--upstream-url` for `UPSTREAM_URL`: every setting is a flag too. */
export function flagOf(env: string): string {
  return '--' + env.toLowerCase().replace(/_/g, '-');
}

const ENV_OF_FLAG = new Map(Object.values(SETTINGS).map((setting) => [flagOf(setting.env), setting.env]));

export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

export type CliCommand = { help: true } | { help: false; env: Record<string, string> };

/** Flags (`--port 8080` or `--port=8080`) as environment overrides; `--help` / `-h` asks for help. */
export function parseArgs(args: readonly string[]): CliCommand {
  const env: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') return { help: true };
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const variable = ENV_OF_FLAG.get(flag);
    if (variable === undefined) throw new UsageError(`unknown option ${flag}; see --help`);
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`option ${flag} needs a value`);
    env[variable] = value;
  }
  return { help: false, env };
}

export function helpText(): string {
  const lines = [
    'group-profile-proxy: a query-coalescing caching proxy for group-profile lookups.',
    '',
    'Usage: group-profile-proxy [--flag value ...]',
    '',
    'Every option is an environment variable too; flags win over the environment.',
    '',
  ];
  for (const setting of Object.values(SETTINGS)) {
    const fallback = setting.defaultText === '' ? 'unset' : setting.defaultText;
    lines.push(`  ${flagOf(setting.env)} (${setting.env}, default ${fallback})`, `      ${setting.description} Allowed: ${setting.allowed}.`);
  }
  return lines.join('\n') + '\n';
}
