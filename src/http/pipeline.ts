import { performance } from 'node:perf_hooks';
import type { CoalescingCache, GetOptions, LookupOutcome } from '../engine/engine.js';
import { internalCause, ProxyError, type ErrorCode } from '../errors.js';
import { DEFAULT_MAX_GROUP_ID, parseGroupId } from '../ids.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { functionOption, integerOption, OptionError, specOption } from '../util/options.js';
import {
  AnswerEncoder,
  DEFAULT_CACHE_NAME,
  encodeError,
  type CacheControlPolicy,
  type LookupAnswer,
} from './respond.js';
import { encodeManyAnswer, MULTI_GET_OPTION_SPECS, parseIdList, type MultiGetOutcome } from './multi-get.js';

/** The route of profile lookups, as metrics and logs name it, whichever shell answered. */
export const ROUTE_LABEL = '/groups/:id';

/** The route of multi-gets (`GET /groups?ids=`), as metrics name it. */
const MULTI_ROUTE_LABEL = '/groups';

/** What the HTTP shells need of an engine, whatever its value type (without `staleWindows`, no stale directives are stated). */
export type EngineReader = Pick<CoalescingCache<unknown>, 'hit' | 'get' | 'getMany' | 'now'> &
  Partial<Pick<CoalescingCache<unknown>, 'staleWindows'>>;

/** A multi-get's request as metrics count it: its slowest way of answering an id (a failed id counts as a miss). */
const SUMMARY_ORDER: readonly LookupOutcome[] = [
  'miss',
  'collapsed',
  'stale-if-error',
  'stale-timeout',
  'stale',
  'l2-hit',
  'filtered',
  'hit',
];

/** The request an unexpected error happened in. */
export interface RequestLine {
  readonly method: string;
  /** As the client sent it (still percent-encoded), without the query. */
  readonly path: string;
}

/** One access-log line; `cache` is the Cache-Status header, `ms` from the request reaching the shell to the answer handed to Node. */
export interface AccessLogLine {
  method: string;
  path: string;
  status: number;
  cache: string | null;
  ms: number;
}

/** Every option name of GroupProfileRoutesOptions, to reject unknown ones. */
export const ROUTE_OPTION_NAMES = [
  'engine',
  'maxGroupId',
  'parseId',
  'cacheName',
  'multiGetMaxIds',
  'clientHeader',
  'metrics',
  'sMaxAgeSeconds',
  'onError',
] as const satisfies readonly (keyof GroupProfileRoutesOptions)[];

export interface GroupProfileRoutesOptions {
  /** The engine answering lookups. Required. */
  engine: EngineReader;
  /** Largest accepted group id. Default 2^53-1. */
  maxGroupId?: number;
  /** Raw (still percent-encoded) path segment to cache key, or `undefined` for a 400. Default: canonical decimal ids up to `maxGroupId`. */
  parseId?: (raw: string) => string | undefined;
  /** Cache name in RFC 9211 Cache-Status (an RFC 8941 token). Default `group-profile-proxy`. */
  cacheName?: string;
  /** Ids one multi-get (`GET /groups?ids=1,2,3`) may ask for; more is 400 TOO_MANY_GROUPS. Default 100. */
  multiGetMaxIds?: number;
  /**
   * The header naming the client for the origin budget, set by a trusted proxy in front (of a list such as
   * X-Forwarded-For, the last element: the one it added). Otherwise the connection's address. Default: none.
   */
  clientHeader?: string;
  /** Prometheus metrics to record requests into. Default: none. */
  metrics?: ProxyMetrics;
  /** Adds `s-maxage=N` to Cache-Control, a freshness lifetime for shared caches (CDNs) in front, s. Default: none. */
  sMaxAgeSeconds?: number;
  /** Told of an unexpected error (a bug, not the engine's ProxyErrors) before the 500 `INTERNAL`. Default: `console.error`. */
  onError?: (error: unknown, request: RequestLine) => void;
}

type AccessLog = (line: AccessLogLine) => void;

export interface LookupPipelineOptions extends GroupProfileRoutesOptions {
  /** Called with one line per answered request by the shells that keep an access log. Default: none. */
  accessLog?: AccessLog;
}

