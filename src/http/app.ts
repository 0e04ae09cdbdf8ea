import { Hono } from 'hono';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { DEFAULT_MAX_GROUP_ID, parseGroupId } from '../ids.js';
import { adminRoutes } from './admin.js';
import { encodeError } from './respond.js';
import { groupProfileRoutes, send, type GroupProfileRoutesOptions } from './routes.js';

export interface ProxyAppOptions extends GroupProfileRoutesOptions {
  engine: GroupProfileRoutesOptions['engine'] & Pick<CoalescingCache<unknown>, 'invalidate' | 'stats'>;
  /** Token for `POST /admin/invalidate`. Unset: the admin routes answer 404. */
  adminToken?: string;
  /** False once shutdown has begun, so load balancers stop sending traffic first. Default: always ready. */
  isReady?: () => boolean;
}

/**
 * The sidecar's HTTP surface: `/groups/:id`, `/healthz`, `/readyz`, the admin
 * routes, and JSON errors for everything else. Only group-profile lookups are
 * forwarded, and only to the configured upstream: never an open proxy.
 */
export function createProxyApp(options: ProxyAppOptions): Hono {
  const cacheName = options.cacheName ?? 'group-profile-proxy';
  const maxGroupId = options.maxGroupId ?? DEFAULT_MAX_GROUP_ID;
  const isReady = options.isReady ?? (() => true);
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const { l2 } = options.engine.stats();
    // A degraded L2 keeps readiness: the instance still serves from L1 and the origin.
    return isReady() ? c.json({ status: 'ready', l2 }) : c.json({ status: 'stopping', l2 }, 503);
  });
  app.route('/groups', groupProfileRoutes(options));
  if (options.adminToken !== undefined) {
    app.route(
      '/admin',
      adminRoutes({ engine: options.engine, token: options.adminToken, parseId: options.parseId ?? ((raw) => parseGroupId(raw, maxGroupId)), cacheName }),
    );
  }
  app.notFound((c) => send(c, encodeError(new ProxyError('ROUTE_NOT_FOUND', 'no such route', 404), cacheName)));
  app.onError((_error, c) => send(c, encodeError(new ProxyError('INTERNAL', 'internal error', 500), cacheName)));
  return app;
}
