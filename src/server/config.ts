import { DEFAULT_MAX_GROUP_ID } from '../ids.js';
import { ENGINE_OPTION_SPECS as ENGINE } from '../engine/options.js';
import { REDIS_TIER_OPTION_SPECS as REDIS } from '../shared-tier/redis/redis-tier-options.js';
import { BATCH_OPTION_SPECS as BATCH } from '../origin/batch-loader.js';
import { HTTP_ORIGIN_OPTION_SPECS as ORIGIN } from '../origin/http-origin.js';
import { ORIGIN_GUARD_OPTION_SPECS as GUARD } from '../resilience/origin-guard.js';
import { PUSH_OPTION_SPECS as PUSH } from '../push/options.js';
import { MULTI_GET_OPTION_SPECS as MULTI } from '../http/multi-get.js';
import { WARM_START_OPTION_SPECS as WARM } from '../engine/warm-start.js';
import { EXISTENCE_FILTER_OPTION_SPECS as FILTER } from '../penetration/existence-filter.js';
import { MISS_BUDGET_OPTION_SPECS as BUDGET } from '../penetration/miss-budget.js';
import {
  ADMIN_TOKEN_MIN_LENGTH,
  isPrintableSecret,
  isRedisUrl,
  OptionError,
  redactUrl,
  type NumberSpec,
} from '../util/options.js';

/** The one configuration schema: environment parsing, the CLI flags and docs/configuration.md's table all come from it. */
export interface Setting<T> {
  readonly env: string;
  /** Default as shown to users; '' means unset. */
  readonly defaultText: string;
  readonly description: string;
  /** What is allowed, for error messages and docs. */
  readonly allowed: string;
  parse(raw: string | undefined): T;
  /** A raw value as an error may show it: secrets are never echoed, credentials in URLs are redacted, long values cut. */
  show(raw: string): string;
}

export class ConfigError extends Error {
  readonly code = 'ERR_INVALID_CONFIG';
  constructor(
    readonly variable: string,
    allowed: string,
    raw: string,
  ) {
    super(`invalid ${variable}=${JSON.stringify(raw)}: expected ${allowed}`);
    this.name = 'ConfigError';
  }
}

/** What a converter returns for a value it rejects (`undefined` can be a valid value). */
const INVALID: unique symbol = Symbol('invalid');

/** Unset or empty gives `fallback`; a value `convert` rejects is reported under the variable's name, as `shown(raw)`. */
function setting<T>(
  env: string,
  fallback: T,
  allowed: string,
  description: string,
  convert: (raw: string) => T | typeof INVALID,
  shown: (raw: string) => string = (raw) => raw,
): Setting<T> {
  return {
    env,
    defaultText: fallback === undefined ? '' : String(fallback),
    description,
    allowed,
    parse(raw) {
      if (raw === undefined || raw === '') return fallback;
      const value = convert(raw);
      if (value === INVALID) throw new ConfigError(env, allowed, shown(raw));
      return value;
    },
    show: shown,
  };
}

function integerIn(min: number, max: number): (raw: string) => number | typeof INVALID {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) return INVALID;
    const value = Number(raw);
    return Number.isSafeInteger(value) && value >= min && value <= max ? value : INVALID;
  };
}

function integer(env: string, fallback: number, min: number, max: number, description: string): Setting<number> {
  return setting(env, fallback, `an integer in [${min}, ${max}]`, description, integerIn(min, max));
}

function optionalInteger(env: string, min: number, max: number, description: string): Setting<number | undefined> {
  const allowed = `an integer in [${min}, ${max}]`;
  return setting<number | undefined>(env, undefined, allowed, description, integerIn(min, max));
}

