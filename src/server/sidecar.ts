import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener, serve } from '@hono/node-server';
import { createFastPath } from '../http/fast-path.js';
import { createEventsFastPath } from '../http/events-fast-path.js';
import { pino, type Logger } from 'pino';
import { buildProxyApp } from '../http/app.js';
import { createGroupProfileCache, type GroupProfileCache } from '../group-profile.js';
import type { RunningMockBackend } from '../mock-backend/server.js';
import { Hono } from 'hono';
import type { FeedNotice, RedisRefusedError, RedisTier } from '../shared-tier/redis/redis-tier.js';
import { ProxyMetrics } from '../metrics/metrics.js';
import { PushHub } from '../push/hub.js';
import { ENGINE_OPTION_SPECS } from '../engine/options.js';
import type { EngineObserver } from '../engine/observer.js';
import type { Clock } from '../util/clock.js';
import type { FeedResetReason } from '../shared-tier/contract.js';
import { ConfigError, configFromCode, redactedConfig, type SidecarConfig } from './config.js';
import { redactUrl } from '../util/options.js';
import { redisConfigured, redisTierOptions } from './redis-options.js';
import { readWarmIds } from './warm-ids.js';
import { warmStart } from '../engine/warm-start.js';
import { parseGroupId } from '../ids.js';
import { ExistenceFilter } from '../penetration/existence-filter.js';
import { MissBudget } from '../penetration/miss-budget.js';
import { closeStalledWrites, connectionsCheckingInterval } from './stalled-writes.js';

const LISTEN_BACKLOG = 4096;
const FEED_READY_WAIT_MS = 2000;

export interface RunningSidecar {
  /** `http://host:port` the proxy answers on (loopback when bound to all interfaces). */
  readonly url: string;
  readonly port: number;
  readonly cache: GroupProfileCache;
  /** The shared L2 tier, when REDIS_URL or REDIS_CLUSTER_NODES is set. */
  readonly l2: RedisTier | undefined;
  readonly metrics: ProxyMetrics;
  /** Live profile updates behind the event-stream routes. */
  readonly push: PushHub;
  /** The existence filter (EXISTENCE_FILTER=on); its `start()` resolves once its first fill or sync is done. */
  readonly existence: ExistenceFilter | undefined;
  /** The per-client miss budget (MISS_BUDGET=on). */
  readonly budget: MissBudget | undefined;
  /** `http://host:port` of the metrics listener when METRICS_PORT is set. */
  readonly metricsUrl: string | undefined;
  /** The in-process mock backend when no UPSTREAM_URL was configured. */
  readonly mockBackend: RunningMockBackend | undefined;
  /** Stops accepting, lets in-flight requests finish (up to SHUTDOWN_TIMEOUT_MS), then releases everything. */
  close(): Promise<void>;
}

export interface SidecarDependencies {
  logger?: Logger;
  /** The one clock of the engine, its guard and batching. Default: the system clock; tests pass a ManualClock. */
  clock?: Clock;
}

