import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { encodeError } from './respond.js';
import { send } from './routes.js';

export interface AdminRoutesOptions {
  engine: Pick<CoalescingCache<unknown>, 'invalidate'>;
  /** Bearer token every admin request must carry. Required. */
  token: string;
  /** Canonical cache key for an id, or `undefined` when invalid. */
  parseId: (raw: string) => string | undefined;
  cacheName: string;
}

/** Most ids one invalidation request may carry. */
export const MAX_INVALIDATION_IDS = 1000;

/**
 * `POST /invalidate` with `{"ids":[...]}`: invalidates profiles on every
 * instance (L2 entry and lease deleted, L1 evicted through the bus).
 * Authorised by `Authorization: Bearer <token>`, compared in constant time.
 */
export function adminRoutes(options: AdminRoutesOptions): Hono {
  const expected = digest(options.token);
  const fail = (c: Context, error: ProxyError): Response => send(c, encodeError(error, options.cacheName));
  const app = new Hono();
  app.use('*', async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
    if (!timingSafeEqual(digest(presented), expected)) {
      const response = fail(c, new ProxyError('UNAUTHORIZED', 'a valid Bearer token is required', 401));
      response.headers.set('www-authenticate', 'Bearer');
      return response;
    }
    return next();
  });
  app.post(
    '/invalidate',
    bodyLimit({ maxSize: 64 * 1024, onError: (c) => fail(c, new ProxyError('PAYLOAD_TOO_LARGE', 'body over 64 KiB', 413)) }),
    async (c) => {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return fail(c, new ProxyError('BAD_REQUEST', 'body must be JSON: {"ids":[42, 43]}', 400));
      }
      const raw = Array.isArray(body) ? body : (body as { ids?: unknown } | null)?.ids;
      if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_INVALIDATION_IDS) {
        return fail(c, new ProxyError('BAD_REQUEST', `ids must be a list of 1 to ${MAX_INVALIDATION_IDS} group ids`, 400));
      }
      const ids: string[] = [];
      for (const id of raw) {
        const key = typeof id === 'string' || typeof id === 'number' ? options.parseId(String(id)) : undefined;
        if (key === undefined) return fail(c, new ProxyError('INVALID_GROUP_ID', `invalid group id ${JSON.stringify(id)}`, 400));
        ids.push(key);
      }
      const unique = [...new Set(ids)];
      const result = await options.engine.invalidate(unique);
      if (!result.fleet) {
        return fail(c, new ProxyError('L2_UNAVAILABLE', 'invalidated on this instance only: Redis is unreachable, retry', 503, { retryAfterSeconds: 1 }));
      }
      return c.json({ invalidated: unique });
    },
  );
  app.all('/invalidate', (c) => {
    const response = fail(c, new ProxyError('METHOD_NOT_ALLOWED', 'use POST', 405));
    response.headers.set('allow', 'POST');
    return response;
  });
  return app;
}

function digest(value: string): Buffer {
  // Hashing first gives both sides one length, so the comparison time says nothing about the token.
  return createHash('sha256').update(value).digest();
}
