/**
 * Group ids are canonical positive decimal integers (ASCII digits, no sign, no leading zero): one spelling per
 * group, so one cache key per group and nothing odd ever reaches the upstream URL.
 */
export const DEFAULT_MAX_GROUP_ID = Number.MAX_SAFE_INTEGER;

const MAX_DIGITS = 16;

/**
 * The cache key for `raw`, or `undefined` when `raw` is not a canonical id in [1, maxId]. No RegExp: this runs on
 * every request, and a regexp test on a freshly sliced string costs more than the rest of an L1 hit.
 */
export function parseGroupId(raw: string, maxId: number = DEFAULT_MAX_GROUP_ID): string | undefined {
  const length = raw.length;
  if (length === 0 || length > MAX_DIGITS) return undefined;
  let value = 0;
  for (let i = 0; i < length; i++) {
    const digit = raw.charCodeAt(i) - 48; // '0'
    // A leading zero is not canonical; anything but ASCII 0-9 is not a digit.
    if (digit < (i === 0 ? 1 : 0) || digit > 9) return undefined;
    // Exact below 2^53; past it the sum only grows, so it stays above any maxId (≤ 2^53-1).
    value = value * 10 + digit;
  }
  return value <= maxId ? raw : undefined;
}

/** The last path segment, still percent-encoded: routers decode `%34%32` to `42`, which must be rejected, not aliased. */
export function rawLastPathSegment(url: string): string {
  let end = url.indexOf('?');
  if (end === -1) end = url.length;
  return url.slice(url.lastIndexOf('/', end - 1) + 1, end);
}