/** Starts the sidecar: engine, upstream client and HTTP server, all configured by `config`. */
export async function startSidecar(
  config: Partial<SidecarConfig> = {},
  dependencies: SidecarDependencies = {},
): Promise<RunningSidecar> {
  // Everything is validated before anything starts: a bad option leaves nothing running.
  const settings = configFromCode(config);
  const logger = dependencies.logger ?? pino({ level: settings.logLevel, base: { service: 'group-profile-proxy' } });
  // Read before anything starts: a bad file stops the start with its ConfigError.
  const warmIds =
    settings.warmStartIdsFile === undefined
      ? []
      : await readWarmIds(settings.warmStartIdsFile, (raw) => parseGroupId(raw, settings.maxGroupId));
  // How to stop each part started, run in reverse by a failed start and by close(): the teardown is written once.
  const started: (() => unknown)[] = [];
  const stopStarted = async (): Promise<void> => {
    for (const stop of started.splice(0).reverse()) {
      try {
        await stop();
      } catch (error) {
        logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          'stopping a part of the proxy failed',
        );
      }
    }
  };
  try {
    let mockBackend: RunningMockBackend | undefined;
    let upstreamUrl = settings.upstreamUrl;
    if (upstreamUrl === undefined) {
      // Loaded on demand, like ioredis below: a production sidecar does not carry modules it never runs.
      const { startMockBackend } = await import('../mock-backend/server.js');
      const backend = await startMockBackend({ port: 0, host: '127.0.0.1' });
      mockBackend = backend;
      started.push(() => backend.close());
      upstreamUrl = mockBackend.url;
      const why = settings.mockBackend === 'on' ? 'MOCK_BACKEND=on' : 'UPSTREAM_URL is not set';
      logger.info(
        { upstream: upstreamUrl },
        `${why}: serving from the built-in mock backend at ${upstreamUrl} (made-up profiles; the embedded default outside NODE_ENV=production)`,
      );
    }

    const l2 = await createL2(settings, logger, dependencies.clock);
    if (l2 !== undefined) {
      started.push(() => l2.close());
      await verifyL2(l2, settings);
    }
    const existence =
      settings.existenceFilter === 'on'
        ? new ExistenceFilter({
            expectedIds: settings.existenceFilterExpectedIds,
            falsePositiveRate: settings.existenceFilterFalsePositiveRate,
            refreshMs: settings.existenceFilterRefreshMs,
            l2,
            clock: dependencies.clock,
            exportIds:
              settings.upstreamIdExport === 'on' ? (after, signal) => cache.origin.exportIds(after, signal) : undefined,
            onFill: ({ ids, ms, error }) =>
              error === undefined
                ? logger.info(
                    { ids, ms },
                    `existence filter filled from the upstream's id export: ${ids} groups in ${ms} ms`,
                  )
                : logger.warn(
                    { err: error.message },
                    'existence filter: the fill from the id export failed; it keeps what it had',
                  ),
          })
        : undefined;
    const budget =
      settings.missBudget === 'on'
        ? new MissBudget({
            burst: settings.missBudgetBurst,
            perSecond: settings.missBudgetPerSecond,
            l2,
            clock: dependencies.clock,
          })
        : undefined;
    let push: PushHub | undefined;
    const metrics = new ProxyMetrics(
      { gcMetrics: settings.gcMetrics === 'on' },
      {
        engine: () => cache.engine.stats(),
        breaker: () => cache.guard.breakerState,
        upstream: () => cache.guard.stats(),
        batching: () => cache.batching(),
        feed: () => l2?.feedStatus(),
        pushSubscribers: () => push?.subscribers ?? 0,
        existence: () => existence?.stats(),
        budgetRejections: () => budget?.rejections,
      },
    );
    const cache = createGroupProfileCache({
      existence,
      originBudget: budget,
      clock: dependencies.clock,
      observer: withFlushLog(metrics.engineObserver, logger),
      l2,
      metrics,
      upstream: {
        url: upstreamUrl,
        timeoutMs: settings.upstreamTimeoutMs,
        maxBodyBytes: settings.upstreamMaxBodyBytes,
        connections: settings.upstreamConnections,
      },
      batch:
        settings.upstreamBatch === 'off'
          ? undefined
          : { mode: settings.upstreamBatch, windowMs: settings.batchWindowMs, maxIds: settings.batchMaxIds },
      guard: {
        concurrency: settings.upstreamConcurrency,
        minConcurrency: settings.upstreamMinConcurrency,
        maxConcurrency: settings.upstreamMaxConcurrency,
        maxQueue: settings.upstreamMaxQueue,
        queueTimeoutMs: settings.upstreamQueueTimeoutMs,
        breakerErrorPercent: settings.breakerErrorPercent,
        breakerVolumeThreshold: settings.breakerVolumeThreshold,
        breakerWindowMs: settings.breakerWindowMs,
        breakerResetMs: settings.breakerResetMs,
        onBreakerChange: (state) => logger.warn({ breaker: state }, `upstream circuit breaker ${state}`),
      },
      ...engineSettings(settings),
    });
    started.push(() => cache.close());
    // Serve once the feed readers have their positions, so no change appended after the first
    // answer goes unheard; with Redis unreachable, start anyway (the readers flush L1 when they join).
    await l2
      ?.whenFeedReady(FEED_READY_WAIT_MS)
      .catch(() => logger.warn('change feed not readable yet: serving without it until Redis answers'));
    // In the background: a fill of millions of ids must not hold the start; until it is done the filter rejects nothing.
    if (existence !== undefined) {
      started.push(() => existence.close());
      void existence.start();
    }
    await warm(cache, l2 !== undefined ? settings.warmStartCount : 0, warmIds, settings, logger);
    push = new PushHub({
      engine: cache.engine,
      clock: dependencies.clock,
      maxSubscribers: settings.pushMaxSubscribers,
      maxGroups: settings.pushMaxGroups,
      maxBufferedBytes: settings.pushMaxBufferedBytes,
      heartbeatMs: settings.pushHeartbeatMs,
      retryMs: settings.pushRetryMs,
      observer: metrics.pushObserver,
    });
    const hub = push;
    started.push(() => hub.close());
    let accepting = true;
    const { app, pipeline } = buildProxyApp({
      engine: cache.engine,
      maxGroupId: settings.maxGroupId,
      sMaxAgeSeconds: settings.sMaxAgeSeconds,
      multiGetMaxIds: settings.multiGetMaxIds,
      clientHeader: settings.missBudgetClientHeader,
      adminToken: settings.adminToken,
      push,
      isReady: () => accepting,
      metrics,
      metricsRoute: settings.metricsPort === undefined,
      accessLog: settings.accessLog === 'on' ? (line) => logger.info(line, 'request') : undefined,
      onError: (error, request) => logger.error({ ...request, err: error }, 'unexpected error answering a request'),
    });

    // HTTP/1.0 may leave out Host (Node rejects an HTTP/1.1 request without one): Hono needs some
    // host to build the request URL from, and the fast path never looks, so give every route the same.
    const honoListener = getRequestListener(app.fetch, { hostname: 'localhost' });
    // Profile lookups skip Hono (see fast-path.ts) through the same pipeline as its route, access log included.
    const fastPath = createFastPath(pipeline);
    // Event streams likewise, straight on Node's response: a stream lives long, and holds less this way.
    const eventsFastPath = createEventsFastPath(push, pipeline.parseId, pipeline.cacheName, (error, method, target) =>
      pipeline.fail(error, method, target),
    );
    const server = createServer(
      {
        maxHeaderSize: settings.maxHeaderBytes,
        requestTimeout: settings.requestTimeoutMs,
        headersTimeout: Math.min(settings.requestTimeoutMs, 60_000),
        connectionsCheckingInterval: connectionsCheckingInterval(settings.requestTimeoutMs),
        keepAliveTimeout: settings.keepAliveTimeoutMs,
      },
      (req, res) => {
        if (!fastPath(req, res) && !eventsFastPath(req, res)) void honoListener(req, res);
      },
    );
    server.maxConnections = settings.maxConnections;
    const stalledWrites = closeStalledWrites(server, settings.stalledWriteTimeoutMs);
    started.push(() => stalledWrites.stop());
    // A burst opens a thousand connections at once: Node's default accept backlog (511) overflows and
    // the kernel answers the overflow with resets. The kernel caps this at net.core.somaxconn.
    server.listen({ port: settings.port, host: settings.host, backlog: LISTEN_BACKLOG });
    await listening(server);
    started.push(async () => {
      // Streams never finish by themselves: end them (with a retry hint) so draining does not wait them out.
      hub.close();
      await drain(server, settings.shutdownTimeoutMs);
    });
    const port = (server.address() as AddressInfo).port;
    const host = settings.host === '0.0.0.0' || settings.host === '::' ? '127.0.0.1' : settings.host;
    const urlOf = (p: number): string => `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
    const url = urlOf(port);
    let metricsUrl: string | undefined;
    if (settings.metricsPort !== undefined) {
      const metricsApp = new Hono().get('/metrics', async (c) =>
        c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }),
      );
      const served = serve({ fetch: metricsApp.fetch, port: settings.metricsPort, hostname: settings.host }) as Server;
      await listening(served);
      started.push(() => drain(served, 1000));
      metricsUrl = urlOf((served.address() as AddressInfo).port);
    }
    logger.info({ url, upstream: upstreamUrl, config: redactedConfig(settings) }, 'group-profile-proxy listening');

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        // Readiness fails first, so load balancers stop sending before the listener closes.
        accepting = false;
        if (settings.shutdownDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, settings.shutdownDelayMs));
        await stopStarted();
        logger.info('group-profile-proxy stopped');
      })();
      return closing;
    };
    return { url, port, cache, l2, metrics, push, existence, budget, metricsUrl, mockBackend, close };
  } catch (error) {
    await stopStarted();
    throw error;
  }
}

/** Resolves once `server` listens; rejects with its listen error (a port in use, say). */
function listening(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
}

/**
 * What Redis refuses for good (credentials, database, an old server) is a ConfigError naming the setting, no secret
 * in it; an unreachable Redis is not an error: the proxy serves degraded until it is back.
 */
async function verifyL2(l2: RedisTier, settings: SidecarConfig): Promise<void> {
  try {
    await l2.verifyServer(FEED_READY_WAIT_MS);
  } catch (caught) {
    // By its code: the class lives with ioredis, which is loaded only when Redis is configured.
    if ((caught as { code?: unknown }).code !== 'ERR_REDIS_REFUSED') throw caught;
    const error = caught as RedisRefusedError;
    const [variable, shown] =
      settings.redisUrl !== undefined
        ? ['REDIS_URL', redactUrl(settings.redisUrl)]
        : error.reason === 'credentials'
          ? [settings.redisPassword !== undefined ? 'REDIS_PASSWORD' : 'REDIS_USERNAME', '<redacted>']
          : ['REDIS_CLUSTER_NODES', settings.redisClusterNodes ?? ''];
    const expected = {
      credentials: 'credentials Redis accepts',
      database: 'a database the server has',
      version: 'a Redis server >= 7.0',
    }[error.reason];
    throw new ConfigError(variable, `${expected} (${error.message})`, shown);
  }
}

/**
 * Before listening, so readiness means warm: one batch, or as many lookups as the upstream limit allows from the
 * start, at a time, so a preload of a healthy upstream is never shed by the proxy's own bound.
 */
async function warm(
  cache: GroupProfileCache,
  hottest: number,
  keys: string[],
  settings: SidecarConfig,
  logger: Logger,
): Promise<void> {
  if (hottest === 0 && keys.length === 0) return;
  const concurrency = settings.upstreamBatch === 'off' ? cache.guard.limit : settings.batchMaxIds;
  const result = await warmStart(cache.engine, { hottest, keys, timeoutMs: settings.warmStartTimeoutMs, concurrency });
  const log = result.timedOut ? logger.warn.bind(logger) : logger.info.bind(logger);
  log(
    result,
    `warm start: ${result.filledFromShared} of the fleet's ${result.hottest} hottest groups from Redis, ${result.preloaded} of ${keys.length} listed groups loaded${result.timedOut ? ' (cut short by WARM_START_TIMEOUT_MS)' : ''}`,
  );
}

