import { integerOption, OptionError } from './util/options.js';

/**
 * The documented status of each code (docs/http-api.md, "Errors"); the proxy's own errors always use it.
 * The codes are part of the public contract: the `error.code` of every JSON error body, what callers branch on.
 */
export const STATUS_OF_CODE = Object.freeze({
  INVALID_GROUP_ID: 400,
  GROUP_NOT_FOUND: 404,
  UPSTREAM_STATUS: 502,
  UPSTREAM_TIMEOUT: 504,
  UPSTREAM_UNREACHABLE: 502,
  UPSTREAM_BAD_RESPONSE: 502,
  CIRCUIT_OPEN: 503,
  OVERLOADED: 503,
  WAIT_TIMEOUT: 504,
  ABORTED: 499,
  CLOSED: 503,
  METHOD_NOT_ALLOWED: 405,
  ROUTE_NOT_FOUND: 404,
  UNAUTHORIZED: 401,
  L2_UNAVAILABLE: 503,
  PAYLOAD_TOO_LARGE: 413,
  BAD_REQUEST: 400,
  TOO_MANY_GROUPS: 400,
  BAD_LAST_EVENT_ID: 400,
  TOO_MANY_SUBSCRIBERS: 503,
  RATE_LIMITED: 429,
  INTERNAL: 500,
});

export type ErrorCode = keyof typeof STATUS_OF_CODE;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(STATUS_OF_CODE, value);
}

/**
 * Codes that describe the upstream's answer, so a loader may forward its status (`{ status: 503 }`);
 * every other code is the proxy's own and always answers its documented status.
 */
const STATUS_OVERRIDABLE: ReadonlySet<ErrorCode> = new Set([
  'UPSTREAM_STATUS',
  'UPSTREAM_TIMEOUT',
  'UPSTREAM_UNREACHABLE',
  'UPSTREAM_BAD_RESPONSE',
]);

export interface ProxyErrorOptions {
  /** The error this one stands for (kept as `cause`, for logs). */
  cause?: unknown;
  /** Seconds for the answer's `Retry-After`. */
  retryAfterSeconds?: number;
  /** Headers the answer carries besides the usual ones (a 429's RateLimit fields). */
  headers?: Readonly<Record<string, string>>;
  /** Instead of the documented status: only for `UPSTREAM_*` codes, an integer in [400, 599] (else an OptionError). */
  status?: number;
}

export class ProxyError extends Error {
  readonly code: ErrorCode;
  /** HTTP status a shell answers with: the code's documented one (STATUS_OF_CODE) unless overridden. */
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options?: ProxyErrorOptions);
  /**
   * @deprecated The status comes from the code: `new ProxyError(code, message, options?)`. A
   * status given here must be the code's documented one (or an allowed override, as `options.status`).
   */
  constructor(code: ErrorCode, message: string, status: number, options?: Omit<ProxyErrorOptions, 'status'>);
  constructor(
    code: ErrorCode,
    message: string,
    statusOrOptions?: number | ProxyErrorOptions,
    legacyOptions?: Omit<ProxyErrorOptions, 'status'>,
  ) {
    const options: ProxyErrorOptions | undefined =
      typeof statusOrOptions === 'number' ? { ...legacyOptions, status: statusOrOptions } : statusOrOptions;
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.status = statusOf(code, options?.status);
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.headers = options?.headers;
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** The status of an error of `code`: the table's, or an allowed override of it. */
function statusOf(code: ErrorCode, status: number | undefined): number {
  const documented = STATUS_OF_CODE[code];
  if (status === undefined || status === documented) return documented;
  if (!STATUS_OVERRIDABLE.has(code)) throw new OptionError('status', `${documented}, the status of ${code}`, status);
  return integerOption('status', status, 400, 599);
}

export function isProxyError(value: unknown): value is ProxyError {
  return value instanceof ProxyError;
}

/**
 * Any error as the ProxyError to answer it with: anything but a ProxyError is a bug inside the proxy, 500 `INTERNAL`
 * (the original as `cause`, reported to `onError`). Never an upstream code: see `toLoaderError`.
 */
export function toProxyError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  return new ProxyError('INTERNAL', 'internal error', { cause: error });
}

/**
 * What a loader threw, as a ProxyError: anything but a ProxyError is the upstream failing, 502 `UPSTREAM_BAD_RESPONSE`
 * (the original as `cause`). Only where the loader is called; elsewhere an unexpected error is `toProxyError`'s INTERNAL.
 */
export function toLoaderError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  return new ProxyError(
    'UPSTREAM_BAD_RESPONSE',
    `the loader failed: ${error instanceof Error ? error.message : String(error)}`,
    { cause: error },
  );
}

/** The error an INTERNAL ProxyError stands for (its `cause`), to report the original throw and its stack. */
export function internalCause(error: unknown): unknown {
  return error instanceof ProxyError && error.code === 'INTERNAL' && error.cause !== undefined ? error.cause : error;
}
