/**
 * Group ids are canonical positive decimal integers: no sign, no leading zero,
 * no exponent or decimal point, no whitespace, ASCII digits only. Exactly one
 * spelling per group, so one cache key per group and nothing odd ever reaches
 * the upstream URL.
 */
export const DEFAULT_MAX_GROUP_ID = Number.MAX_SAFE_INTEGER;

const CANONICAL_ID = /^[1-9][0-9]{0,15}$/;

/** The cache key for `raw`, or `undefined` when `raw` is not a canonical id in [1, maxId]. */
export function parseGroupId(raw: string, maxId: number = DEFAULT_MAX_GROUP_ID): string | undefined {
  if (!CANONICAL_ID.test(raw)) return undefined;
  // 16 digits can exceed 2^53-1; Number() is exact below that bound, which maxId never exceeds.
  return Number(raw) <= maxId ? raw : undefined;
}

/**
 * The last path segment of a request URL exactly as the client sent it, still
 * percent-encoded. Routers decode `%34%32` to `42`; ids are validated on the raw
 * form so an encoded spelling is rejected rather than aliased.
 */
export function rawLastPathSegment(url: string): string {
  let end = url.indexOf('?');
  if (end === -1) end = url.length;
  return url.slice(url.lastIndexOf('/', end - 1) + 1, end);
}
