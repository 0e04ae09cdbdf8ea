import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { ADMIN_TOKEN_MIN_LENGTH, knownOptions, OptionError, secretOption } from '../util/options.js';
import { cacheNameOption, parseIdOption } from './pipeline.js';
import { encodeError, methodNotAllowed } from './respond.js';
import { send } from './routes.js';

export interface AdminRoutesOptions {
  engine: Pick<CoalescingCache<unknown>, 'invalidate'>;
  /** Bearer token every admin request must carry: at least 16 printable ASCII characters (0x21-0x7e). Required. */
  token: string;
  /** Canonical cache key for an id, or `undefined` when invalid. Default: `parseGroupId`. */
  parseId?: (raw: string) => string | undefined;
  /** The `Cache-Status` name on error answers. Default: `group-profile-proxy`. */
  cacheName?: string;
}

/** Most ids one invalidation request may carry. */
const MAX_INVALIDATION_IDS = 1000;

/** `credentials = auth-scheme 1*SP token` (RFC 9110 11.4, RFC 6750 2.1), scheme case-insensitive; tokens are printable ASCII. */
const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * `POST /invalidate` with `{"ids":[...], "kind"?: "changed" | "deleted", "version"?: "..."}`: appends the
 * change to the fleet's feed and applies it here; other instances apply it from the feed. Authorised by a
 * Bearer token compared in constant time; one under 16 printable ASCII characters throws an OptionError.
 */
export function adminRoutes(options: AdminRoutesOptions): Hono {
  knownOptions('adminRoutes', options, ['engine', 'token', 'parseId', 'cacheName']);
  const expected = digest(secretOption('token', options.token, ADMIN_TOKEN_MIN_LENGTH));
  const engine = options.engine;
  if (typeof engine?.invalidate !== 'function') throw new OptionError('engine', 'an engine with invalidate()', engine);
  const parseId = parseIdOption(options.parseId);
  const cacheName = cacheNameOption(options.cacheName);
  const fail = (c: Context, error: ProxyError): Response => send(c, encodeError(error, cacheName));
  const app = new Hono();
  app.use('*', async (c, next) => {
    // No header or a malformed one compares as '', which never equals a valid (non-empty) token.
    const presented = BEARER.exec(c.req.header('authorization') ?? '')?.[1] ?? '';
    if (!timingSafeEqual(digest(presented), expected)) {
      const response = fail(c, new ProxyError('UNAUTHORIZED', 'a valid Bearer token is required'));
      response.headers.set('www-authenticate', 'Bearer');
      return response;
    }
    return next();
  });
  app.post(
    '/invalidate',
    bodyLimit({
      maxSize: 64 * 1024,
      onError: (c) => fail(c, new ProxyError('PAYLOAD_TOO_LARGE', 'body over 64 KiB')),
    }),
    async (c) => {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return fail(c, new ProxyError('BAD_REQUEST', 'body must be JSON: {"ids":[42, 43]}'));
      }
      const raw = Array.isArray(body) ? body : (body as { ids?: unknown } | null)?.ids;
      if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_INVALIDATION_IDS) {
        return fail(c, new ProxyError('BAD_REQUEST', `ids must be a list of 1 to ${MAX_INVALIDATION_IDS} group ids`));
      }
      const ids: string[] = [];
      for (const id of raw) {
        const key = typeof id === 'string' || typeof id === 'number' ? parseId(String(id)) : undefined;
        if (key === undefined)
          return fail(c, new ProxyError('INVALID_GROUP_ID', `invalid group id ${JSON.stringify(id)}`));
        ids.push(key);
      }
      const fields = Array.isArray(body) ? {} : (body as { kind?: unknown; version?: unknown });
      if (fields.kind !== undefined && fields.kind !== 'changed' && fields.kind !== 'deleted') {
        return fail(c, new ProxyError('BAD_REQUEST', 'kind must be "changed" or "deleted"'));
      }
      if (fields.version !== undefined && (typeof fields.version !== 'string' || fields.version.length > 128)) {
        return fail(c, new ProxyError('BAD_REQUEST', 'version must be a string of up to 128 characters'));
      }
      const unique = [...new Set(ids)];
      const result = await engine.invalidate(unique, { kind: fields.kind, version: fields.version });
      if (result.sharedTier && !result.fleet) {
        return fail(
          c,
          new ProxyError(
            'L2_UNAVAILABLE',
            'invalidated on this instance only: the change could not be appended to the feed (Redis unreachable), retry',
            { retryAfterSeconds: 1 },
          ),
        );
      }
      // Answered once Redis acknowledged the append: every instance will apply it, replaying if need be.
      return c.json({ invalidated: unique, positions: result.positions });
    },
  );
  const notAllowed = methodNotAllowed('POST', cacheName);
  app.all('/invalidate', (c) => send(c, notAllowed));
  return app;
}

function digest(value: string): Buffer {
  // Hashing first gives both sides one length, so the comparison time says nothing about the token.
  return createHash('sha256').update(value).digest();
}
