/**
 * Standalone mock backend: `node dist/mock-backend/cli.js`, configured by env. Values go through the library's
 * option validation, and errors are reported under the env variable's name.
 */
import { OptionError } from '../util/options.js';
import { DEFAULT_MOCK_BACKEND_OPTIONS } from './options.js';
import { startMockBackend, type RunningMockBackend, type StartMockBackendOptions } from './server.js';

const ENV_TO_OPTION = {
  MOCK_PORT: 'port',
  MOCK_LATENCY_MS: 'latencyMs',
  MOCK_LATENCY_JITTER_MS: 'latencyJitterMs',
  MOCK_ERROR_RATE: 'errorRate',
  MOCK_MISSING_EVERY: 'missingEvery',
  MOCK_MAX_ID: 'maxId',
  MOCK_CAPACITY: 'capacity',
} as const;

const DEFAULT_PORT = 9090;

/** Unset or empty → undefined (the default); unparsable text is passed on so validation names it. */
function numberFromEnv(raw: string | undefined): number | string | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw;
}

function optionsFromEnv(env: NodeJS.ProcessEnv): StartMockBackendOptions {
  const options: Record<string, unknown> = { port: DEFAULT_PORT, host: env.MOCK_HOST?.trim() || '127.0.0.1' };
  for (const [variable, option] of Object.entries(ENV_TO_OPTION)) {
    const value = numberFromEnv(env[variable]);
    if (value !== undefined) options[option] = value;
  }
  return options as StartMockBackendOptions;
}

function envNameOf(option: string): string {
  if (option === 'host') return 'MOCK_HOST';
  return Object.entries(ENV_TO_OPTION).find(([, name]) => name === option)?.[0] ?? option;
}

async function main(): Promise<void> {
  const options = optionsFromEnv(process.env);
  let running: RunningMockBackend;
  try {
    running = await startMockBackend(options);
  } catch (error) {
    if (error instanceof OptionError) {
      const variable = envNameOf(error.option);
      console.error(
        `invalid ${variable}: expected ${error.expected}, got ${JSON.stringify(process.env[variable] ?? String(error.received))}`,
      );
    } else {
      console.error(`mock backend failed to start: ${error instanceof Error ? error.message : String(error)}`);
    }
    process.exit(1);
  }
  const resolved = { ...DEFAULT_MOCK_BACKEND_OPTIONS, ...options };
  const { latencyMs, latencyJitterMs, errorRate, missingEvery, maxId, capacity } = resolved;
  const settings = { latencyMs, latencyJitterMs, errorRate, missingEvery, maxId, capacity };
  console.log(JSON.stringify({ msg: 'mock backend listening', url: running.url, ...settings }));

  const stop = (): void => void running.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

await main();
