/** Fault modes the mock can be switched into, to exercise the proxy's failure handling. */

export const MOCK_MODES = [
  /** Answer normally (latency, errorRate and missing ids apply). */
  'normal',
  /** Every /groups* call answers 500. */
  'error',
  /** Normal answers after a long fixed latency (default 3000 ms). */
  'slow',
  /** No answer until the mode changes or the client leaves; 503 after hangTimeoutMs. */
  'hang',
  /** 200 with an HTML body. */
  'garbage',
  /** 200 with a JSON array instead of an object. */
  'not-object',
  /** 200 with a valid 2 MiB JSON object. */
  'oversized',
  /** TCP connection destroyed without an answer. */
  'down',
  /** Odd-numbered calls since the mode was set answer 500, even ones normally. */
  'flapping',
] as const;

export type MockMode = (typeof MOCK_MODES)[number];

export const DEFAULT_SLOW_LATENCY_MS = 3000;

export function isMockMode(value: unknown): value is MockMode {
  return typeof value === 'string' && (MOCK_MODES as readonly string[]).includes(value);
}
