import { Counter, Gauge, Histogram, Registry, collectProcessMetrics } from './prom.js';
import type { EngineStats } from '../engine/engine.js';
import type { EngineObserver } from '../engine/observer.js';
import type { FeedStatus } from '../shared-tier/contract.js';
import type { PushObserver } from '../push/hub.js';
import { SHED_REASONS, type BreakerState } from '../resilience/origin-guard.js';
import { FastHistogram } from './fast-histogram.js';
import type { ExistenceFilterStats } from '../penetration/existence-filter.js';

export interface ProxyMetricsOptions {
  /** Registry to register on. Default: a new Registry (never prom-client's global one). */
  registry?: Registry;
  /** Prefix of every metric name. Default `gpp_`. */
  prefix?: string;
  /** Also collect Node's process metrics (CPU, memory, heap, event-loop lag, handles). Default true. */
  processMetrics?: boolean;
  /**
   * With `processMetrics`, also `nodejs_gc_duration_seconds`. Default false: one JS callback per scavenge
   * (hundreds a second under load) costs about 5% of L1-hit throughput (docs/performance.md, "The hot path").
   */
  gcMetrics?: boolean;
}

/** Point-in-time state read at scrape time. */
export interface GaugeSources {
  engine?: () => EngineStats;
  breaker?: () => BreakerState;
  upstream?: () => { active: number; queued: number; limit: number; minLatencyMs: number | undefined };
  /** With UPSTREAM_BATCH=auto: whether misses go out in batches (undefined: not known yet). */
  batching?: () => boolean | undefined;
  /** The shared tier's change feed (resumes, skipped entries); lag comes from the engine's stats. */
  feed?: () => FeedStatus | undefined;
  /** Event streams held now. */
  pushSubscribers?: () => number;
  /** The existence filter, when there is one. */
  existence?: () => ExistenceFilterStats | undefined;
  /** Miss-budget rejections since start, by reason. */
  budgetRejections?: () => Readonly<Record<string, number>> | undefined;
}

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

/** Upstream call outcome labels. */
export type OriginOutcome = 'ok' | 'not_found' | 'error' | 'timeout' | 'circuit_open' | 'shed';

