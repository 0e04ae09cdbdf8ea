import { performance } from 'node:perf_hooks';
import { Hono } from 'hono';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { DEFAULT_MAX_GROUP_ID, parseGroupId } from '../ids.js';
import { ADMIN_TOKEN_MIN_LENGTH, secretOption } from '../util/options.js';
import { adminRoutes } from './admin.js';
import { encodeError } from './respond.js';
import { cacheNameOption, groupProfileRoutes, send, type GroupProfileRoutesOptions } from './routes.js';

export interface ProxyAppOptions extends GroupProfileRoutesOptions {
  engine: GroupProfileRoutesOptions['engine'] & Pick<CoalescingCache<unknown>, 'invalidate' | 'stats'>;
  /**
   * Bearer token for `POST /admin/invalidate`: at least 16 printable ASCII
   * characters (0x21-0x7e), as `ADMIN_TOKEN` requires; anything else (`''`
   * included) throws an OptionError naming `adminToken`. Unset: the admin routes answer 404.
   */
  adminToken?: string;
  /** False once shutdown has begun, so load balancers stop sending traffic first. Default: always ready. */
  isReady?: () => boolean;
  /** Called with one line per answered request when set (the access log). Default: none. */
  accessLog?: (line: { method: string; path: string; status: number; cache: string | null; ms: number }) => void;
  /** Serve `GET /metrics` from these metrics' registry. Default: no /metrics route (e.g. when it has its own port). */
  metricsRoute?: boolean;
}

/**
 * The sidecar's HTTP surface: `/groups/:id`, `/healthz`, `/readyz`, the admin
 * routes, and JSON errors for everything else. Only group-profile lookups are
 * forwarded, and only to the configured upstream: never an open proxy.
 */
export function createProxyApp(options: ProxyAppOptions): Hono {
  const cacheName = cacheNameOption(options.cacheName);
  const adminToken = options.adminToken === undefined ? undefined : secretOption('adminToken', options.adminToken, ADMIN_TOKEN_MIN_LENGTH);
  const maxGroupId = options.maxGroupId ?? DEFAULT_MAX_GROUP_ID;
  const isReady = options.isReady ?? (() => true);
  const app = new Hono();
  const accessLog = options.accessLog;
  if (accessLog !== undefined) {
    app.use('*', async (c, next) => {
      const started = performance.now();
      await next();
      const cache = c.res.headers.get('cache-status');
      accessLog({ method: c.req.method, path: c.req.path, status: c.res.status, cache, ms: Math.round((performance.now() - started) * 100) / 100 });
    });
  }
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const { l2 } = options.engine.stats();
    // A degraded L2 keeps readiness: the instance still serves from L1 and the origin.
    return isReady() ? c.json({ status: 'ready', l2 }) : c.json({ status: 'stopping', l2 }, 503);
  });
  app.route('/groups', groupProfileRoutes(options));
  const metrics = options.metrics;
  if (options.metricsRoute === true && metrics !== undefined) {
    app.get('/metrics', async (c) => c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  }
  if (adminToken !== undefined) {
    app.route(
      '/admin',
      adminRoutes({ engine: options.engine, token: adminToken, parseId: options.parseId ?? ((raw) => parseGroupId(raw, maxGroupId)), cacheName }),
    );
  }
  app.notFound((c) => send(c, encodeError(new ProxyError('ROUTE_NOT_FOUND', 'no such route', 404), cacheName)));
  app.onError((_error, c) => send(c, encodeError(new ProxyError('INTERNAL', 'internal error', 500), cacheName)));
  return app;
}