/** What the pipeline reads `signal` from on a miss only: a Request, whose signal may be created lazily. */
export interface Abortable {
  readonly signal: AbortSignal;
}

/** Where a miss's client key is read from: Node's request (headers, socket address) or a Fetch Request (headers). */
export type ClientSource =
  | {
      readonly headers: Readonly<Record<string, string | string[] | undefined>>;
      readonly socket?: { readonly remoteAddress?: string | undefined };
    }
  | { readonly headers: Headers };

/** Longest client key taken from a header. */
const CLIENT_KEY_MAX = 128;

const reportToConsole = (error: unknown, request: RequestLine): void => {
  console.error(`group-profile-proxy: unexpected error answering ${request.method} ${request.path}:`, error);
};

/**
 * The one way a profile lookup is answered, shared by the Hono route and the sidecar's fast path (thin
 * adapters over it): id rule, encoder memo, metrics label, access log, and the 500 for a bug.
 */
export class LookupPipeline {
  readonly cacheName: string;
  readonly maxGroupId: number;
  readonly multiGetMaxIds: number;
  /** Raw path segment → cache key, or undefined (answer `invalidId`). A closure: safe unbound. */
  readonly parseId: (raw: string) => string | undefined;
  /** Whether `record` or `logAccess` need each request's start time. */
  readonly timed: boolean;
  readonly logsAccess: boolean;
  /** Prebuilt answers: the same bytes from every shell. */
  readonly invalidId: LookupAnswer;
  readonly internalError: LookupAnswer;
  /** What a request whose client left before its answer counts as (the Hono route answers it ABORTED, 499). */
  readonly clientClosed: LookupAnswer;
  readonly #engine: EngineReader;
  readonly #encoder: AnswerEncoder;
  readonly #metrics: ProxyMetrics | undefined;
  readonly #recordHit: ((status: number, seconds: number) => void) | undefined;
  readonly #onError: (error: unknown, request: RequestLine) => void;
  readonly #accessLog: AccessLog | undefined;
  readonly #clientHeader: string | undefined;

  constructor(options: LookupPipelineOptions) {
    this.#engine = options.engine;
    const maxGroupId = integerOption('maxGroupId', options.maxGroupId ?? DEFAULT_MAX_GROUP_ID, 1, DEFAULT_MAX_GROUP_ID);
    this.maxGroupId = maxGroupId;
    this.multiGetMaxIds = specOption('multiGetMaxIds', options.multiGetMaxIds, MULTI_GET_OPTION_SPECS.maxIds);
    this.parseId = parseIdOption(options.parseId, maxGroupId);
    const cacheName = cacheNameOption(options.cacheName);
    this.cacheName = cacheName;
    this.#encoder = new AnswerEncoder(cacheName, policyFor(options.engine, options.sMaxAgeSeconds));
    this.#metrics = options.metrics;
    this.#recordHit = options.metrics?.hitRecorder();
    this.#onError = options.onError === undefined ? reportToConsole : functionOption('onError', options.onError);
    this.#accessLog =
      options.accessLog === undefined ? undefined : functionOption<AccessLog>('accessLog', options.accessLog);
    this.logsAccess = this.#accessLog !== undefined;
    const header = options.clientHeader;
    if (header !== undefined && (typeof header !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(header)))
      throw new OptionError('clientHeader', 'a header name such as x-forwarded-for', header);
    this.#clientHeader = header?.toLowerCase();
    this.timed = this.#metrics !== undefined || this.logsAccess;
    const error = (code: ErrorCode, message: string): LookupAnswer =>
      encodeError(new ProxyError(code, message), cacheName);
    this.invalidId = error('INVALID_GROUP_ID', `group id must be a decimal integer in [1, ${maxGroupId}]`);
    this.internalError = error('INTERNAL', 'internal error');
    this.clientClosed = error('ABORTED', 'the caller stopped waiting');
  }