/** A setting for a component's option: default and range from the component's one declaration. */
function option(env: string, spec: NumberSpec, description: string): Setting<number> {
  if (spec.integer) return integer(env, spec.default, spec.min, spec.max, description);
  return setting(env, spec.default, `a number in [${spec.min}, ${spec.max}]`, description, (raw) => {
    const value = Number(raw);
    return raw.trim() !== '' && Number.isFinite(value) && value >= spec.min && value <= spec.max ? value : INVALID;
  });
}

function oneOf<const T extends string>(
  env: string,
  fallback: T,
  values: readonly T[],
  description: string,
): Setting<T> {
  return setting<T>(env, fallback, `one of ${values.join(', ')}`, description, (raw) =>
    (values as readonly string[]).includes(raw) ? (raw as T) : INVALID,
  );
}

function optionalUrl(
  env: string,
  protocols: readonly string[],
  description: string,
  allowed = `a ${protocols.join(' or ')} URL`,
  valid: (url: URL) => boolean = () => true,
): Setting<string | undefined> {
  const convert = (raw: string) => {
    const url = URL.canParse(raw) ? new URL(raw) : undefined;
    return url !== undefined && protocols.includes(url.protocol) && valid(url) ? raw : INVALID;
  };
  return setting<string | undefined>(env, undefined, allowed, description, convert, redactUrl);
}

const matching = (pattern: RegExp) => (raw: string) => (pattern.test(raw) ? raw : INVALID);

function text(env: string, fallback: string, pattern: RegExp, allowed: string, description: string): Setting<string> {
  return setting(env, fallback, allowed, description, matching(pattern));
}

function optionalText(env: string, pattern: RegExp, allowed: string, description: string): Setting<string | undefined> {
  const cut = (raw: string) => (raw.length > 200 ? `${raw.slice(0, 200)}…` : raw);
  return setting<string | undefined>(env, undefined, allowed, description, matching(pattern), cut);
}

function secret(env: string, minLength: number, description: string): Setting<string | undefined> {
  const allowed = `at least ${minLength} printable ASCII characters`;
  const convert = (raw: string) => (isPrintableSecret(raw, minLength) ? raw : INVALID);
  // Never echoed: it is a secret.
  return setting<string | undefined>(env, undefined, allowed, description, convert, () => '<redacted>');
}

