import { createHash } from 'node:crypto';
import type { Lookup, LookupOutcome } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { defaultsOf, integerSpec } from '../util/options.js';
import { JSON_TYPE, matchesIfNoneMatch, type CacheControlPolicy, type EncodedResponse } from './respond.js';

/** Default and range of the multi-get's options, declared once (the sidecar's settings read them too). */
export const MULTI_GET_OPTION_SPECS = {
  /** Ids one `GET /groups?ids=` may ask for. */
  maxIds: integerSpec(100, 1, 1000),
} as const;

export const MULTI_GET_DEFAULTS = defaultsOf(MULTI_GET_OPTION_SPECS);

/** What one id of a multi-get was answered with: its lookup's outcome, or `error`. */
export type MultiGetOutcome = LookupOutcome | 'error';

/** A multi-get's answer, with how each id was answered (for Cache-Status and metrics). */
interface MultiGetAnswer extends EncodedResponse {
  readonly outcomes: ReadonlyMap<MultiGetOutcome, number>;
}

/** An id quoted in an error message is cut to this length: the message must not carry a client's whole payload. */
const QUOTED_ID_MAX = 24;

/** The raw (still percent-encoded) value of list parameter `name`, or `undefined`; given twice, a 400 rather than ignored. */
export function rawListParameter(url: string, name: string): string | undefined | ProxyError {
  const query = url.indexOf('?');
  if (query === -1) return undefined;
  let raw: string | undefined;
  const end = url.indexOf('#', query);
  for (const part of url.slice(query + 1, end === -1 ? undefined : end).split('&')) {
    if (part !== name && !part.startsWith(`${name}=`)) continue;
    if (raw !== undefined) return new ProxyError('BAD_REQUEST', `give ${name} once, as ${name}=1,2,3`);
    raw = part.slice(name.length + 1);
  }
  return raw;
}

/**
 * The ids of `GET /groups?ids=1,2,3`, from the raw query so an encoded spelling (`%31`, `%2C`) is rejected
 * rather than aliased, as the single route does; else a 400 saying what is wrong. Duplicates are kept.
 */
export function parseIdList(
  url: string,
  parseId: (raw: string) => string | undefined,
  maxIds: number,
  maxGroupId: number,
): string[] | ProxyError {
  const raw = rawListParameter(url, 'ids');
  if (raw instanceof ProxyError) return raw;
  if (raw === undefined) return new ProxyError('BAD_REQUEST', 'missing ids: ask for GET /groups?ids=1,2,3');
  if (raw === '')
    return new ProxyError('INVALID_GROUP_ID', `ids is empty: give 1 to ${maxIds} comma-separated group ids`);
  // At most one element past the limit is split off: a huge list costs no more than a short one.
  const parts = raw.split(',', maxIds + 1);
  if (parts.length > maxIds) return new ProxyError('TOO_MANY_GROUPS', `at most ${maxIds} ids per request`);
  const keys: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const key = parseId(parts[i]!);
    if (key === undefined) {
      const shown = parts[i]!.length > QUOTED_ID_MAX ? `${parts[i]!.slice(0, QUOTED_ID_MAX)}…` : parts[i]!;
      return new ProxyError(
        'INVALID_GROUP_ID',
        `id ${i + 1} of the list, ${JSON.stringify(shown)}, is not a group id: a decimal integer in [1, ${maxGroupId}]`,
      );
    }
    keys.push(key);
  }
  return keys;
}

/**
 * 200 with a JSON object from id to the body its single lookup would have, in the order asked. With a
 * per-id failure `no-store` (and the longest Retry-After); otherwise a strong ETag over the ids' ETags and a
 * Cache-Control from the shortest-lived entry. Cache-Status counts the outcomes: `detail="hit=48 l2-hit=2"`.
 */
