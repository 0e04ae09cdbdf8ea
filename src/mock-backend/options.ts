/** Options of the mock backend, validated once when it is created. */
import { OptionError, definedOnly, functionOption, integerOption, numberOption } from '../util/options.js';

/** Upper bound for any artificial wait, so a misconfigured mock cannot stall a test run forever. */
export const MAX_WAIT_MS = 60_000;

export interface MockBackendOptions {
  /** Base delay before each /groups* answer, in ms. Default 50. */
  latencyMs: number;
  /** Uniform ± jitter added to latencyMs (the result is never below 0), in ms. Default 10. */
  latencyJitterMs: number;
  /** Fraction (0–1) of otherwise normal calls answered 500. Default 0. */
  errorRate: number;
  /** Ids where `id % missingEvery === 0` answer 404; 0 disables. Default 0. */
  missingEvery: number;
  /** Additional ids that answer 404. Default []. */
  missingIds: readonly number[];
  /** Ids above this answer 404 (the id space of the fake world). Default 100_000_000. */
  maxId: number;
  /** Most ids accepted by one `GET /groups?ids=` call (before de-duplication). Default 1000. */
  maxBatchIds: number;
  /** In `hang` mode, answer 503 after this long at most, in ms (≤ 60 000). Default 60 000. */
  hangTimeoutMs: number;
  /** /groups* calls served at once; more wait their turn, so latency grows with load. 0 = no limit. Default 0. */
  capacity: number;
  /** Source of randomness for jitter and errorRate, returning [0, 1). Default Math.random. */
  random: () => number;
}

export const DEFAULT_MOCK_BACKEND_OPTIONS: Readonly<MockBackendOptions> = Object.freeze({
  latencyMs: 50,
  latencyJitterMs: 10,
  errorRate: 0,
  missingEvery: 0,
  missingIds: [],
  maxId: 100_000_000,
  maxBatchIds: 1000,
  hangTimeoutMs: MAX_WAIT_MS,
  capacity: 0,
  random: Math.random,
});

export function resolveMockBackendOptions(options: Partial<MockBackendOptions> = {}): MockBackendOptions {
  const merged: Record<string, unknown> = { ...DEFAULT_MOCK_BACKEND_OPTIONS, ...definedOnly(options) };
  return {
    latencyMs: integerOption('latencyMs', merged.latencyMs, 0, MAX_WAIT_MS),
    latencyJitterMs: integerOption('latencyJitterMs', merged.latencyJitterMs, 0, MAX_WAIT_MS),
    errorRate: numberOption('errorRate', merged.errorRate, 0, 1),
    missingEvery: integerOption('missingEvery', merged.missingEvery, 0),
    missingIds: idListOption('missingIds', merged.missingIds),
    maxId: integerOption('maxId', merged.maxId, 1),
    maxBatchIds: integerOption('maxBatchIds', merged.maxBatchIds, 1, 100_000),
    hangTimeoutMs: integerOption('hangTimeoutMs', merged.hangTimeoutMs, 0, MAX_WAIT_MS),
    capacity: integerOption('capacity', merged.capacity, 0, 1_000_000),
    random: functionOption<() => number>('random', merged.random),
  };
}

function idListOption(name: string, value: unknown): readonly number[] {
  if (!Array.isArray(value)) throw new OptionError(name, 'an array of positive integers', value);
  return Object.freeze(value.map((id: unknown, index) => integerOption(`${name}[${index}]`, id, 1)));
}
