import type { CacheEntry } from '../engine/entry.js';
import type { LookupOutcome } from '../engine/engine.js';
import { ProxyError } from '../errors.js';

/** Status, headers and body of one answer; every shell writes answers through these builders. */
export interface EncodedResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer | null;
}

/**
 * An answer of the profile-lookup route with the cache outcome it reports
 * (the metrics' `cache` label: the lookup's outcome, or `none` for an error).
 * Every answer the shells write has this one shape.
 */
export interface LookupAnswer extends EncodedResponse {
  readonly cache: LookupOutcome | 'none';
}

/** The Content-Type of every JSON answer. */
export const JSON_TYPE = 'application/json; charset=utf-8';

/** Cache name in RFC 9211 Cache-Status unless a shell is given another. */
export const DEFAULT_CACHE_NAME = 'group-profile-proxy';

/** What Cache-Control tells caches in front of the proxy beyond each entry's own lifetime. */
export interface CacheControlPolicy {
  /** `stale-while-revalidate` for found entries, s; 0 leaves it out. */
  readonly staleWhileRevalidateSeconds: number;
  /** The same for negative (404) entries, s. */
  readonly negativeStaleWhileRevalidateSeconds: number;
  /** `s-maxage` for shared caches (CDNs), s; undefined leaves it out. */
  readonly sharedMaxAgeSeconds: number | undefined;
}

/** No stale directives and no s-maxage: only max-age. */
export const PLAIN_CACHE_CONTROL: CacheControlPolicy = {
  staleWhileRevalidateSeconds: 0,
  negativeStaleWhileRevalidateSeconds: 0,
  sharedMaxAgeSeconds: undefined,
};

/** The engine's stale windows, for shells to state as RFC 5861 directives. */
export interface StaleWindows {
  readonly staleWhileRevalidateMs: number;
  readonly negativeStaleWhileRevalidateMs: number;
}

/** The policy of a shell: the engine's stale-while-revalidate windows (when it states them) and an optional s-maxage. */
export function cacheControlPolicy(
  windows: StaleWindows | undefined,
  sharedMaxAgeSeconds: number | undefined,
): CacheControlPolicy {
  return {
    staleWhileRevalidateSeconds: Math.floor((windows?.staleWhileRevalidateMs ?? 0) / 1000),
    negativeStaleWhileRevalidateSeconds: Math.floor((windows?.negativeStaleWhileRevalidateMs ?? 0) / 1000),
    sharedMaxAgeSeconds,
  };
}

/**
 * Cache-Control for an entry, read by caches as RFC 9111 §4.2 says: max-age is
 * the entry's whole freshness lifetime (Age carries the time since it was
 * stored, and caches subtract it), stale-while-revalidate and stale-if-error
 * (RFC 5861) are the proxy's own windows, so a cache in front behaves like it.
 */
function cacheControl(entry: CacheEntry, policy: CacheControlPolicy): string {
  let value = `public, max-age=${Math.floor((entry.freshUntil - entry.storedAt) / 1000)}`;
  const revalidate =
    entry.kind === 'found' ? policy.staleWhileRevalidateSeconds : policy.negativeStaleWhileRevalidateSeconds;
  if (revalidate > 0) value += `, stale-while-revalidate=${revalidate}`;
  const ifError = Math.floor((entry.usableUntil - entry.freshUntil) / 1000);
  if (ifError > 0) value += `, stale-if-error=${ifError}`;
  if (policy.sharedMaxAgeSeconds !== undefined) value += `, s-maxage=${policy.sharedMaxAgeSeconds}`;
  return value;
}

/**
 * The answer for a cache entry: 200 with the profile, 304 when the client's
 * validator matches, or 404 for a negative entry, with the outcome it reports.
 * Age is rounded up, so with max-age rounded down a downstream copy never
 * stays fresh longer than the proxy's own (it may expire up to 2 s earlier).
 */
export function encodeEntry(
  entry: CacheEntry,
  outcome: LookupOutcome,
  now: number,
  ifNoneMatch: string | undefined,
  cacheName: string,
  failedStatus?: number,
  policy: CacheControlPolicy = PLAIN_CACHE_CONTROL,
): LookupAnswer {
  // Negative for stale entries, as RFC 9211 allows.
  const ttlSeconds = Math.floor((entry.freshUntil - now) / 1000);
  const found = entry.kind === 'found';
  const headers: Record<string, string> = {
    'content-type': JSON_TYPE,
    'cache-control': cacheControl(entry, policy),
    age: String(Math.max(0, Math.ceil((now - entry.storedAt) / 1000))),
    'cache-status': cacheStatus(cacheName, outcome, ttlSeconds, found, failedStatus),
  };
  if (!found) {
    const body = entry.body;
    headers['content-length'] = String(body.length);
    return { status: 404, headers, body, cache: outcome };
  }
  headers.etag = entry.etag;
  if (ifNoneMatch !== undefined && matchesIfNoneMatch(ifNoneMatch, entry.etag)) {
    delete headers['content-type'];
    return { status: 304, headers, body: null, cache: outcome };
  }
  // Explicit, so a body written straight to a Node response is not sent chunked.
  const body = entry.body;
  headers['content-length'] = String(body.length);
  return { status: 200, headers, body, cache: outcome };
}