  /**
   * The answer to `GET|HEAD` of a parsed key: a fresh L1 hit synchronously (no promise, no allocation),
   * anything else through the engine's coalesced load. Never throws or rejects; `method` and `target` only
   * name the request in an error's log line; `abort`'s signal is read on a miss only.
   */
  answer(
    key: string,
    ifNoneMatch: string | undefined,
    abort: Abortable | undefined,
    method: string,
    target: string,
    from?: ClientSource,
  ): LookupAnswer | Promise<LookupAnswer> {
    try {
      const entry = this.#engine.hit(key);
      if (entry !== undefined) return this.#encoder.encode(entry, 'hit', this.#engine.now(), ifNoneMatch);
    } catch (error) {
      return this.fail(error, method, target);
    }
    return this.#lookup(key, ifNoneMatch, abort, method, target, from);
  }

  /** The client a miss is charged to: the configured header's (last) value, else the connection's address. */
  clientOf(from: ClientSource | undefined): string | undefined {
    if (from === undefined) return undefined;
    const header = this.#clientHeader;
    if (header !== undefined) {
      const headers = from.headers;
      const raw =
        typeof headers.get === 'function'
          ? (headers as Headers).get(header)
          : (headers as Record<string, string | string[] | undefined>)[header];
      const value = Array.isArray(raw) ? raw.at(-1) : raw;
      if (typeof value === 'string') {
        const last = value.slice(value.lastIndexOf(',') + 1).trim();
        if (last !== '') return last.slice(0, CLIENT_KEY_MAX);
      }
    }
    return 'socket' in from ? from.socket?.remoteAddress : undefined;
  }

  /** The engine's options for a miss: the caller's abort signal and who to charge (none when neither is known). */
  #getOptions(abort: Abortable | undefined, from: ClientSource | undefined): GetOptions | undefined {
    const client = this.clientOf(from);
    return abort === undefined && client === undefined ? undefined : { signal: abort?.signal, client };
  }

  async #lookup(
    key: string,
    ifNoneMatch: string | undefined,
    abort: Abortable | undefined,
    method: string,
    target: string,
    from: ClientSource | undefined,
  ): Promise<LookupAnswer> {
    try {
      const { entry, outcome, error } = await this.#engine.get(key, this.#getOptions(abort, from));
      // Served stale because a load failed: a failure that was a bug is still reported.
      if (error !== undefined && error.code === 'INTERNAL') this.#report(error, method, target);
      return this.#encoder.encode(entry, outcome, this.#engine.now(), ifNoneMatch, error?.status);
    } catch (error) {
      // The engine fails with ProxyErrors (upstream, overload, timeouts, aborts, shutdown), each with its status;
      // anything else, or its INTERNAL (a throw it caught inside, such as an encoder's), is a bug.
      return error instanceof ProxyError && error.code !== 'INTERNAL'
        ? encodeError(error, this.cacheName)
        : this.fail(error, method, target);
    }
  }

  /**
   * The answer to `GET|HEAD /groups?ids=…` (`url` as sent): 400 for a malformed list, else every id through
   * `getMany` (sharing loads with single lookups). Never rejects; records the request and each id's outcome.
   */
  async answerMany(
    url: string,
    ifNoneMatch: string | undefined,
    abort: Abortable | undefined,
    method: string,
    started: number,
    from?: ClientSource,
  ): Promise<LookupAnswer> {
    let answer: LookupAnswer;
    let outcomes: ReadonlyMap<MultiGetOutcome, number> | undefined;
    try {
      const keys = parseIdList(url, this.parseId, this.multiGetMaxIds, this.maxGroupId);
      if (keys instanceof ProxyError) {
        answer = encodeError(keys, this.cacheName);
      } else {
        const answers = await this.#engine.getMany(keys, this.#getOptions(abort, from));
        // An id that failed with a bug (answered INTERNAL in the list, or stale) has the bug reported, once per request.
        let reported: Set<unknown> | undefined;
        for (const one of answers.values()) {
          const failure = one instanceof ProxyError ? one : one.error;
          if (failure === undefined || failure.code !== 'INTERNAL') continue;
          const cause = internalCause(failure);
          if (reported === undefined) reported = new Set();
          else if (reported.has(cause)) continue;
          reported.add(cause);
          this.#report(failure, method, url);
        }
        const aborted = abort?.signal.aborted === true;
        const many = encodeManyAnswer(answers, this.#engine.now(), ifNoneMatch, this.cacheName, this.#encoder.policy);
        outcomes = many.outcomes;
        answer = aborted ? this.clientClosed : { ...many, cache: summaryOf(many.outcomes) };
      }
    } catch (error) {
      answer = this.fail(error, method, url);
    }
    const metrics = this.#metrics;
    if (metrics !== undefined) {
      const seconds = (performance.now() - started) / 1000;
      metrics.recordAnswer(MULTI_ROUTE_LABEL, answer.status, answer.cache, seconds, 'per-id');
      if (outcomes !== undefined) metrics.recordMultiGetIds(outcomes);
    }
    return answer;
  }

  /** Reports an unexpected error (an `INTERNAL` ProxyError as the bug it wraps) and returns the 500 to answer it with. */
  fail(error: unknown, method: string, target: string): LookupAnswer {
    this.#report(error, method, target);
    return this.internalError;
  }

  #report(error: unknown, method: string, target: string): void {
    try {
      this.#onError(internalCause(error), { method, path: pathOf(target) });
    } catch {
      // A failing logger must not cost the client its answer.
    }
  }

  /** Records one answer of the route into the metrics, under ROUTE_LABEL (hits through the pre-bound recorder). */
  record(answer: LookupAnswer, started: number): void {
    const metrics = this.#metrics;
    if (metrics === undefined) return;
    const seconds = (performance.now() - started) / 1000;
    if (answer.cache === 'hit') this.#recordHit!(answer.status, seconds);
    else metrics.recordAnswer(ROUTE_LABEL, answer.status, answer.cache, seconds);
  }

  /** The access-log line of one request, of any route; `target` is the request URL or target, `started` from performance.now(). */
  logAccess(
    method: string,
    target: string,
    status: number,
    cacheStatus: string | null | undefined,
    started: number,
  ): void {
    const accessLog = this.#accessLog;
    if (accessLog === undefined) return;
    accessLog({
      method,
      path: pathOf(target),
      status,
      cache: cacheStatus ?? null,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
  }
}

function summaryOf(outcomes: ReadonlyMap<MultiGetOutcome, number>): LookupOutcome {
  if (outcomes.has('error')) return 'miss';
  return SUMMARY_ORDER.find((outcome) => outcomes.has(outcome)) ?? 'hit';
}

/** The path of a request target (`/groups/42?x=1`) or URL (`http://host/groups/42`), as sent, without query or fragment. */
function pathOf(target: string): string {
  let start = 0;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const authority = target.indexOf('//');
    start = authority === -1 ? -1 : target.indexOf('/', authority + 2);
    if (start === -1) return '/';
  }
  let end = start;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 63 /* ? */ || c === 35 /* # */) break;
    end++;
  }
  return start === 0 && end === target.length ? target : target.slice(start, end);
}

