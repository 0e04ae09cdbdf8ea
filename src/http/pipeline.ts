import { performance } from 'node:perf_hooks';
import type { CoalescingCache } from '../engine/engine.js';
import { internalCause, ProxyError } from '../errors.js';
import { DEFAULT_MAX_GROUP_ID, parseGroupId } from '../ids.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { functionOption, integerOption, OptionError, specOption } from '../util/options.js';
import {
  AnswerEncoder,
  cacheControlPolicy,
  DEFAULT_CACHE_NAME,
  encodeError,
  type CacheControlPolicy,
  type LookupAnswer,
} from './respond.js';
import { encodeManyAnswer, MULTI_GET_OPTION_SPECS, parseIdList, type MultiGetOutcome } from './multi-get.js';
import type { GetOptions, LookupOutcome } from '../engine/engine.js';

/** The route of profile lookups, as metrics and logs name it, whichever shell answered. */
export const ROUTE_LABEL = '/groups/:id';

/** The route of multi-gets (`GET /groups?ids=`), as metrics name it. */
export const MULTI_ROUTE_LABEL = '/groups';

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

/** One access-log line. */
export interface AccessLogLine {
  method: string;
  path: string;
  status: number;
  /** The answer's Cache-Status header, or null when it has none. */
  cache: string | null;
  /** From the request reaching the shell to the answer handed to Node, ms (two decimals). */
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
  /**
   * Turns the raw (still percent-encoded) path segment into a cache key, or
   * `undefined` to reject it with 400. Default: canonical decimal ids up to `maxGroupId`.
   */
  parseId?: (raw: string) => string | undefined;
  /** Cache name in RFC 9211 Cache-Status (an RFC 8941 token). Default `group-profile-proxy`. */
  cacheName?: string;
  /** Ids one multi-get (`GET /groups?ids=1,2,3`) may ask for; more is 400 TOO_MANY_GROUPS. Default 100. */
  multiGetMaxIds?: number;
  /**
   * The request header naming the client for the engine's origin budget, set by a trusted proxy
   * in front (for a list such as X-Forwarded-For, its last element: the one that proxy added).
   * Without it, or when a request lacks it, the client is the connection's address. Default: none.
   */
  clientHeader?: string;
  /** Prometheus metrics to record requests into. Default: none. */
  metrics?: ProxyMetrics;
  /** Adds `s-maxage=N` to Cache-Control, a freshness lifetime for shared caches (CDNs) in front, s. Default: none. */
  sMaxAgeSeconds?: number;
  /**
   * Called once with an unexpected error (a throw in the engine, the encoder or
   * the shell; not the engine's own ProxyErrors such as upstream failures) before
   * the request is answered 500 `INTERNAL`. Default: `console.error`.
   */
  onError?: (error: unknown, request: RequestLine) => void;
}

export interface LookupPipelineOptions extends GroupProfileRoutesOptions {
  /** Called with one line per answered request by the shells that keep an access log. Default: none. */
  accessLog?: (line: AccessLogLine) => void;
}

/** What the pipeline reads `signal` from on a miss only: a Request, whose signal may be created lazily. */
export interface Abortable {
  readonly signal: AbortSignal;
}

/**
 * Where the client key of a miss is read from (only on a miss): Node's request (its headers and
 * socket address), or a Fetch Request (headers only).
 */
export type ClientSource =
  | {
      readonly headers: Readonly<Record<string, string | string[] | undefined>>;
      readonly socket?: { readonly remoteAddress?: string | undefined };
    }
  | { readonly headers: Headers };

/** Longest client key taken from a header; a longer one is cut. */
const CLIENT_KEY_MAX = 128;

const reportToConsole = (error: unknown, request: RequestLine): void => {
  console.error(`group-profile-proxy: unexpected error answering ${request.method} ${request.path}:`, error);
};

/**
 * The one way a profile lookup is answered, shared by the Hono route and the
 * sidecar's pre-Hono fast path (thin adapters over it): the id rule, the
 * encoder and its memo, the route label metrics are recorded under, the
 * access-log line, and the 500 for an unexpected error. Built once per engine
 * and options; the sidecar's two shells share one.
 */
export class LookupPipeline {
  readonly cacheName: string;
  readonly maxGroupId: number;
  readonly multiGetMaxIds: number;
  /** Raw path segment → cache key, or undefined (answer `invalidId`). A closure: pass it around unbound. */
  readonly parseId: (raw: string) => string | undefined;
  /** Whether `record` or `logAccess` need the time each request started. */
  readonly timed: boolean;
  /** Whether `logAccess` logs anything (shells skip building its arguments otherwise). */
  readonly logsAccess: boolean;
  /** The 400 for an id `parseId` rejected: built once, shared by every such answer. */
  readonly invalidId: LookupAnswer;
  /** The 500 for an unexpected error, built once: the same bytes from every shell. */
  readonly internalError: LookupAnswer;
  /** What a request whose client left before its answer counts as (the Hono route answers it ABORTED, 499). */
  readonly clientClosed: LookupAnswer;
  readonly #engine: EngineReader;
  readonly #encoder: AnswerEncoder;
  readonly #metrics: ProxyMetrics | undefined;
  readonly #recordHit: ((status: number, seconds: number) => void) | undefined;
  readonly #onError: (error: unknown, request: RequestLine) => void;
  readonly #accessLog: ((line: AccessLogLine) => void) | undefined;
  readonly #clientHeader: string | undefined;

