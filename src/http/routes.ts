import { performance } from 'node:perf_hooks';
import { Hono, type Context } from 'hono';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError, toProxyError } from '../errors.js';
import { DEFAULT_MAX_GROUP_ID, parseGroupId, rawLastPathSegment } from '../ids.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { integerOption, functionOption, OptionError } from '../util/options.js';
import { AnswerEncoder, cacheControlPolicy, DEFAULT_CACHE_NAME, encodeError, type CacheControlPolicy, type EncodedResponse } from './respond.js';

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
  /** Prometheus metrics to record requests into. Default: none. */
  metrics?: ProxyMetrics;
  /** Adds `s-maxage=N` to Cache-Control, a freshness lifetime for shared caches (CDNs) in front, s. Default: none. */
  sMaxAgeSeconds?: number;
}

const ROUTE_LABEL = '/groups/:id';

/** What the HTTP shells need of an engine, whatever its value type (without `staleWindows`, no stale directives are stated). */
export type EngineReader = Pick<CoalescingCache<unknown>, 'peek' | 'get' | 'now'> & Partial<Pick<CoalescingCache<unknown>, 'staleWindows'>>;

export const ALLOWED_METHODS = 'GET, HEAD';

/**
 * `GET /:id` answered from the engine, as a Hono sub-app to mount anywhere,
 * e.g. `app.route('/groups', groupProfileRoutes({ engine }))`.
 */
export function groupProfileRoutes(options: GroupProfileRoutesOptions): Hono {
  const engine = options.engine;
  const maxGroupId = integerOption('maxGroupId', options.maxGroupId ?? DEFAULT_MAX_GROUP_ID, 1, DEFAULT_MAX_GROUP_ID);
  const parseId =
    options.parseId === undefined
      ? (raw: string) => parseGroupId(raw, maxGroupId)
      : functionOption<(raw: string) => string | undefined>('parseId', options.parseId);
  const cacheName = cacheNameOption(options.cacheName);
  const encoder = new AnswerEncoder(cacheName, policyFor(engine, options.sMaxAgeSeconds));
  const metrics = options.metrics;
  const record = (started: number, response: EncodedResponse, cache: string): EncodedResponse => {
    metrics?.recordAnswer(ROUTE_LABEL, response.status, cache, (performance.now() - started) / 1000);
    return response;
  };

  const getGroupProfile = async (c: Context): Promise<Response> => {
    const started = metrics === undefined ? 0 : performance.now();
    const raw = rawLastPathSegment(c.req.url);
    const key = parseId(raw);
    if (key === undefined) {
      const invalid = new ProxyError('INVALID_GROUP_ID', 'group id must be a decimal integer in [1, ' + maxGroupId + ']', 400);
      return send(c, record(started, encodeError(invalid, cacheName), 'none'));
    }
    const ifNoneMatch = c.req.header('if-none-match');
    const fresh = engine.peek(key);
    if (fresh !== undefined) return send(c, record(started, encoder.encode(fresh, 'hit', engine.now(), ifNoneMatch), 'hit'));
    const { response, cache } = await answerMiss(engine, key, ifNoneMatch, encoder, c.req.raw.signal);
    return send(c, record(started, response, cache));
  };

  const methodNotAllowed = (c: Context): Response => {
    const response = send(c, encodeError(new ProxyError('METHOD_NOT_ALLOWED', `use ${ALLOWED_METHODS}`, 405), cacheName));
    response.headers.set('allow', ALLOWED_METHODS);
    return response;
  };

  return new Hono().get('/:id', getGroupProfile).all('/:id', methodNotAllowed);
}

/**
 * The answer for a key that was not a fresh L1 hit: waits on the engine (the
 * one coalesced load) and encodes the entry or the error. Shared by the Hono
 * route and the sidecar's fast path, so both answer alike.
 */
export async function answerMiss(
  engine: EngineReader,
  key: string,
  ifNoneMatch: string | undefined,
  encoder: AnswerEncoder,
  signal: AbortSignal | undefined,
): Promise<{ response: EncodedResponse; cache: string }> {
  try {
    const { entry, outcome, error } = await engine.get(key, signal === undefined ? undefined : { signal });
    return { response: encoder.encode(entry, outcome, engine.now(), ifNoneMatch, error?.status), cache: outcome };
  } catch (error) {
    return { response: encodeError(toProxyError(error), encoder.cacheName), cache: 'none' };
  }
}

/** The Cache-Control policy of a shell over `engine`, with the `sMaxAgeSeconds` option validated. */
export function policyFor(engine: EngineReader, sMaxAgeSeconds: unknown): CacheControlPolicy {
  const shared = sMaxAgeSeconds === undefined ? undefined : integerOption('sMaxAgeSeconds', sMaxAgeSeconds, 0, 31_536_000);
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

export function send(c: Context, response: EncodedResponse): Response {
  const status = response.status as 200;
  // Buffers are Uint8Arrays; Hono's types only want them backed by a plain ArrayBuffer.
  if (response.body === null) return c.body(null, status, response.headers);
  return c.body(response.body as Uint8Array<ArrayBuffer>, status, response.headers);
}
