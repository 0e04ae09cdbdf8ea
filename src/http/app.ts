import { performance } from 'node:perf_hooks';
import { Hono } from 'hono';
import type { CoalescingCache } from '../engine/engine.js';
import { ProxyError } from '../errors.js';
import { ADMIN_TOKEN_MIN_LENGTH, knownOptions, secretOption } from '../util/options.js';
import { adminRoutes } from './admin.js';
import { LookupPipeline, ROUTE_OPTION_NAMES, type LookupPipelineOptions } from './pipeline.js';
import { encodeError } from './respond.js';
import { groupProfileRoutes, send } from './routes.js';
import { groupEventRoutes } from './events.js';
import type { PushHub } from '../push/hub.js';

export interface ProxyAppOptions extends LookupPipelineOptions {
  engine: LookupPipelineOptions['engine'] & Pick<CoalescingCache<unknown>, 'invalidate' | 'stats'>;
  /** Bearer token for `POST /admin/invalidate`, as `ADMIN_TOKEN` (16+ printable ASCII; else an OptionError). Unset: admin answers 404. */
  adminToken?: string;
  /** False once shutdown has begun, so load balancers stop sending traffic first. Default: always ready. */
  isReady?: () => boolean;
  /** Serve `GET /metrics` from these metrics' registry. Default: no /metrics route (e.g. when it has its own port). */
  metricsRoute?: boolean;
  /** Live updates: `GET /groups/:id/events` and `GET /events?groups=…` (Server-Sent Events) from this hub. Default: no such routes. */
  push?: PushHub;
}

const APP_OPTION_NAMES = [
  'adminToken',
  'isReady',
  'accessLog',
  'metricsRoute',
  'push',
] as const satisfies readonly (keyof ProxyAppOptions)[];

/**
 * The sidecar's HTTP surface: `/groups/:id`, `/healthz`, `/readyz`, admin, and JSON errors for the rest.
 * Only group-profile lookups are forwarded, only to the configured upstream: never an open proxy.
 */
export function createProxyApp(options: ProxyAppOptions): Hono {
  return buildProxyApp(options).app;
}

/** `createProxyApp` with the LookupPipeline its routes answer through, for a fast path in front over the same one. */
export function buildProxyApp(options: ProxyAppOptions): { app: Hono; pipeline: LookupPipeline } {
  knownOptions('createProxyApp', options, [...ROUTE_OPTION_NAMES, ...APP_OPTION_NAMES]);
  const pipeline = new LookupPipeline(options);
  const cacheName = pipeline.cacheName;
  const adminToken =
    options.adminToken === undefined
      ? undefined
      : secretOption('adminToken', options.adminToken, ADMIN_TOKEN_MIN_LENGTH);
  const isReady = options.isReady ?? (() => true);
  const app = new Hono();
  if (pipeline.logsAccess) {
    app.use('*', async (c, next) => {
      const started = performance.now();
      await next();
      pipeline.logAccess(c.req.method, c.req.url, c.res.status, c.res.headers.get('cache-status'), started);
    });
  }
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const { l2, feed } = options.engine.stats();
    // A degraded L2 or a lagging feed keeps readiness: the instance still serves, from L1 and the
    // origin, or checking L1 against L2 while it cannot hear changes. Both are reported.
    const body = {
      l2,
      ...(feed === undefined
        ? {}
        : {
            feed: {
              // `lagging` means Redis answers but the feed is not read; with Redis gone it is `unavailable`.
              state: l2 === 'degraded' ? 'unavailable' : feed.lagging ? 'lagging' : 'ok',
              lagMs: feed.lagMs,
              lagEntries: feed.lagEntries,
            },
          }),
    };
    return isReady() ? c.json({ status: 'ready', ...body }) : c.json({ status: 'stopping', ...body }, 503);
  });
  if (options.push !== undefined)
    app.route('/', groupEventRoutes({ hub: options.push, parseId: pipeline.parseId, cacheName }));
  app.route('/groups', groupProfileRoutes(pipeline));
  const metrics = options.metrics;
  if (options.metricsRoute === true && metrics !== undefined) {
    app.get('/metrics', async (c) =>
      c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }),
    );
  }
  if (adminToken !== undefined) {
    app.route(
      '/admin',
      adminRoutes({ engine: options.engine, token: adminToken, parseId: pipeline.parseId, cacheName }),
    );
  }
  app.notFound((c) => send(c, encodeError(new ProxyError('ROUTE_NOT_FOUND', 'no such route'), cacheName)));
  app.onError((error, c) => send(c, pipeline.fail(error, c.req.method, c.req.url)));
  return { app, pipeline };
}