  constructor(options: LookupPipelineOptions) {
    const engine = options.engine;
    this.#engine = engine;
    const maxGroupId = integerOption('maxGroupId', options.maxGroupId ?? DEFAULT_MAX_GROUP_ID, 1, DEFAULT_MAX_GROUP_ID);
    this.maxGroupId = maxGroupId;
    this.multiGetMaxIds = specOption('multiGetMaxIds', options.multiGetMaxIds, MULTI_GET_OPTION_SPECS.maxIds);
    this.parseId =
      options.parseId === undefined
        ? (raw: string) => parseGroupId(raw, maxGroupId)
        : functionOption<(raw: string) => string | undefined>('parseId', options.parseId);
    const cacheName = cacheNameOption(options.cacheName);
    this.cacheName = cacheName;
    this.#encoder = new AnswerEncoder(cacheName, policyFor(engine, options.sMaxAgeSeconds));
    this.#metrics = options.metrics;
    this.#recordHit = options.metrics?.hitRecorder();
    this.#onError =
      options.onError === undefined
        ? reportToConsole
        : functionOption<(error: unknown, request: RequestLine) => void>('onError', options.onError);
    this.#accessLog =
      options.accessLog === undefined
        ? undefined
        : functionOption<(line: AccessLogLine) => void>('accessLog', options.accessLog);
    this.logsAccess = this.#accessLog !== undefined;
    if (
      options.clientHeader !== undefined &&
      (typeof options.clientHeader !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(options.clientHeader))
    ) {
      throw new OptionError('clientHeader', 'a header name such as x-forwarded-for', options.clientHeader);
    }
    this.#clientHeader = options.clientHeader?.toLowerCase();
    this.timed = this.#metrics !== undefined || this.logsAccess;
    this.invalidId = encodeError(
      new ProxyError('INVALID_GROUP_ID', `group id must be a decimal integer in [1, ${maxGroupId}]`),
      cacheName,
    );
    this.internalError = encodeError(new ProxyError('INTERNAL', 'internal error'), cacheName);
    this.clientClosed = encodeError(new ProxyError('ABORTED', 'the caller stopped waiting'), cacheName);
  }

  /**
   * The answer to `GET|HEAD` of a parsed key: a fresh L1 hit synchronously
   * (no promise, no allocation: the encoder's memo answers), anything else
   * through the engine's one coalesced load. Never throws and never rejects:
   * an unexpected error is `fail`ed. `method` and `target` (the request URL
   * or target) only name the request in that error's log line; `abort`'s
   * signal is read on a miss only.
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
   * The answer to `GET|HEAD /groups?ids=…` (`url` as sent, the query still percent-encoded): 400
   * for a malformed list, else every id through the engine's `getMany` (the same lookup as the
   * single route's, so single and multiple requests share loads) encoded by encodeManyAnswer.
   * Never rejects; records the request and each id's outcome into the metrics.
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

  /**
   * Reports an unexpected error with the request's method and path, and returns the 500 to answer it with.
   * An `INTERNAL` ProxyError (an engine's `toProxyError` of a bug) is reported as the error it stands for.
   */
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

/** The pipeline over `options.engine`; validates every option once (OptionError naming it). */
export function createLookupPipeline(options: LookupPipelineOptions): LookupPipeline {
  return new LookupPipeline(options);
}

/**
 * The path of a request target (`/groups/42?x=1`) or URL (`http://host/groups/42`)
 * as it was sent, still percent-encoded, without query or fragment.
 */
export function pathOf(target: string): string {
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

/** The Cache-Control policy of a shell over `engine`, with the `sMaxAgeSeconds` option validated. */
export function policyFor(engine: EngineReader, sMaxAgeSeconds: unknown): CacheControlPolicy {
  const shared =
    sMaxAgeSeconds === undefined ? undefined : integerOption('sMaxAgeSeconds', sMaxAgeSeconds, 0, 31_536_000);
  return cacheControlPolicy(engine.staleWindows?.(), shared);
}

/** Validates a `cacheName` option once; every shell answers under the same, checked name. */
export function cacheNameOption(value: unknown): string {
  if (value === undefined) return DEFAULT_CACHE_NAME;
  if (typeof value !== 'string' || !/^[A-Za-z*][A-Za-z0-9_.:/%*!#$&'+^`|~-]*$/.test(value)) {
    throw new OptionError('cacheName', 'an RFC 8941 token such as "group-profile-proxy"', value);
  }
  return value;
}