export function encodeManyAnswer(
  answers: ReadonlyMap<string, Lookup<unknown> | ProxyError>,
  now: number,
  ifNoneMatch: string | undefined,
  cacheName: string,
  policy: CacheControlPolicy,
): MultiGetAnswer {
  const outcomes = new Map<MultiGetOutcome, number>();
  const parts: Buffer[] = [];
  const validator = createHash('sha1');
  let freshUntil = Infinity;
  let usableUntil = Infinity;
  /** When the first entry's stale-while-revalidate window ends, and the oldest entry's store time. */
  let revalidateUntil = Infinity;
  let oldest = Infinity;
  let retryAfter: number | undefined;
  let failed = false;
  let failedStatus = 0;
  const extraHeaders: Record<string, string> = {};
  let separator = '{';
  for (const [key, answer] of answers) {
    parts.push(Buffer.from(`${separator}${JSON.stringify(key)}:`, 'utf8'));
    separator = ',';
    if (answer instanceof ProxyError) {
      failed = true;
      if (answer.retryAfterSeconds !== undefined) retryAfter = Math.max(retryAfter ?? 0, answer.retryAfterSeconds);
      if (answer.status >= 500) failedStatus = Math.max(failedStatus, answer.status);
      // A 429's RateLimit fields, as its single answer would have them.
      if (answer.headers !== undefined) Object.assign(extraHeaders, answer.headers);
      parts.push(Buffer.from(JSON.stringify(answer.toJSON()), 'utf8'));
      outcomes.set('error', (outcomes.get('error') ?? 0) + 1);
      continue;
    }
    const { entry, outcome } = answer;
    parts.push(entry.body);
    validator.update(`${key}\u0000${entry.etag}\u0000`);
    freshUntil = Math.min(freshUntil, entry.freshUntil);
    usableUntil = Math.min(usableUntil, entry.usableUntil);
    const window =
      entry.kind === 'found' ? policy.staleWhileRevalidateSeconds : policy.negativeStaleWhileRevalidateSeconds;
    revalidateUntil = Math.min(revalidateUntil, entry.freshUntil + window * 1000);
    oldest = Math.min(oldest, entry.storedAt);
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  parts.push(Buffer.from(separator === '{' ? '{}' : '}', 'utf8'));
  const headers: Record<string, string> = {
    'content-type': JSON_TYPE,
    'cache-status': cacheStatus(cacheName, outcomes, Math.floor((freshUntil - now) / 1000), failedStatus),
  };
  if (failed) {
    headers['cache-control'] = 'no-store';
    if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
    Object.assign(headers, extraHeaders);
  } else {
    // The answer is composed now and has no Age: every window is what its entries have left.
    const maxAge = Math.max(0, Math.floor((freshUntil - now) / 1000));
    let cacheControl = `public, max-age=${maxAge}`;
    const revalidate = Math.floor((revalidateUntil - now) / 1000) - maxAge;
    if (revalidate > 0) cacheControl += `, stale-while-revalidate=${revalidate}`;
    const ifError = Math.floor((usableUntil - now) / 1000) - maxAge;
    if (ifError > 0) cacheControl += `, stale-if-error=${ifError}`;
    if (policy.sharedMaxAgeSeconds !== undefined)
      cacheControl += `, s-maxage=${Math.max(0, policy.sharedMaxAgeSeconds - Math.ceil((now - oldest) / 1000))}`;
    headers['cache-control'] = cacheControl;
    headers.etag = `"m${validator.digest('base64url')}"`;
    if (ifNoneMatch !== undefined && matchesIfNoneMatch(ifNoneMatch, headers.etag)) {
      delete headers['content-type'];
      return { status: 304, headers, body: null, outcomes };
    }
  }
  const body = Buffer.concat(parts);
  headers['content-length'] = String(body.length);
  return { status: 200, headers, body, outcomes };
}

/** Answered without forwarding: a cache tier (fresh, or stale while one refresh runs), or the existence filter. */
const FROM_CACHE: ReadonlySet<MultiGetOutcome> = new Set(['hit', 'l2-hit', 'stale', 'filtered']);
const LOADED: ReadonlySet<MultiGetOutcome> = new Set(['miss', 'collapsed', 'error']);

/**
 * One Cache-Status for the whole answer: `hit` when no id went forward (no `hit` when the filter answered all),
 * `fwd=miss` when any was loaded or failed (worst upstream status), else `fwd=stale`; `detail` counts the ids.
 */
function cacheStatus(
  cacheName: string,
  outcomes: ReadonlyMap<MultiGetOutcome, number>,
  ttlSeconds: number,
  failedStatus: number,
): string {
  const counts = [...outcomes].map(([outcome, count]) => `${outcome}=${count}`).join(' ');
  const detail = `; detail="${counts}"`;
  const outcomeList = [...outcomes.keys()];
  if (outcomeList.every((outcome) => outcome === 'filtered')) return `${cacheName}${detail}`;
  if (outcomeList.every((outcome) => FROM_CACHE.has(outcome))) return `${cacheName}; hit; ttl=${ttlSeconds}${detail}`;
  if (outcomeList.some((outcome) => LOADED.has(outcome)))
    return `${cacheName}; fwd=miss${failedStatus > 0 ? `; fwd-status=${failedStatus}` : ''}${detail}`;
  return `${cacheName}; fwd=stale; ttl=${ttlSeconds}${detail}`;
}