export const SETTINGS = {
  port: integer('PORT', 8080, 0, 65535, 'TCP port the proxy listens on (0 picks a free one).'),
  host: text('HOST', '0.0.0.0', /^[0-9A-Za-z.:[\]-]+$/, 'a host name or IP address', 'Address the proxy binds to.'),
  upstreamUrl: optionalUrl(
    'UPSTREAM_URL',
    ['http:', 'https:'],
    'Base URL of the group-profile service (profiles at `{UPSTREAM_URL}/groups/{id}`). Unset: the built-in mock backend is started in-process, except with NODE_ENV=production (see MOCK_BACKEND).',
  ),
  mockBackend: oneOf(
    'MOCK_BACKEND',
    'auto',
    ['auto', 'on', 'off'],
    'Serve made-up profiles from the built-in mock backend: `auto` does when UPSTREAM_URL is unset and NODE_ENV is not `production`; `on` does always (UPSTREAM_URL must then be unset); `off` never does (UPSTREAM_URL is required).',
  ),
  nodeEnv: optionalText(
    'NODE_ENV',
    /^[A-Za-z0-9_.-]{1,64}$/,
    'a word such as production',
    'With `production` (as in the image), the proxy refuses to start without UPSTREAM_URL unless MOCK_BACKEND=on.',
  ),
  ttlMs: option('TTL_MS', ENGINE.ttlMs, 'Freshness of a cached profile, ms, before jitter.'),
  ttlJitter: option(
    'TTL_JITTER',
    ENGINE.ttlJitter,
    'Uniform TTL jitter as a fraction (0.1 = ±10%), so keys filled together expire apart.',
  ),
  negativeTtlMs: option(
    'NEGATIVE_TTL_MS',
    ENGINE.negativeTtlMs,
    'Freshness of a cached "group does not exist" answer, ms, before jitter.',
  ),
  staleTtlMs: option(
    'STALE_TTL_MS',
    ENGINE.staleTtlMs,
    'After freshness, how long a profile is served at once while one background refresh runs (stale-while-revalidate), ms.',
  ),
  negativeStaleTtlMs: option(
    'NEGATIVE_STALE_TTL_MS',
    ENGINE.negativeStaleTtlMs,
    'The same window for cached "does not exist" answers, ms.',
  ),
  maxStaleMs: option(
    'MAX_STALE_MS',
    ENGINE.maxStaleMs,
    'After freshness, how long a profile is kept to be served when the upstream fails, is too slow or the breaker is open (stale-if-error), ms. At least the stale windows.',
  ),
  softTimeoutMs: option(
    'SOFT_TIMEOUT_MS',
    ENGINE.softTimeoutMs,
    'With a stale copy at hand, how long to wait for the upstream before answering with the copy, ms; the load finishes in the background.',
  ),
  refreshAheadMs: option(
    'REFRESH_AHEAD_MS',
    ENGINE.refreshAheadMs,
    'Refresh-ahead (XFetch): a hit with `left` ms of freshness starts one background refresh with probability e^(-left/s), s being this or the recent upstream load time if longer; a group read r times a second is refreshed about s·ln(r·s) ms before it expires, one refresh for the whole fleet (it takes the lease). Rarely read groups expire as usual. 0 = off.',
  ),
  waitTimeoutMs: option(
    'WAIT_TIMEOUT_MS',
    ENGINE.waitTimeoutMs,
    'Longest a request waits for a load before 504 WAIT_TIMEOUT, ms.',
  ),
  l1MaxEntries: option('L1_MAX_ENTRIES', ENGINE.l1MaxEntries, 'Most profiles kept in process memory.'),
  l1MaxBytes: option(
    'L1_MAX_BYTES',
    ENGINE.l1MaxBytes,
    `Most bytes of process memory for cached profiles (bodies plus ${ENGINE.l1EntryOverheadBytes.default} bytes each).`,
  ),
  upstreamTimeoutMs: option(
    'UPSTREAM_TIMEOUT_MS',
    ORIGIN.timeoutMs,
    'Deadline for one upstream response (headers and body), ms, from when the request has a connection and not counting time the proxy itself was too busy to read the answer; beyond it callers get 504 UPSTREAM_TIMEOUT.',
  ),
  upstreamMaxBodyBytes: option(
    'UPSTREAM_MAX_BODY_BYTES',
    ORIGIN.maxBodyBytes,
    'Largest accepted upstream body; larger answers are a 502.',
  ),
  upstreamConnections: option(
    'UPSTREAM_CONNECTIONS',
    ORIGIN.connections,
    'Keep-alive connections to the upstream at most.',
  ),
  redisUrl: optionalUrl(
    'REDIS_URL',
    ['redis:', 'rediss:'],
    'Standalone Redis for the shared L2 tier (`redis://[user:pass@]host:port[/db]`, `rediss://` for TLS). Unset with REDIS_CLUSTER_NODES unset: L2 is off.',
    'a redis:// or rediss:// URL: host, optional port and database number, no query',
    isRedisUrl,
  ),
  redisClusterNodes: optionalText(
    'REDIS_CLUSTER_NODES',
    /^\s*[^\s,]+:\d{1,5}\s*(,\s*[^\s,]+:\d{1,5}\s*)*$/,
    'a comma-separated list of host:port',
    'Redis Cluster seed nodes for the L2 tier, instead of REDIS_URL.',
  ),
  redisUsername: optionalText(
    'REDIS_USERNAME',
    /^\S{1,256}$/,
    'a user name without spaces',
    'User name for REDIS_CLUSTER_NODES (REDIS_URL carries its own).',
  ),
  redisPassword: secret('REDIS_PASSWORD', 1, 'Password for REDIS_CLUSTER_NODES (REDIS_URL carries its own).'),
  redisPrefix: text(
    'REDIS_PREFIX',
    'gpp:',
    /^[A-Za-z0-9:_.-]{0,64}$/,
    'up to 64 characters of [A-Za-z0-9:_.-]',
    'Prefix of every Redis key (entries, leases, the change feed), so deployments can share one Redis.',
  ),
  redisCommandTimeoutMs: option(
    'REDIS_COMMAND_TIMEOUT_MS',
    REDIS.commandTimeoutMs,
    'Deadline of one Redis command, ms; a slower or dead Redis is skipped, never waited on.',
  ),
  leaseTtlMs: option(
    'LEASE_TTL_MS',
    REDIS.leaseTtlMs,
    'Lifetime of the fleet-wide load lease, ms; if the instance holding it dies, another takes over after this.',
  ),
  leaseWaitMs: option(
    'LEASE_WAIT_MS',
    REDIS.leaseWaitMs,
    "How long an instance waits for another instance's load before loading by itself, ms.",
  ),
  feedShards: optionalInteger(
    'FEED_SHARDS',
    1,
    64,
    'Shards of the change feed (Redis streams in slots of their own, one reader connection each). Unset: 1 on a standalone Redis, 3 on a Cluster. Every instance and producer of a fleet must agree.',
  ),
  feedMaxLen: option(
    'FEED_MAX_LEN',
    REDIS.feedMaxLen,
    'Changes the feed keeps per shard (`XADD … MAXLEN ~`); an instance that falls further behind flushes its L1.',
  ),
  feedMaxLagMs: option(
    'FEED_MAX_LAG_MS',
    ENGINE.feedMaxLagMs,
    'Once the feed has not been read for this long while Redis answers (a dropped or stuck reader), profiles are checked against the shared tier before they are served, ms: the longest a change can go unseen. The reader proves itself alive every min(1000, this / 2) ms.',
  ),
  adminToken: secret(
    'ADMIN_TOKEN',
    ADMIN_TOKEN_MIN_LENGTH,
    'Bearer token for `POST /admin/invalidate`. Unset: the admin routes answer 404.',
  ),
  upstreamBatch: oneOf(
    'UPSTREAM_BATCH',
    'auto',
    ['auto', 'on', 'off'],
    'Batch misses of distinct ids into `GET {UPSTREAM_URL}/groups?ids=1,2,3` calls. `auto`: while the upstream serves that route (the first batch finds out; after a 404, 405, 400, 501 or a non-batch answer, misses go one by one for a minute, then a batch tries again); `on`: always (the upstream must support it); `off`: never.',
  ),
  batchWindowMs: option('BATCH_WINDOW_MS', BATCH.windowMs, 'How long the first miss of a batch waits for others, ms.'),
  batchMaxIds: option('BATCH_MAX_IDS', BATCH.maxKeys, 'Ids per batch call at most; a full batch leaves at once.'),
  upstreamConcurrency: oneOf(
    'UPSTREAM_CONCURRENCY',
    'adaptive',
    ['adaptive', 'fixed'],
    "How many upstream calls may be in progress. `adaptive`: a limit that follows the upstream's latency (grows while calls take about the least time seen, shrinks when they take longer, time out or fail with 5xx), between UPSTREAM_MIN_CONCURRENCY and UPSTREAM_MAX_CONCURRENCY, starting at 20; `fixed`: UPSTREAM_MAX_CONCURRENCY. Further loads queue.",
  ),
  upstreamMinConcurrency: option(
    'UPSTREAM_MIN_CONCURRENCY',
    GUARD.minConcurrency,
    'The adaptive limit never falls below this (at most UPSTREAM_MAX_CONCURRENCY).',
  ),
  upstreamMaxConcurrency: option(
    'UPSTREAM_MAX_CONCURRENCY',
    GUARD.maxConcurrency,
    'Upstream calls in progress at most: the adaptive limit grows no higher (UPSTREAM_CONCURRENCY=fixed: the limit itself). Keep UPSTREAM_CONNECTIONS at least as high.',
  ),
  upstreamMaxQueue: option(
    'UPSTREAM_MAX_QUEUE',
    GUARD.maxQueue,
    'Loads waiting for an upstream slot at most, a memory bound; admission is decided by the expected wait (see UPSTREAM_QUEUE_TIMEOUT_MS) well before it is reached.',
  ),
  upstreamQueueTimeoutMs: option(
    'UPSTREAM_QUEUE_TIMEOUT_MS',
    GUARD.queueTimeoutMs,
    'Longest wait for an upstream slot, ms. A miss whose expected wait (the loads queued ahead of it against the throughput of the current limit at the measured latency) exceeds it is shed at once with 503 OVERLOADED, and so is one still waiting when it runs out.',
  ),
  breakerErrorPercent: option(
    'BREAKER_ERROR_PERCENT',
    GUARD.breakerErrorPercent,
    'The circuit breaker opens when more than this percentage of upstream calls in the window failed (5xx, timeouts, network errors, bad bodies; never 404s).',
  ),
  breakerVolumeThreshold: option(
    'BREAKER_VOLUME_THRESHOLD',
    GUARD.breakerVolumeThreshold,
    'Upstream calls needed in the window before the breaker may open.',
  ),
  breakerWindowMs: option(
    'BREAKER_WINDOW_MS',
    GUARD.breakerWindowMs,
    "Rolling window of the breaker's failure rate, ms.",
  ),
  breakerResetMs: option(
    'BREAKER_RESET_MS',
    GUARD.breakerResetMs,
    'How long the breaker stays open before one half-open probe, ms.',
  ),
  multiGetMaxIds: option(
    'MULTI_GET_MAX_IDS',
    MULTI.maxIds,
    'Ids one multi-get (`GET /groups?ids=1,2,3`) may ask for; more is 400 TOO_MANY_GROUPS.',
  ),
  warmStartCount: option(
    'WARM_START_COUNT',
    WARM.hottest,
    "With Redis: on start, fill process memory with this many of the fleet's hottest groups from Redis (read counts every instance samples into Redis), before listening; no upstream call. 0 = off.",
  ),
  warmStartIdsFile: optionalText(
    'WARM_START_IDS_FILE',
    /^[^\0\n]{1,1024}$/,
    'a file path',
    'A file of group ids (separated by commas, spaces or new lines; `#` starts a comment) loaded on start, before listening: from Redis when there, else from the upstream, in batches under UPSTREAM_MAX_CONCURRENCY. The warm start without Redis.',
  ),
  warmStartTimeoutMs: option(
    'WARM_START_TIMEOUT_MS',
    WARM.timeoutMs,
    'Longest the warm start may delay listening, ms; groups not warm by then load on their first request.',
  ),
  existenceFilter: oneOf(
    'EXISTENCE_FILTER',
    'off',
    ['on', 'off'],
    'A Bloom filter of existing groups against scans of made-up ids (cache penetration), in Redis for the fleet when it is configured, else in memory. It learns every group the upstream returned and every changed group the feed announces. Without UPSTREAM_ID_EXPORT it only observes (metrics).',
  ),
  upstreamIdExport: oneOf(
    'UPSTREAM_ID_EXPORT',
    'off',
    ['on', 'off'],
    'The upstream serves `GET {UPSTREAM_URL}/group-ids` (a paged export of existing ids): with EXISTENCE_FILTER=on the filter is filled from it, and once filled an id it does not hold is answered 404 with no upstream call.',
  ),
  existenceFilterExpectedIds: option(
    'EXISTENCE_FILTER_EXPECTED_IDS',
    FILTER.expectedIds,
    'Groups the existence filter is sized for (10 million take 12 MB at 1 %, in each instance without Redis, once in Redis with it).',
  ),
  existenceFilterFalsePositiveRate: option(
    'EXISTENCE_FILTER_FALSE_POSITIVE_RATE',
    FILTER.falsePositiveRate,
    'Share of made-up ids that still reach the upstream when the filter holds EXISTENCE_FILTER_EXPECTED_IDS groups.',
  ),
  existenceFilterRefreshMs: option(
    'EXISTENCE_FILTER_REFRESH_MS',
    FILTER.refreshMs,
    'How often the filter is rebuilt from the export (once for the fleet with Redis), so deleted groups drop out, ms.',
  ),
  missBudget: oneOf(
    'MISS_BUDGET',
    'off',
    ['on', 'off'],
    "A token bucket per client for requests that would go to the upstream (hits, collapsed waits and stale answers are free); over it, 429 RATE_LIMITED with Retry-After and RateLimit headers. Fleet-wide with Redis. Off by default: a sidecar's one client is its own app; turn it on for a proxy that faces many clients.",
  ),
  missBudgetBurst: option(
    'MISS_BUDGET_BURST',
    BUDGET.burst,
    "Upstream-bound misses a client may make at once (the bucket's size).",
  ),
  missBudgetPerSecond: option(
    'MISS_BUDGET_PER_SECOND',
    BUDGET.perSecond,
    "Misses a second a client's budget refills by.",
  ),
  missBudgetClientHeader: optionalText(
    'MISS_BUDGET_CLIENT_HEADER',
    /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/,
    'a header name',
    "The header naming the client, set by a trusted proxy in front (for X-Forwarded-For, its last element). Unset, or absent from a request: the connection's address.",
  ),
  maxConnections: integer(
    'MAX_CONNECTIONS',
    10_000,
    1,
    1_000_000,
    'Client connections accepted at most (event streams included); more are refused.',
  ),
  pushMaxSubscribers: option(
    'PUSH_MAX_SUBSCRIBERS',
    PUSH.maxSubscribers,
    'Event streams (GET /groups/{id}/events, /events) held at most; more get 503 TOO_MANY_SUBSCRIBERS with Retry-After. Keep it under MAX_CONNECTIONS.',
  ),
  pushMaxGroups: option(
    'PUSH_MAX_GROUPS',
    PUSH.maxGroups,
    'Groups one /events stream may follow; more is 400 TOO_MANY_GROUPS.',
  ),
  pushMaxBufferedBytes: option(
    'PUSH_MAX_BUFFERED_BYTES',
    PUSH.maxBufferedBytes,
    'Bytes a stream may leave unread; past them the client is dropped (it resumes with Last-Event-ID), the others unaffected.',
  ),
  pushHeartbeatMs: option(
    'PUSH_HEARTBEAT_MS',
    PUSH.heartbeatMs,
    'Idle streams get a comment line this often, ms, so proxies and load balancers in between keep them open.',
  ),
  pushRetryMs: option(
    'PUSH_RETRY_MS',
    PUSH.retryMs,
    'The reconnection delay (`retry:`) streams are told when the proxy shuts down, ms.',
  ),
  maxHeaderBytes: integer(
    'MAX_HEADER_BYTES',
    16_384,
    1024,
    1_048_576,
    'Largest request header section; larger requests get 431.',
  ),
  requestTimeoutMs: integer(
    'REQUEST_TIMEOUT_MS',
    30_000,
    100,
    3_600_000,
    'Longest time to receive a whole request from a client, ms; a slower client (slowloris) is disconnected within this plus a tenth of it (at most 1 s more).',
  ),
  stalledWriteTimeoutMs: integer(
    'STALLED_WRITE_TIMEOUT_MS',
    10_000,
    100,
    3_600_000,
    'A connection whose answers have waited this long without the client reading any of them is closed, ms, so clients that never read cannot hold connections (and MAX_CONNECTIONS) forever.',
  ),
  keepAliveTimeoutMs: integer(
    'KEEP_ALIVE_TIMEOUT_MS',
    65_000,
    1,
    3_600_000,
    'How long an idle client keep-alive connection is kept, ms (above typical load-balancer idle timeouts).',
  ),
  shutdownDelayMs: integer(
    'SHUTDOWN_DELAY_MS',
    0,
    0,
    600_000,
    'On SIGTERM, how long /readyz answers 503 before the server stops accepting, ms (set it to a few seconds behind a load balancer).',
  ),
  sMaxAgeSeconds: optionalInteger(
    'S_MAXAGE_SECONDS',
    0,
    31_536_000,
    'Adds `s-maxage=N` to Cache-Control, a freshness lifetime for shared caches (CDNs) in front of the proxy, s. Unset: shared caches use max-age like everyone.',
  ),
  maxGroupId: integer(
    'MAX_GROUP_ID',
    DEFAULT_MAX_GROUP_ID,
    1,
    DEFAULT_MAX_GROUP_ID,
    'Largest valid group id; larger ids are rejected with 400.',
  ),
  shutdownTimeoutMs: integer(
    'SHUTDOWN_TIMEOUT_MS',
    10_000,
    0,
    600_000,
    'On SIGTERM/SIGINT, how long in-flight requests may take to finish, ms.',
  ),
  metricsPort: optionalInteger(
    'METRICS_PORT',
    0,
    65535,
    'Serve `GET /metrics` on this port instead of the main one (0 picks a free one). Unset: on the main port.',
  ),
  gcMetrics: oneOf(
    'GC_METRICS',
    'off',
    ['on', 'off'],
    'Also export `gpp_nodejs_gc_duration_seconds`. Off by default: observing every GC costs about 5% of L1-hit throughput.',
  ),
  addressFile: optionalText(
    'ADDRESS_FILE',
    /^[^\0\n]{1,1024}$/,
    'a file path',
    'Once listening, write the URL the proxy answers on to this file (removed on shutdown); the image sets it for its HEALTHCHECK, so the check follows --port and HOST.',
  ),
  accessLog: oneOf(
    'ACCESS_LOG',
    'off',
    ['on', 'off'],
    'Log one JSON line per request (method, path, status, cache outcome, duration). Off keeps the hot path free of logging.',
  ),
  logLevel: oneOf(
    'LOG_LEVEL',
    'info',
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    'Log level of the JSON logs on stdout.',
  ),
} satisfies Record<string, Setting<unknown>>;