/** The proxy's Prometheus metrics, named by Prometheus conventions (`_total`, `_seconds`, base units): docs/operations.md. */
export class ProxyMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status' | 'cache'>;
  readonly requestDuration: FastHistogram;
  readonly originCalls: Counter<'kind' | 'outcome'>;
  readonly originDuration: Histogram<'kind'>;
  readonly waitersPerLoad: Histogram;
  readonly loads: Counter<'source'>;
  readonly leaseEvents: Counter<'event'>;
  readonly batchSize: Histogram;
  readonly breakerTransitions: Counter<'state'>;
  readonly lookups: Counter<'tier' | 'result'>;
  readonly changesApplied: Counter<'via'>;
  readonly changePropagation: Histogram;
  readonly feedFlushes: Counter<'reason'>;
  readonly pushEvents: Counter<'type'>;
  readonly pushDrops: Counter<'reason'>;
  readonly pushFanout: Histogram;
  readonly multiGetIds: Counter<'outcome'>;
  readonly shedCalls: Counter<'reason'>;
  readonly #l2Enabled: () => boolean;
  /** L1-hit answers by status, counted as plain numbers and added to the counters at scrape time. */
  readonly #pendingHits = new Float64Array(600);
  #pendingL1Hits = 0;

  constructor(options: ProxyMetricsOptions = {}, sources: GaugeSources = {}) {
    const registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'gpp_';
    const registers = [registry];
    this.registry = registry;
    const counter = <T extends string>(name: string, help: string, labelNames: T[], collect?: () => void): Counter<T> =>
      new Counter({ name: `${p}${name}`, help, labelNames, registers, collect });
    const histogram = <T extends string>(name: string, help: string, buckets: number[], labelNames: T[] = []) =>
      new Histogram<T>({ name: `${p}${name}`, help, labelNames, buckets, registers });
    const flushHits = (): void => {
      const pending = this.#pendingHits;
      for (let status = 0; status < pending.length; status++) {
        if (pending[status] !== 0) {
          this.requests.inc({ route: '/groups/:id', status, cache: 'hit' }, pending[status]);
          pending[status] = 0;
        }
      }
    };
    this.requests = counter(
      'http_requests_total',
      'HTTP requests answered, by route, status and cache outcome (hit, l2-hit, miss, collapsed, stale, stale-if-error, stale-timeout, none).',
      ['route', 'status', 'cache'],
      flushHits,
    );
    this.requestDuration = new FastHistogram(
      `${p}http_request_duration_seconds`,
      'Time to answer an HTTP request.',
      'route',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registry,
    );
    this.multiGetIds = counter(
      'multi_get_ids_total',
      'Ids asked for by multi-gets (GET /groups?ids=), by how each was answered (hit, l2-hit, miss, collapsed, stale, stale-if-error, stale-timeout, error).',
      ['outcome'],
    );
    this.originCalls = counter(
      'origin_calls_total',
      'Calls to the group-profile service, by kind (single, batch) and outcome (ok, not_found, error, timeout, circuit_open, shed).',
      ['kind', 'outcome'],
    );
    this.shedCalls = counter(
      'origin_shed_total',
      'Loads shed with 503 OVERLOADED before reaching the group-profile service, by reason: expected_wait (the calls ahead would not drain within UPSTREAM_QUEUE_TIMEOUT_MS at the current limit), queue_timeout (waited that long), queue_full (UPSTREAM_MAX_QUEUE).',
      ['reason'],
    );
    for (const reason of SHED_REASONS) this.shedCalls.inc({ reason }, 0);
    this.originDuration = histogram(
      'origin_call_duration_seconds',
      'Duration of calls that reached the group-profile service.',
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ['kind'],
    );
    this.waitersPerLoad = histogram(
      'coalesced_waiters',
      'Requests that shared one load that went to the origin: the coalescing (reduction) factor.',
      [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    );
    this.loads = counter(
      'loads_total',
      'Loads run for missing or stale entries, by where the entry came from (origin, l2, fleet = another instance load, error).',
      ['source'],
    );
    this.leaseEvents = counter(
      'lease_events_total',
      'Fleet lease protocol: wait (another instance was loading), takeover (lease taken after waiting), deadline (loaded alone after LEASE_WAIT_MS).',
      ['event'],
    );
    this.batchSize = histogram(
      'batch_size_ids',
      'Ids per batch call to the group-profile service.',
      [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    );
    this.breakerTransitions = counter(
      'breaker_transitions_total',
      'Circuit breaker transitions, by the state entered.',
      ['state'],
    );
    this.lookups = counter(
      'cache_lookups_total',
      'Cache lookups by tier (l1, l2) and result (hit, stale, miss). L2 is looked up on L1 misses only.',
      ['tier', 'result'],
      () => {
        if (this.#pendingL1Hits !== 0) this.lookups.inc({ tier: 'l1', result: 'hit' }, this.#pendingL1Hits);
        this.#pendingL1Hits = 0;
      },
    );
    this.changesApplied = counter(
      'feed_changes_applied_total',
      'Changes from the feed applied here, by how they arrived: live, replay (read after a lost connection), local (appended by this instance).',
      ['via'],
    );
    this.changePropagation = histogram(
      'feed_propagation_seconds',
      'Time from a change being appended to the feed (by another instance or a producer) to this instance having applied it.',
      [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
    );
    this.feedFlushes = counter(
      'feed_flushes_total',
      'L1 flushes because the feed position could not be replayed, by reason: epoch (feed recreated, Redis restarted empty), trimmed (fell behind the retention), joined (the feed became readable only after serving had started).',
      ['reason'],
    );
    this.pushEvents = counter(
      'push_events_total',
      'Events written to subscribers of event streams, by type (profile, resync, deleted, error); one per subscriber reached.',
      ['type'],
    );
    this.pushDrops = counter(
      'push_drops_total',
      'Subscribers dropped, by reason (slow: left more than PUSH_MAX_BUFFERED_BYTES unread).',
      ['reason'],
    );
    this.pushFanout = histogram(
      'push_fanout_seconds',
      'From a change applied here to its event written to the last subscriber of the group (the load included).',
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    );
    // Counters read from their source at scrape time.
    const collectedCounter = (
      name: string,
      help: string,
      labelNames: string[],
      values: () => [Record<string, string>, number][],
    ): void => {
      const metric: Counter = counter(name, help, labelNames, () => {
        metric.reset();
        for (const [labels, value] of values()) metric.inc(labels, value);
      });
    };
    collectedCounter(
      'feed_resumes_total',
      'Times a feed reader resumed from its position after losing its connection.',
      [],
      () => [[{}, sources.feed?.()?.resumes ?? 0]],
    );
    collectedCounter(
      'feed_skipped_entries_total',
      'Feed entries skipped (or with ids dropped) as malformed, by reason: unknown_kind, bad_ids, garbage.',
      ['reason'],
      () => Object.entries(sources.feed?.()?.skipped ?? {}).map(([reason, count]) => [{ reason }, count]),
    );
    collectedCounter(
      'existence_filter_checks_total',
      'Existence-filter checks of misses, by verdict: absent (answered 404, no origin call), maybe (loaded), observed_absent (not authoritative: loaded, though it would have said absent), unavailable (the shared bitmap unreadable: failed open).',
      ['verdict'],
      () => Object.entries(sources.existence?.()?.checks ?? {}).map(([verdict, count]) => [{ verdict }, count]),
    );
    collectedCounter(
      'miss_budget_rejections_total',
      "Requests answered 429 because their client had spent its budget of origin-bound misses, by reason: fleet (the shared bucket), local (this instance's).",
      ['reason'],
      () => Object.entries(sources.budgetRejections?.() ?? {}).map(([reason, count]) => [{ reason }, count]),
    );
    this.#l2Enabled = () => (sources.engine?.().l2 ?? 'disabled') !== 'disabled';
    const gauge = (name: string, help: string, collect: (g: Gauge) => void): void => {
      const metric: Gauge = new Gauge({ name: `${p}${name}`, help, registers, collect: () => collect(metric) });
    };
    gauge('breaker_state', 'Circuit breaker state: 0 closed, 1 half-open, 2 open.', (g) =>
      g.set(BREAKER_VALUE[sources.breaker?.() ?? 'closed']),
    );
    gauge('inflight_loads', 'Loads in progress (one per key at most).', (g) => g.set(sources.engine?.().inFlight ?? 0));
    gauge('l1_entries', 'Entries in the in-process L1 cache.', (g) => g.set(sources.engine?.().l1Entries ?? 0));
    gauge('l1_bytes', 'Bytes accounted to the L1 cache (bodies plus per-entry overhead).', (g) =>
      g.set(sources.engine?.().l1Bytes ?? 0),
    );
    gauge('l1_arena_bytes', 'Memory held for L1 bodies, holes left by replaced bodies included.', (g) =>
      g.set(sources.engine?.().l1ArenaBytes ?? 0),
    );
    gauge('l2_up', 'Shared L2 tier reachable: 1 yes, 0 no, -1 not configured.', (g) => {
      const l2 = sources.engine?.().l2 ?? 'disabled';
      g.set(l2 === 'ok' ? 1 : l2 === 'degraded' ? 0 : -1);
    });
    gauge(
      'feed_lag_seconds',
      'Time since the change feed was last read on every shard (-1 without a shared tier).',
      (g) => {
        const feed = sources.engine?.().feed;
        g.set(feed === undefined ? -1 : feed.lagMs / 1000);
      },
    );
    gauge('feed_lag_entries', 'Changes appended to the feed but not yet read here, as of the last read.', (g) =>
      g.set(sources.engine?.().feed?.lagEntries ?? 0),
    );
    gauge('push_subscribers', 'Event streams (Server-Sent Events) held now.', (g) =>
      g.set(sources.pushSubscribers?.() ?? 0),
    );
    gauge(
      'existence_filter_bytes',
      "Process memory of the existence filter (its bitmap); 0 without one. The fleet's shared bitmap in Redis has the same size.",
      (g) => g.set(sources.existence?.()?.bytes ?? 0),
    );
    gauge('existence_filter_fill_ratio', "Share of the existence filter's bits that are set.", (g) => {
      const stats = sources.existence?.();
      g.set(stats === undefined ? 0 : stats.setBits / stats.bits);
    });
    gauge(
      'existence_filter_false_positive_rate',
      'Estimated chance that an absent id passes the existence filter: fill ratio ^ hashes.',
      (g) => g.set(sources.existence?.()?.estimatedFalsePositiveRate ?? 0),
    );
    gauge(
      'existence_filter_authoritative',
      'Whether the existence filter answers absent ids with 404 (filled from a complete export): 1 yes, 0 observing only, -1 no filter.',
      (g) => {
        const stats = sources.existence?.();
        g.set(stats === undefined ? -1 : stats.authoritative ? 1 : 0);
      },
    );
    gauge('origin_active_calls', 'Calls to the group-profile service in progress.', (g) =>
      g.set(sources.upstream?.().active ?? 0),
    );
    gauge('origin_queued_calls', 'Loads waiting for an upstream slot.', (g) => g.set(sources.upstream?.().queued ?? 0));
    gauge(
      'origin_concurrency_limit',
      'Upstream calls allowed in progress now: the adaptive limit (UPSTREAM_CONCURRENCY=adaptive), or UPSTREAM_MAX_CONCURRENCY.',
      (g) => g.set(sources.upstream?.().limit ?? 0),
    );
    gauge(
      'origin_min_latency_seconds',
      "The upstream's no-load latency the adaptive limit works from (least seen over the last 30-60 s); -1 before a call has ended.",
      (g) => g.set((sources.upstream?.().minLatencyMs ?? -1000) / 1000),
    );
    gauge(
      'origin_batching',
      'Whether misses go out in batch calls: 1 yes, 0 one by one (UPSTREAM_BATCH=off, or auto after the upstream showed no batch route), -1 auto and not known yet.',
      (g) => {
        const batching = sources.batching?.();
        g.set(batching === undefined ? -1 : batching ? 1 : 0);
      },
    );
    if (options.processMetrics ?? true) collectProcessMetrics(registry, p, options.gcMetrics ?? false);
  }

  /** Engine hooks feeding the load, coalescing and lease metrics. */
  readonly engineObserver: EngineObserver = {
    loadSettled: (event) => {
      this.loads.inc({ source: event.source ?? 'error' });
      if (event.source === 'origin') this.waitersPerLoad.observe(Math.max(1, event.waiters));
      if (event.source !== undefined && this.#l2Enabled())
        this.lookups.inc({ tier: 'l2', result: event.source === 'origin' ? 'miss' : 'hit' });
    },
    lease: (event) => this.leaseEvents.inc({ event }),
    changeApplied: ({ change, appliedAt, local }) => {
      this.changesApplied.inc({ via: local ? 'local' : change.replayed ? 'replay' : 'live' });
      if (!local) this.changePropagation.observe(Math.max(0, appliedAt - change.appendedAt) / 1000);
    },
    feedReset: (reason) => this.feedFlushes.inc({ reason }),
  };

  /** Push hub hooks feeding the event, drop and fan-out metrics. */
  readonly pushObserver: PushObserver = {
    pushed: (type, subscribers) => this.pushEvents.inc({ type }, subscribers),
    dropped: (reason) => this.pushDrops.inc({ reason }),
    fanout: (ms) => this.pushFanout.observe(ms / 1000),
  };

  /** Pre-bound recorder for L1 hits: label hashing per request costs more than the rest of a hit. */
  hitRecorder(): (status: number, seconds: number) => void {
    const duration = this.requestDuration.series('/groups/:id');
    const pending = this.#pendingHits;
    return (status, seconds) => {
      pending[status]!++;
      this.#pendingL1Hits++;
      duration(seconds);
    };
  }

  /** Counts the ids of one multi-get by how each was answered. */
  recordMultiGetIds(outcomes: ReadonlyMap<string, number>): void {
    for (const [outcome, count] of outcomes) {
      this.multiGetIds.inc({ outcome }, count);
      // One L1 lookup per id, as the single route counts one per request.
      this.recordL1(outcome, count);
    }
  }

  /** One answered request; a multi-get's (`per-id`) L1 lookups are counted by recordMultiGetIds instead. */
  recordAnswer(route: string, status: number, cache: string, seconds: number, lookups: 'one' | 'per-id' = 'one'): void {
    this.requests.inc({ route, status, cache });
    if (lookups === 'one' && cache !== 'none') this.recordL1(cache);
    this.requestDuration.series(route)(seconds);
  }

  /** `count` L1 lookups of HTTP requests, from their cache outcome. */
  recordL1(outcome: string, count = 1): void {
    const result = outcome === 'hit' ? 'hit' : outcome === 'stale' ? 'stale' : 'miss';
    this.lookups.inc({ tier: 'l1', result }, count);
  }

  recordBreaker(state: BreakerState): void {
    this.breakerTransitions.inc({ state });
  }
}
