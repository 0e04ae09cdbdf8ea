import { Hono } from 'hono';
import { ProxyError } from '../errors.js';
import { encodeError } from './respond.js';
import { groupProfileRoutes, send, type GroupProfileRoutesOptions } from './routes.js';

export type ProxyAppOptions = GroupProfileRoutesOptions;

/**
 * The sidecar's HTTP surface: `/groups/:id`, `/healthz`, and JSON errors for
 * everything else. Only group-profile lookups are forwarded, and only to the
 * configured upstream: the proxy is never an open proxy.
 */
export function createProxyApp(options: ProxyAppOptions): Hono {
  const cacheName = options.cacheName ?? 'group-profile-proxy';
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.route('/groups', groupProfileRoutes(options));
  app.notFound((c) => send(c, encodeError(new ProxyError('ROUTE_NOT_FOUND', 'no such route', 404), cacheName)));
  app.onError((_error, c) => send(c, encodeError(new ProxyError('INTERNAL', 'internal error', 500), cacheName)));
  return app;
}