export type SidecarConfig = { -readonly [K in keyof typeof SETTINGS]: ReturnType<(typeof SETTINGS)[K]['parse']> };

/** Settings that were replaced: set, they stop the start rather than be ignored. */
const REPLACED: Readonly<Record<string, string>> = {
  EARLY_REFRESH_MS: 'unset: it was replaced by REFRESH_AHEAD_MS (on by default; 0 turns it off)',
};

/** Parses the whole configuration from `env`; throws a ConfigError naming the first bad variable. */
export function configFromEnv(env: Record<string, string | undefined>): SidecarConfig {
  for (const [variable, allowed] of Object.entries(REPLACED))
    if (env[variable] !== undefined && env[variable] !== '') throw new ConfigError(variable, allowed, env[variable]);
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS)) config[key] = setting.parse(env[setting.env]);
  const parsed = config as SidecarConfig;
  checkConfig(parsed);
  return parsed;
}

/**
 * The configuration from code (`startSidecar(config)`), held to the same rules as the environment before anything
 * starts: an OptionError for an unknown option or a bad value, a ConfigError for a rule between settings.
 */
export function configFromCode(config: Partial<SidecarConfig>): SidecarConfig {
  if (config === null || typeof config !== 'object') throw new OptionError('config', 'an options object', config);
  const settings = configFromEnv({});
  const given = settings as Record<string, unknown>;
  for (const [key, value] of Object.entries(config)) {
    const setting = (SETTINGS as Record<string, Setting<unknown>>)[key];
    if (setting === undefined) throw new OptionError(key, 'an option of startSidecar (a key of SETTINGS)', 'unknown');
    if (value === undefined) continue;
    const expected = `${setting.allowed}, as ${setting.env}`;
    const shown = typeof value === 'string' ? setting.show(value) : value;
    if (typeof value !== 'string' && typeof value !== 'number') throw new OptionError(key, expected, shown);
    let parsed: unknown;
    try {
      parsed = setting.parse(String(value));
    } catch {
      throw new OptionError(key, expected, shown);
    }
    // A number given as a string (or the reverse) is a type error, not a value to convert.
    if (parsed !== value) throw new OptionError(key, expected, shown);
    given[key] = value;
  }
  checkConfig(settings);
  return settings;
}

