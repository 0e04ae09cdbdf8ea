/**
 * Errors with stable codes. The code is part of the public contract: it is the
 * `error.code` of every JSON error body and what callers branch on.
 */
export type ErrorCode =
  | 'INVALID_GROUP_ID'
  | 'GROUP_NOT_FOUND'
  | 'UPSTREAM_STATUS'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_BAD_RESPONSE'
  | 'CIRCUIT_OPEN'
  | 'OVERLOADED'
  | 'WAIT_TIMEOUT'
  | 'ABORTED'
  | 'CLOSED'
  | 'METHOD_NOT_ALLOWED'
  | 'ROUTE_NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'L2_UNAVAILABLE'
  | 'PAYLOAD_TOO_LARGE'
  | 'BAD_REQUEST'
  | 'TOO_MANY_GROUPS'
  | 'BAD_LAST_EVENT_ID'
  | 'TOO_MANY_SUBSCRIBERS'
  | 'RATE_LIMITED'
  | 'INTERNAL';

/** The documented status of each code (docs/http-api.md, "Errors"); the proxy's own errors always use it. */
export const STATUS_OF_CODE: Readonly<Record<ErrorCode, number>> = Object.freeze({
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

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(STATUS_OF_CODE, value);
}

export class ProxyError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** HTTP status a shell should answer with. */
    readonly status: number,
    options?: { cause?: unknown; retryAfterSeconds?: number; headers?: Readonly<Record<string, string>> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.headers = options?.headers;
  }
  readonly retryAfterSeconds: number | undefined;
  /** Headers the answer carries besides the usual ones (a 429's RateLimit fields). */
  readonly headers: Readonly<Record<string, string>> | undefined;

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isProxyError(value: unknown): value is ProxyError {
  return value instanceof ProxyError;
}

/** Anything thrown by a loader that is not a ProxyError becomes a 502 with a stable code. */
export function toProxyError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  return new ProxyError(
    'UPSTREAM_BAD_RESPONSE',
    `the loader failed: ${error instanceof Error ? error.message : String(error)}`,
    502,
    {
      cause: error,
    },
  );
}