/** A shell's Cache-Control policy: the engine's RFC 5861 windows (when it states them) and the validated `sMaxAgeSeconds`. */
function policyFor(engine: EngineReader, sMaxAgeSeconds: unknown): CacheControlPolicy {
  const shared =
    sMaxAgeSeconds === undefined ? undefined : integerOption('sMaxAgeSeconds', sMaxAgeSeconds, 0, 31_536_000);
  const windows = engine.staleWindows?.();
  return {
    staleWhileRevalidateSeconds: Math.floor((windows?.staleWhileRevalidateMs ?? 0) / 1000),
    negativeStaleWhileRevalidateSeconds: Math.floor((windows?.negativeStaleWhileRevalidateMs ?? 0) / 1000),
    sharedMaxAgeSeconds: shared,
  };
}

/** Validates a `cacheName` option once; every shell answers under the same, checked name. */
export function cacheNameOption(value: unknown): string {
  if (value === undefined) return DEFAULT_CACHE_NAME;
  if (typeof value !== 'string' || !/^[A-Za-z*][A-Za-z0-9_.:/%*!#$&'+^`|~-]*$/.test(value)) {
    throw new OptionError('cacheName', 'an RFC 8941 token such as "group-profile-proxy"', value);
  }
  return value;
}

/** Validates a `parseId` option; the default takes canonical decimal ids up to `maxGroupId`. */
export function parseIdOption(value: unknown, maxGroupId?: number): (raw: string) => string | undefined {
  return value === undefined ? (raw: string) => parseGroupId(raw, maxGroupId) : functionOption('parseId', value);
}