/** The rules between settings, from the environment or from code; throws a ConfigError naming the setting to change. */
function checkConfig(config: SidecarConfig): void {
  // Before anything starts: a token given from code is held to the same rule as ADMIN_TOKEN.
  if (config.adminToken !== undefined && !isPrintableSecret(config.adminToken, ADMIN_TOKEN_MIN_LENGTH))
    throw new ConfigError('ADMIN_TOKEN', SETTINGS.adminToken.allowed, '<redacted>');
  if (config.maxStaleMs < Math.max(config.staleTtlMs, config.negativeStaleTtlMs))
    throw new ConfigError('MAX_STALE_MS', 'at least STALE_TTL_MS and NEGATIVE_STALE_TTL_MS', String(config.maxStaleMs));
  if (config.upstreamIdExport === 'on' && config.existenceFilter === 'off') {
    throw new ConfigError(
      'UPSTREAM_ID_EXPORT',
      'off unless EXISTENCE_FILTER=on (the export only fills the filter)',
      config.upstreamIdExport,
    );
  }
  if (config.metricsPort !== undefined && config.metricsPort !== 0 && config.metricsPort === config.port) {
    throw new ConfigError(
      'METRICS_PORT',
      'a port other than PORT (or unset: /metrics on the main port)',
      String(config.metricsPort),
    );
  }
  if (config.redisUrl !== undefined && config.redisClusterNodes !== undefined) {
    throw new ConfigError(
      'REDIS_CLUSTER_NODES',
      'to be unset when REDIS_URL is set (choose one)',
      config.redisClusterNodes,
    );
  }
  if (config.mockBackend === 'on' && config.upstreamUrl !== undefined)
    throw new ConfigError('MOCK_BACKEND', 'off or auto when UPSTREAM_URL is set (choose one)', config.mockBackend);
  if (config.upstreamUrl === undefined && config.mockBackend !== 'on') {
    if (config.mockBackend === 'off')
      throw new ConfigError('UPSTREAM_URL', 'the URL of the group-profile service (MOCK_BACKEND=off)', '');
    if (config.nodeEnv === 'production') {
      throw new ConfigError(
        'UPSTREAM_URL',
        "the URL of the group-profile service when NODE_ENV=production; set MOCK_BACKEND=on to serve the built-in mock backend's made-up profiles instead",
        '',
      );
    }
  }
}

/** The configuration with secrets replaced, for the start-up log line. */
export function redactedConfig(config: SidecarConfig): Record<string, unknown> {
  const shown: Record<string, unknown> = { ...config };
  if (config.adminToken !== undefined) shown.adminToken = '<redacted>';
  if (config.redisPassword !== undefined) shown.redisPassword = '<redacted>';
  if (config.redisUrl !== undefined) shown.redisUrl = redactUrl(config.redisUrl);
  if (config.upstreamUrl !== undefined) shown.upstreamUrl = redactUrl(config.upstreamUrl);
  return shown;
}