async function createL2(
  settings: SidecarConfig,
  logger: Logger,
  clock: Clock | undefined,
): Promise<RedisTier | undefined> {
  if (!redisConfigured(settings)) return undefined;
  const { RedisTier } = await import('../shared-tier/redis/redis-tier.js');
  const target = settings.redisUrl !== undefined ? 'redis' : 'redis-cluster';
  return new RedisTier({
    ...redisTierOptions(settings),
    clock,
    onHealthChange: (healthy, error) => {
      if (healthy) logger.info({ l2: target }, 'L2 Redis reachable');
      else
        logger.warn(
          { l2: target, err: error?.message },
          'L2 Redis unreachable: serving from L1 and the origin until it is back',
        );
    },
    onFeedNotice: (notice) => logFeedNotice(logger, notice),
  });
}

const FEED_RESET_WHY: Record<FeedResetReason, string> = {
  epoch: 'the feed was recreated (Redis restarted empty?)',
  trimmed: "the feed was trimmed past this instance's position",
  joined: 'the feed became readable only after serving had started',
};

/** The engine's observer, plus a log line for each L1 flush (the engine decides whether a reset flushes anything). */
function withFlushLog(observer: EngineObserver | undefined, logger: Logger): EngineObserver {
  return {
    ...observer,
    feedReset: (reason) => {
      observer?.feedReset?.(reason);
      logger.warn({ reason }, `change feed: ${FEED_RESET_WHY[reason]}; L1 flushed, refilling from L2`);
    },
  };
}