/**
 * `encodeEntry` with a memo for its common case, no If-None-Match and no
 * failure: within one millisecond the answer for an (entry, outcome) pair is
 * the same object. A hot key is encoded once per ms, and a burst's 1000
 * collapsed waiters share one answer instead of 1000 header objects that
 * would all survive until the load returns. The memo only holds what was
 * answered during the current millisecond.
 */
export class AnswerEncoder {
  readonly cacheName: string;
  readonly policy: CacheControlPolicy;
  #memoAt = Number.NaN;
  #hits = new Map<CacheEntry, LookupAnswer>();
  #collapsed = new Map<CacheEntry, LookupAnswer>();

  constructor(cacheName: string, policy: CacheControlPolicy = PLAIN_CACHE_CONTROL) {
    this.cacheName = cacheName;
    this.policy = policy;
  }

  encode(
    entry: CacheEntry,
    outcome: LookupOutcome,
    now: number,
    ifNoneMatch: string | undefined,
    failedStatus?: number,
  ): LookupAnswer {
    if (ifNoneMatch !== undefined || (outcome !== 'hit' && outcome !== 'collapsed')) {
      return encodeEntry(entry, outcome, now, ifNoneMatch, this.cacheName, failedStatus, this.policy);
    }
    if (now !== this.#memoAt) {
      // New maps, not clear(): V8's clear() links the old table to its successor, so once
      // one old table reaches the old generation, every later table and the answers in it
      // survive scavenges too (measured: ~0.6 MB/s promoted at 40k hits/s, a major GC every
      // few seconds). Fresh maps die young with what they hold.
      this.#hits = new Map();
      this.#collapsed = new Map();
      this.#memoAt = now;
    }
    const memo = outcome === 'hit' ? this.#hits : this.#collapsed;
    let answer = memo.get(entry);
    if (answer === undefined) {
      answer = encodeEntry(entry, outcome, now, undefined, this.cacheName, undefined, this.policy);
      memo.set(entry, answer);
    }
    return answer;
  }
}

/** RFC 9211 Cache-Status for one answer. */
function cacheStatus(
  cacheName: string,
  outcome: LookupOutcome,
  ttlSeconds: number,
  found: boolean,
  failedStatus: number | undefined,
): string {
  const negative = found ? '' : '-negative';
  switch (outcome) {
    case 'hit':
      return `${cacheName}; hit; ttl=${ttlSeconds}${found ? '' : '; detail=negative'}`;
    case 'l2-hit':
      return `${cacheName}; hit; ttl=${ttlSeconds}; detail=l2${negative}`;
    case 'miss':
      return `${cacheName}; fwd=miss; stored${found ? '' : '; detail=negative'}`;
    case 'collapsed':
      return `${cacheName}; fwd=miss; collapsed${found ? '' : '; detail=negative'}`;
    case 'stale':
      return `${cacheName}; hit; ttl=${ttlSeconds}; detail=stale-while-revalidate${negative}`;
    case 'stale-timeout':
      return `${cacheName}; fwd=stale; ttl=${ttlSeconds}; detail=stale-timeout${negative}`;
    case 'stale-if-error':
      return `${cacheName}; fwd=stale; fwd-status=${failedStatus ?? 502}; ttl=${ttlSeconds}; detail=stale-if-error${negative}`;
    case 'filtered':
      // Neither a stored answer nor forwarded: the existence filter knows the group does not exist.
      return `${cacheName}; detail=existence-filter`;
  }
}

/** Weak comparison (RFC 9110 13.1.2) against a list of entity tags, or `*`. */
export function matchesIfNoneMatch(header: string, etag: string): boolean {
  if (header === etag) return true;
  for (const part of header.split(',')) {
    let tag = part.trim();
    if (tag === '*') return true;
    if (tag.startsWith('W/')) tag = tag.slice(2);
    if (tag === etag) return true;
  }
  return false;
}

/** A JSON error answer with a stable code, never cacheable by clients (as a lookup's answer: outcome `none`). */
export function encodeError(error: ProxyError, cacheName: string): LookupAnswer {
  const headers: Record<string, string> = {
    'content-type': JSON_TYPE,
    'cache-control': 'no-store',
  };
  if (error.status >= 500) headers['cache-status'] = `${cacheName}; fwd=miss; fwd-status=${error.status}`;
  if (error.retryAfterSeconds !== undefined) headers['retry-after'] = String(error.retryAfterSeconds);
  if (error.headers !== undefined) for (const [name, value] of Object.entries(error.headers)) headers[name] = value;
  const body = Buffer.from(JSON.stringify(error.toJSON()), 'utf8');
  headers['content-length'] = String(body.length);
  return { status: error.status, headers, body, cache: 'none' };
}

/** 405 `METHOD_NOT_ALLOWED` with the `Allow` header: `allow` lists the methods a route takes (`GET, HEAD`). */
export function methodNotAllowed(allow: string, cacheName: string): EncodedResponse {
  const answer = encodeError(new ProxyError('METHOD_NOT_ALLOWED', `use ${allow}`), cacheName);
  answer.headers.allow = allow;
  return answer;
}
