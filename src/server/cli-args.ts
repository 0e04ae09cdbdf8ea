import { SETTINGS } from './config.js';

/** `--upstream-url` for `UPSTREAM_URL`: every setting is a flag too. */
export function flagOf(env: string): string {
  return `--${env.toLowerCase().replace(/_/g, '-')}`;
}

const ENV_OF_FLAG = new Map(Object.values(SETTINGS).map((setting) => [flagOf(setting.env), setting.env]));

export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

/** The commands: see helpText(). */
export type CliCommand =
  | { help: true }
  | { help: false; run: 'version' }
  | { help: false; run: 'serve'; env: Record<string, string> }
  | { help: false; run: 'feed-keys'; env: Record<string, string> }
  | {
      help: false;
      run: 'invalidate';
      env: Record<string, string>;
      ids: string[];
      kind: 'changed' | 'deleted';
      /** The new version of the groups, as `POST /admin/invalidate`'s `version`. */
      version?: string;
    };

/** The longest `--change-version`, as the admin route's `version`. */
const MAX_CHANGE_VERSION_LENGTH = 128;

/** An optional command word, then flags (`--port 8080` or `--port=8080`) as environment overrides (and ids). */
export function parseArgs(args: readonly string[]): CliCommand {
  const env: Record<string, string> = {};
  const word = args[0];
  const run = word === 'invalidate' || word === 'feed-keys' || word === 'serve' ? word : undefined;
  const ids: string[] = [];
  let kind: 'changed' | 'deleted' = 'changed';
  let version: string | undefined;
  for (let i = run === undefined ? 0 : 1; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') return { help: true };
    if (arg === '--version' || arg === '-v') return { help: false, run: 'version' };
    if (run === 'invalidate' && arg === '--deleted') {
      kind = 'deleted';
      continue;
    }
    if (run === 'invalidate' && !arg.startsWith('-')) {
      ids.push(arg);
      continue;
    }
    const equals = arg.indexOf('=');
    const [flag, inline] = equals === -1 ? [arg, undefined] : [arg.slice(0, equals), arg.slice(equals + 1)];
    if (run === 'invalidate' && flag === '--change-version') {
      version = inline ?? args[++i];
      if (version === undefined || version === '' || version.length > MAX_CHANGE_VERSION_LENGTH) {
        throw new UsageError(`--change-version needs a value of 1 to ${MAX_CHANGE_VERSION_LENGTH} characters`);
      }
      continue;
    }
    const variable = ENV_OF_FLAG.get(flag);
    if (variable === undefined) throw new UsageError(`unknown option ${flag}; see --help`);
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`option ${flag} needs a value`);
    env[variable] = value;
  }
  if (run === 'invalidate') {
    if (ids.length === 0)
      throw new UsageError('invalidate needs at least one group id: group-profile-proxy invalidate 42 43');
    return { help: false, run, env, ids, kind, ...(version === undefined ? {} : { version }) };
  }
  return { help: false, run: run ?? 'serve', env };
}

export function helpText(): string {
  const lines = [
    'group-profile-proxy: a query-coalescing caching proxy for group-profile lookups.',
    '',
    'Usage: group-profile-proxy [serve] [--flag value ...]',
    '       group-profile-proxy invalidate <group id>... [--deleted] [--change-version V] [--flag value ...]',
    "           Appends a change of those groups to the fleet's change feed in Redis (REDIS_URL or",
    '           REDIS_CLUSTER_NODES, as the proxies read it) and exits 0 once Redis acknowledged it;',
    "           --change-version records the groups' new version with it (as the admin route's version).",
    '       group-profile-proxy feed-keys [--flag value ...]',
    "           Prints the change feed's Redis stream keys, one per shard, for producers outside the proxy.",
    '       group-profile-proxy --version | --help',
    '',
    'Exit codes: 0 done; 1 a bad setting, or a failure (Redis refused or unreachable); 2 a usage error.',
    '',
    'Every option is an environment variable too; flags win over the environment.',
    '',
  ];
  for (const setting of Object.values(SETTINGS)) {
    const fallback = setting.defaultText === '' ? 'unset' : setting.defaultText;
    lines.push(
      `  ${flagOf(setting.env)} (${setting.env}, default ${fallback})`,
      `      ${setting.description} Allowed: ${setting.allowed}.`,
    );
  }
  return `${lines.join('\n')}\n`;
}