/** Failed reads repeat while Redis is down: the health change reports that outage, not each retry. */
function logFeedNotice(logger: Logger, notice: FeedNotice): void {
  if (notice.type === 'resumed') {
    logger.info({ shard: notice.shard, replayed: notice.replayed }, 'change feed: reader reconnected and caught up');
  } else if (notice.type === 'skipped') {
    logger.warn(
      { shard: notice.shard, reason: notice.reason, position: notice.position },
      'change feed: skipped a malformed entry',
    );
  }
}

/** Stops accepting and waits for open requests; connections still busy at the deadline are cut. */
async function drain(server: Server, deadlineMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // Keep-alive connections become idle once their response is written; close them as they do.
  const sweeper = setInterval(() => server.closeIdleConnections(), 50);
  const deadline = setTimeout(() => server.closeAllConnections(), deadlineMs);
  try {
    server.closeIdleConnections();
    await closed;
  } finally {
    clearInterval(sweeper);
    clearTimeout(deadline);
  }
}

/** The engine's options among the settings: each engine setting is named as the option it sets. */
type EngineSettingKey = Extract<keyof typeof ENGINE_OPTION_SPECS, keyof SidecarConfig>;
function engineSettings(settings: SidecarConfig): Pick<SidecarConfig, EngineSettingKey> {
  const keys = Object.keys(ENGINE_OPTION_SPECS).filter((key) => key in settings) as EngineSettingKey[];
  return Object.fromEntries(keys.map((key) => [key, settings[key]])) as Pick<SidecarConfig, EngineSettingKey>;
}
