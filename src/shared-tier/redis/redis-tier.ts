import { randomUUID } from 'node:crypto';
import { Cluster, Redis, type ClusterNode } from 'ioredis';
import {
  clockOption,
  definedOnly,
  functionOption,
  integerOption,
  isRedisUrl,
  OptionError,
  redactUrl,
  specOption,
} from '../../util/options.js';
import { defaultFeedShards, REDIS_TIER_DEFAULTS, REDIS_TIER_OPTION_SPECS } from './redis-tier-options.js';
import {
  CANONICAL_GROUP_ID,
  checkChange,
  countedReads,
  hottestOf,
  timeOfPosition,
  UNAVAILABLE,
  type Change,
  type FeedChange,
  type FeedPosition,
  type FeedStatus,
  type BitsWriteOptions,
  type LeaseHint,
  type FillResult,
  type SharedLookup,
  type SharedTier,
  type SharedTierOptions,
  type TokenTake,
  type TierEvent,
  type Unavailable,
} from '../contract.js';
import type { Clock } from '../../util/clock.js';
import { keyNames, PREFIX_PATTERN, type KeyNames } from './keys.js';
import { feedShardKeys, shardOfKey, type FeedShardKeys } from './feed-keys.js';
import { changeFields, hintFields } from './feed-entries.js';
import { ShardReader, type FeedConnection, type FeedNotice } from './feed-reader.js';
import {
  DELETE_FOR_CHANGE,
  EXTEND_LEASE,
  FEED_READ,
  FILL_IF_LEASED,
  LOOKUP_OR_LEASE,
  RECORD_READS,
  RELEASE_LEASE,
  SET_BITS,
  TAKE_TOKEN,
  TEST_BITS,
} from './scripts.js';

export type RedisClient = Redis | Cluster;

export interface RedisTierOptions extends SharedTierOptions {
  /** An existing ioredis client (standalone or Cluster). The feed readers get connections of their own; it is never closed by the tier. */
  client?: RedisClient;
  /** `redis://` or `rediss://` URL of a standalone Redis (credentials in the URL). */
  url?: string;
  /** Redis Cluster seed nodes, `host:port`. */
  clusterNodes?: readonly string[];
  /** Credentials for Cluster nodes. */
  username?: string;
  password?: string;
  /** Prefix of every key (entries, leases, the feed), so deployments can share a Redis. Default `gpp:`. */
  prefix?: string;
  /** Deadline of one Redis command, ms; past it the command counts as failed. Default 50. */
  commandTimeoutMs?: number;
  /**
   * Shards of the change feed, each a stream in a slot of its own read on a connection of its own; the same count in
   * every instance and producer of a fleet. Default 1 on a standalone Redis, 3 on a Cluster (one per master).
   */
  feedShards?: number;
  /** Changes the feed keeps per shard (`XADD … MAXLEN ~`); an instance further behind flushes its L1. Default 100000. */
  feedMaxLen?: number;
  /** How long one blocking feed read waits for news, ms; keep it under half the engine's `feedMaxLagMs`. Default 1000. */
  feedBlockMs?: number;
  /** The clock of the feed's lag and deadlines (the engine's clock). Default: the system clock. */
  clock?: Clock;
  /** Told of feed resets, resumes after lost connections, skipped entries and failed reads (for logs). */
  onFeedNotice?: (notice: FeedNotice) => void;
  /**
   * Notified of the first known state (so a Redis unreachable from the start is reported too), then of every change;
   * never twice in a row with the same value, never after `close()`.
   */
  onHealthChange?: (healthy: boolean, error?: Error) => void;
}

export { REDIS_TIER_DEFAULTS, UNAVAILABLE, type Unavailable, type FeedNotice };

/** Retention of the hint stream per shard: hints are only worth something for a moment. */
const HINT_MAX_LEN = 1000;
/** How long a key remembers the last change applied to it, so later appliers of the same change skip the delete. */
const CHANGE_MARKER_MS = 600_000;
const FEED_BATCH = 500;
/** Keys one MGET of `readEntries` asks for at most, so one answer stays well within the command deadline. */
const READ_BATCH = 100;

type LeaseKeys = [entry: string, lease: string, waited: string];

type ScriptClient = RedisClient & {
  gppLookupOrLeaseBuffer(
    ...args: [...LeaseKeys, token: string, leaseMs: number, mode: string]
  ): Promise<[number, Buffer | number]>;
  gppFillIfLeased(...args: [...LeaseKeys, token: string, envelope: Buffer, expiryMs: number]): Promise<number>;
  gppReleaseLease(...args: [...LeaseKeys, token: string]): Promise<number>;
  gppExtendLease(entry: string, lease: string, token: string, leaseMs: number): Promise<number>;
  gppDeleteForChange(entry: string, lease: string, marker: string, position: string, markerMs: number): Promise<number>;
  gppRecordReads(window: string, max: number, expiryMs: number, ...countsAndKeys: (string | number)[]): Promise<number>;
  gppSetBits(bitmap: string, ttlMs: number, onlyIfExists: string, ...positions: number[]): Promise<number>;
  gppTestBits(bitmap: string, ...positions: number[]): Promise<number>;
  gppTakeToken(bucket: string, burst: number, perSecond: number, expiryMs: number): Promise<[number, string]>;
};

/**
 * The shared tier on Redis (standalone or Cluster). Every command takes one path with a short deadline and answers
 * UNAVAILABLE instead of throwing, so a dead Redis degrades the proxy to per-process caching; ioredis reconnects by
 * itself. Leases are Lua scripts on one hash tag (scripts.ts); the feed is sharded Redis Streams (feed-keys.ts), read
 * by one ShardReader per shard while anyone listens (feed-reader.ts).
 */
export class RedisTier implements SharedTier {
  readonly instanceId = randomUUID();
  readonly keys: KeyNames;
  readonly leaseTtlMs: number;
  readonly leaseWaitMs: number;
  readonly #client: ScriptClient;
  readonly #ownsClient: boolean;
  readonly #commandTimeoutMs: number;
  readonly #listeners = new Set<(event: TierEvent) => void>();
  readonly #feed: readonly FeedShardKeys[];
  readonly #feedMaxLen: number;
  readonly #feedBlockMs: number;
  readonly #hotKeysMax: number;
  readonly #hotWindowMs: number;
  readonly #isValidKey: (key: string) => boolean;
  readonly #clock: Clock;
  readonly #onFeedNotice: ((notice: FeedNotice) => void) | undefined;
  #readers: ShardReader[] = [];
  readonly #onHealthChange: ((healthy: boolean, error?: Error) => void) | undefined;
  /** Undefined until the first connection, failed attempt or command tells: that first state is reported too. */
  #healthy: boolean | undefined;
  #closed = false;
  /** Commands sent through the tier's own client, by operation (see roundTrips()). */
  readonly #roundTrips = new Map<string, number>();
  /** The first error Redis answered that reconnecting cannot fix (credentials, database). */
  #refused: RedisRefusedError | undefined;
  readonly #detachClient: () => void;

  constructor(options: RedisTierOptions) {
    const o = { ...REDIS_TIER_DEFAULTS, ...definedOnly(options) };
    if (typeof o.prefix !== 'string' || !PREFIX_PATTERN.test(o.prefix))
      throw new OptionError('prefix', 'up to 64 characters of [A-Za-z0-9:_.-]', o.prefix);
    const S = REDIS_TIER_OPTION_SPECS;
    this.#commandTimeoutMs = specOption('commandTimeoutMs', o.commandTimeoutMs, S.commandTimeoutMs);
    this.leaseTtlMs = specOption('leaseTtlMs', o.leaseTtlMs, S.leaseTtlMs);
    this.leaseWaitMs = specOption('leaseWaitMs', o.leaseWaitMs, S.leaseWaitMs);
    this.#onHealthChange = o.onHealthChange;
    this.keys = keyNames(o.prefix);
    this.#feedMaxLen = specOption('feedMaxLen', o.feedMaxLen, S.feedMaxLen);
    this.#feedBlockMs = specOption('feedBlockMs', o.feedBlockMs, S.feedBlockMs);
    this.#hotKeysMax = specOption('hotKeysMax', o.hotKeysMax, S.hotKeysMax);
    this.#hotWindowMs = specOption('hotWindowMs', o.hotWindowMs, S.hotWindowMs);
    this.#isValidKey =
      o.isValidKey === undefined ? (key) => CANONICAL_GROUP_ID.test(key) : functionOption('isValidKey', o.isValidKey);
    this.#clock = clockOption('clock', o.clock);
    this.#onFeedNotice =
      o.onFeedNotice === undefined
        ? undefined
        : functionOption<(notice: FeedNotice) => void>('onFeedNotice', o.onFeedNotice);

    const sources = [o.client, o.url, o.clusterNodes].filter((v) => v !== undefined).length;
    if (sources !== 1)
      throw new OptionError(
        'client',
        'exactly one of client, url or clusterNodes',
        sources === 0 ? undefined : 'several',
      );
    this.#ownsClient = o.client === undefined;
    const client: RedisClient =
      o.client ??
      (o.url !== undefined ? this.#standalone(o.url) : this.#cluster(o.clusterNodes!, o.username, o.password));
    client.defineCommand('gppLookupOrLease', { numberOfKeys: 3, lua: LOOKUP_OR_LEASE });
    client.defineCommand('gppFillIfLeased', { numberOfKeys: 3, lua: FILL_IF_LEASED });
    client.defineCommand('gppReleaseLease', { numberOfKeys: 3, lua: RELEASE_LEASE });
    client.defineCommand('gppExtendLease', { numberOfKeys: 2, lua: EXTEND_LEASE });
    client.defineCommand('gppDeleteForChange', { numberOfKeys: 3, lua: DELETE_FOR_CHANGE });
    client.defineCommand('gppRecordReads', { numberOfKeys: 1, lua: RECORD_READS });
    client.defineCommand('gppSetBits', { numberOfKeys: 1, lua: SET_BITS });
    client.defineCommand('gppTestBits', { numberOfKeys: 1, lua: TEST_BITS });
    client.defineCommand('gppTakeToken', { numberOfKeys: 1, lua: TAKE_TOKEN });
    const shards = o.feedShards ?? defaultFeedShards(client instanceof Cluster);
    this.#feed = feedShardKeys(o.prefix, integerOption('feedShards', shards, 1, 64));
    this.#client = client as ScriptClient;
    const onReady = (): void => this.#setHealthy(true);
    const onError = (error: Error): void => {
      this.#refused ??= refusal(error);
      this.#setHealthy(false, error);
    };
    const onEnd = (): void => this.#setHealthy(false);
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('end', onEnd);
    // A client passed in, if any, outlives the tier: close() takes these listeners off it.
    this.#detachClient = () => {
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
    };
    // A client that is connected already emits no 'ready': report it once the constructor returned.
    if (client.status === 'ready') {
      queueMicrotask(() => {
        if (this.#healthy === undefined && this.#client.status === 'ready') this.#setHealthy(true);
      });
    }
  }

  /**
   * Waits (at most `timeoutMs`) for the first connection, then throws a RedisRefusedError for what reconnecting cannot
   * fix (credentials, database, Redis < 7.0); resolves when Redis is only unreachable: the tier serves degraded.
   */
  async verifyServer(timeoutMs = 2000): Promise<void> {
    const client = this.#client;
    if (client.status !== 'ready' && this.#refused === undefined) {
      await new Promise<void>((resolve) => {
        const settle = (): void => {
          clearTimeout(timer);
          client.off('ready', settle);
          client.off('error', settle);
          resolve();
        };
        const timer = setTimeout(settle, timeoutMs);
        client.on('ready', settle);
        client.on('error', settle);
      });
    }
    if (this.#refused !== undefined) throw this.#refused;
    if (client.status !== 'ready') return;
    const info = await this.#run('verifyServer', () => client.info('server'));
    if (info === UNAVAILABLE) return;
    const version = /^redis_version:(\d+)\.(\d+)/m.exec(info);
    if (version !== null && Number(version[1]) < MIN_REDIS_MAJOR)
      throw new RedisRefusedError(
        'version',
        `Redis ${version[1]}.${version[2]} is too old: the change feed needs Redis >= ${MIN_REDIS_MAJOR}.0`,
      );
  }

  /** `ok` when the last command reached Redis and the connection is up. */
  get healthy(): boolean {
    return !this.#closed && this.#healthy !== false && this.#client.status === 'ready';
  }

  /** The feed readers start with the first listener. */
  onEvent(listener: (event: TierEvent) => void): () => void {
    this.#listeners.add(listener);
    if (this.#readers.length === 0 && !this.#closed) this.#startReaders();
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once every shard reader has a position (changes appended from then on are delivered). */
  async whenFeedReady(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#readers.length === 0 || this.#readers.some((reader) => reader.position === '')) {
      if (Date.now() > deadline || this.#closed) throw new Error('the feed readers did not start');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  feedLagMs(): number {
    let oldest = Infinity;
    for (const reader of this.#readers) if (reader.lastReadAt < oldest) oldest = reader.lastReadAt;
    return oldest === Infinity ? 0 : this.#clock.now() - oldest;
  }

  feedStatus(): FeedStatus {
    const skipped: Record<string, number> = {};
    let lagMs = 0;
    let lagEntries = 0;
    let resumes = 0;
    const now = this.#clock.now();
    for (const reader of this.#readers) {
      lagMs = Math.max(lagMs, now - reader.lastReadAt);
      lagEntries += reader.lagEntries;
      resumes += reader.resumes;
      for (const [reason, count] of reader.skipped) skipped[reason] = (skipped[reason] ?? 0) + count;
    }
    return { lagMs, lagEntries, skipped, resumes };
  }

  /** The feed's stream keys, in shard order (for producers outside the proxy, and tests). */
  get feedKeys(): readonly FeedShardKeys[] {
    return this.#feed;
  }

  /**
   * Round trips to Redis since start, by operation (a script is one; `feedRead`: the feed readers' reads): the unit
   * in which the miss path's budgets (docs/fleet.md) are stated and tested.
   */
  roundTrips(): Record<string, number> {
    const counts = Object.fromEntries(this.#roundTrips);
    const feedReads = this.#readers.reduce((sum, reader) => sum + reader.reads, 0);
    if (feedReads > 0) counts.feedRead = feedReads;
    return counts;
  }

  shardOf(key: string): number {
    return shardOfKey(key, this.#feed.length);
  }

  feedPositions(): FeedPosition[] {
    return this.#readers.map((reader, shard) => ({ shard, epoch: reader.epoch, position: reader.position }));
  }

  async oldestPosition(shard: number): Promise<string | undefined | Unavailable> {
    const keys = this.#feed[shard];
    if (keys === undefined) return undefined;
    const first = await this.#run('oldestPosition', () => this.#client.xrange(keys.changes, '-', '+', 'COUNT', 1));
    return first === UNAVAILABLE ? UNAVAILABLE : first[0]?.[0];
  }

  lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable> {
    const keys = this.#leaseKeys(key);
    return this.#run('lookupOrLease', async () => {
      const [status, payload] = await this.#client.gppLookupOrLeaseBuffer(...keys, token, this.leaseTtlMs, mode);
      if (status === 1) return { type: 'hit', bytes: payload as Buffer };
      if (status === 2) return { type: 'leased' };
      return { type: 'held', pttlMs: Math.max(0, Number(payload)) };
    });
  }

  async fillIfLeased(key: string, token: string, bytes: Buffer, expiryMs: number): Promise<FillResult | Unavailable> {
    return this.#run('fillIfLeased', async () => {
      const stored = await this.#client.gppFillIfLeased(...this.#leaseKeys(key), token, bytes, Math.max(1, expiryMs));
      return stored === 2 ? 'awaited' : stored === 1 ? 'stored' : 'fenced';
    });
  }

  async releaseLease(key: string, token: string): Promise<boolean> {
    const waited = await this.#run('releaseLease', () => this.#client.gppReleaseLease(...this.#leaseKeys(key), token));
    return waited === 1;
  }

  #leaseKeys(key: string): LeaseKeys {
    return [this.keys.entry(key), this.keys.lease(key), this.keys.waited(key)];
  }

  async extendLease(key: string, token: string): Promise<void> {
    await this.#run('extendLease', () =>
      this.#client.gppExtendLease(this.keys.entry(key), this.keys.lease(key), token, this.leaseTtlMs),
    );
  }

  async deleteKeys(keys: readonly string[], position?: string): Promise<boolean> {
    const k = this.keys;
    // One command per key: on a Cluster the keys of different groups live in different slots.
    const results = await Promise.all(
      keys.map((key) =>
        this.#run('deleteKeys', () =>
          position === undefined
            ? this.#client.del(k.entry(key), k.lease(key))
            : this.#client.gppDeleteForChange(
                k.entry(key),
                k.lease(key),
                k.changeMarker(key),
                position,
                CHANGE_MARKER_MS,
              ),
        ),
      ),
    );
    return results.every((result) => result !== UNAVAILABLE);
  }

  async appendChange(input: Change): Promise<FeedChange[] | Unavailable> {
    const change = checkChange(input, this.#isValidKey);
    const byShard = new Map<number, string[]>();
    for (const id of change.ids) {
      const shard = this.shardOf(id);
      const ids = byShard.get(shard);
      if (ids === undefined) byShard.set(shard, [id]);
      else ids.push(id);
    }
    const parts = await Promise.all(
      [...byShard].map(async ([shard, ids]) => {
        const fields = changeFields({ ...change, ids }, this.instanceId);
        const position = await this.#run('appendChange', () =>
          this.#client.xadd(this.#feed[shard]!.changes, 'MAXLEN', '~', this.#feedMaxLen, '*', ...fields),
        );
        if (position === UNAVAILABLE || position === null) return UNAVAILABLE;
        const appendedAt = timeOfPosition(position);
        return { ...change, ids, shard, position, appendedAt, producer: this.instanceId, replayed: false };
      }),
    );
    return parts.some((part) => part === UNAVAILABLE) ? UNAVAILABLE : (parts as FeedChange[]);
  }

  async hint(hint: LeaseHint): Promise<boolean> {
    const stream = this.#feed[this.shardOf(hint.id)]!.hints;
    const result = await this.#run('hint', () =>
      this.#client.xadd(stream, 'MAXLEN', '~', HINT_MAX_LEN, '*', ...hintFields(hint, this.instanceId)),
    );
    return result !== UNAVAILABLE;
  }

  async recordReads(counts: ReadonlyMap<string, number>): Promise<boolean> {
    if (counts.size === 0) return true;
    const args: (string | number)[] = [];
    for (const [key, reads] of countedReads(counts, this.#isValidKey)) args.push(reads, key);
    if (args.length === 0) return true;
    const window = this.#window();
    const result = await this.#run('recordReads', () =>
      this.#client.gppRecordReads(this.keys.hotReads(window), this.#hotKeysMax, 2 * this.#hotWindowMs, ...args),
    );
    return result !== UNAVAILABLE;
  }

  async hottestKeys(count: number): Promise<string[] | Unavailable> {
    if (count <= 0) return [];
    const window = this.#window();
    const take = Math.min(count, this.#hotKeysMax) - 1;
    const windows = await Promise.all(
      [window, window - 1].map((w) =>
        this.#run('hottestKeys', () => this.#client.zrevrange(this.keys.hotReads(w), 0, take, 'WITHSCORES')),
      ),
    );
    if (windows.some((w) => w === UNAVAILABLE)) return UNAVAILABLE;
    return hottestOf((windows as string[][]).map(pairsOf), count, this.#isValidKey);
  }

  #window(): number {
    return Math.floor(this.#clock.now() / this.#hotWindowMs);
  }

  async readEntries(keys: readonly string[]): Promise<(Buffer | undefined)[] | Unavailable> {
    const chunks: Promise<(Buffer | null)[] | Unavailable>[] = [];
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const names = keys.slice(i, i + READ_BATCH).map((key) => this.keys.entry(key));
      // On a Cluster the keys of different groups live in different slots: one GET each, sent together.
      chunks.push(
        this.#run('readEntries', () =>
          this.#client instanceof Cluster
            ? Promise.all(names.map((name) => this.#client.getBuffer(name)))
            : this.#client.mgetBuffer(...names),
        ),
      );
    }
    const read = await Promise.all(chunks);
    if (read.some((chunk) => chunk === UNAVAILABLE)) return UNAVAILABLE;
    return (read as (Buffer | null)[][]).flat().map((bytes) => bytes ?? undefined);
  }

  async setBits(name: string, positions: readonly number[], options: BitsWriteOptions = {}): Promise<boolean> {
    if (positions.length === 0) return true;
    const ttlMs = Math.max(0, Math.round(options.ttlMs ?? 0));
    return (
      (await this.#run('setBits', () =>
        this.#client.gppSetBits(this.keys.bits(name), ttlMs, options.onlyIfExists === true ? '1' : '0', ...positions),
      )) !== UNAVAILABLE
    );
  }

  async testBits(name: string, positions: readonly number[]): Promise<boolean | 'missing' | Unavailable> {
    const found = await this.#run('testBits', () => this.#client.gppTestBits(this.keys.bits(name), ...positions));
    return found === UNAVAILABLE ? UNAVAILABLE : found === -1 ? 'missing' : found === 1;
  }

  async countBits(name: string): Promise<number | Unavailable> {
    return this.#run('countBits', () => this.#client.bitcount(this.keys.bits(name)));
  }

  async deleteBits(name: string): Promise<boolean> {
    return (await this.#run('deleteBits', () => this.#client.del(this.keys.bits(name)))) !== UNAVAILABLE;
  }

  async readMark(name: string): Promise<string | undefined | Unavailable> {
    const value = await this.#run('readMark', () => this.#client.get(this.keys.mark(name)));
    return value === null ? undefined : value;
  }

  async writeMark(name: string, value: string, ttlMs: number, onlyIfAbsent = false): Promise<boolean> {
    const key = this.keys.mark(name);
    const ms = Math.max(1, Math.round(ttlMs));
    const stored = await this.#run('writeMark', () =>
      onlyIfAbsent ? this.#client.set(key, value, 'PX', ms, 'NX') : this.#client.set(key, value, 'PX', ms),
    );
    return stored === 'OK';
  }

  async takeToken(bucket: string, burst: number, perSecond: number): Promise<TokenTake | Unavailable> {
    // A bucket left alone refills completely in burst / perSecond: it need not outlive that.
    const expiryMs = Math.max(1000, Math.ceil((burst / perSecond) * 1000));
    const answer = await this.#run('takeToken', () =>
      this.#client.gppTakeToken(this.keys.bucket(bucket), burst, perSecond, expiryMs),
    );
    return answer === UNAVAILABLE ? UNAVAILABLE : { allowed: answer[0] === 1, tokens: Number(answer[1]) };
  }

  /** Raw access for tests and tools: reads the stored bytes of a key's entry. */
  async readEntryBytes(key: string): Promise<Buffer | null | Unavailable> {
    return this.#run('readEntryBytes', () => this.#client.getBuffer(this.keys.entry(key)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Our own client's reconnect attempts may still fail once our listeners are off (while the
    // readers stop, too): not worth ioredis' "unhandled error" warning.
    if (this.#ownsClient) this.#client.on('error', () => {});
    this.#detachClient();
    this.#listeners.clear();
    const readers = this.#readers;
    this.#readers = [];
    await Promise.all(readers.map((reader) => reader.stop()));
    if (this.#ownsClient) this.#client.disconnect();
  }

  /** The one path every command takes: a deadline, and UNAVAILABLE instead of an exception. */
  async #run<T>(op: string, operation: () => Promise<T>): Promise<T | Unavailable> {
    if (this.#closed || this.#client.status !== 'ready') return UNAVAILABLE;
    // One command (a script is one) is one round trip: counted per operation for the budgets.
    this.#roundTrips.set(op, (this.#roundTrips.get(op) ?? 0) + 1);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Unavailable>((resolve) => {
      timer = setTimeout(() => resolve(UNAVAILABLE), this.#commandTimeoutMs);
    });
    try {
      const result = await Promise.race([operation(), deadline]);
      if (result !== UNAVAILABLE) this.#setHealthy(true);
      return result;
    } catch (error) {
      this.#setHealthy(false, error instanceof Error ? error : new Error(String(error)));
      return UNAVAILABLE;
    } finally {
      clearTimeout(timer);
    }
  }

  #startReaders(): void {
    const emit = (event: TierEvent): void => {
      for (const listener of this.#listeners) listener(event);
    };
    this.#readers = this.#feed.map(
      (keys) =>
        new ShardReader({
          keys,
          connect: (movedTo) => this.#feedConnection(keys, movedTo),
          instanceId: this.instanceId,
          clock: this.#clock,
          blockMs: this.#feedBlockMs,
          stuckMs: Math.max(1000, this.#commandTimeoutMs),
          batch: FEED_BATCH,
          isValidKey: this.#isValidKey,
          emit,
          notice: this.#onFeedNotice,
          onRead: () => this.#setHealthy(true),
        }),
    );
  }

  /**
   * A connection of its own for one shard's blocking reads (a blocked XREAD holds its connection):
   * on a Cluster, to the master serving the shard's slot. Commands wait while it connects; one
   * interrupted by a lost connection fails rather than being resent, and the reader resumes.
   */
  #feedConnection(keys: FeedShardKeys, movedTo: string | undefined): FeedConnection {
    const client = this.#client;
    const own = {
      connectionName: `gpp-feed:${this.instanceId}`,
      enableOfflineQueue: true,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: undefined,
    };
    let connection: Redis;
    if (client instanceof Cluster) {
      const node = movedTo ?? client.slots[keys.slot]?.[0];
      const match = node === undefined ? null : /^(.*):(\d+)$/.exec(node);
      if (match === null) throw new Error(`no Cluster node known for feed shard ${keys.shard} (slot ${keys.slot}) yet`);
      connection = new Redis({
        ...client.options.redisOptions,
        host: match[1]!,
        port: Number(match[2]),
        ...own,
        retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
      });
    } else {
      connection = client.duplicate(own);
    }
    connection.on('error', () => {}); // reported through the reader's failed reads
    connection.defineCommand('gppFeedRead', { numberOfKeys: 3, lua: FEED_READ });
    return connection as FeedConnection;
  }

  #setHealthy(healthy: boolean, error?: Error): void {
    // Disconnecting on close is not an outage; repeated failures while down are one report.
    if (this.#closed || healthy === this.#healthy) return;
    this.#healthy = healthy;
    this.#onHealthChange?.(healthy, error);
  }

  #standalone(url: string): Redis {
    let valid = false;
    try {
      valid = isRedisUrl(new URL(url));
    } catch {}
    if (!valid) {
      throw new OptionError(
        'url',
        'a redis:// or rediss:// URL: host, optional port and database number, no query',
        redactUrl(url),
      );
    }
    return new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.#commandTimeoutMs,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
    });
  }

  #cluster(seeds: readonly string[], username: string | undefined, password: string | undefined): Cluster {
    const nodes: ClusterNode[] = seeds.map((seed) => {
      const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(seed.trim());
      if (!match) throw new OptionError('clusterNodes', 'host:port entries', seed);
      return { host: match[1]!, port: Number(match[2]) };
    });
    if (nodes.length === 0) throw new OptionError('clusterNodes', 'at least one host:port', '');
    return new Cluster(nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt) => Math.min(100 * attempt, 2000),
      redisOptions: {
        username,
        password,
        commandTimeout: this.#commandTimeoutMs,
        connectTimeout: 2000,
        maxRetriesPerRequest: 0,
      },
    });
  }
}

/** The oldest Redis the tier runs on: the feed reads XINFO STREAM's entries-added (7.0). */
const MIN_REDIS_MAJOR = 7;

/** Redis refused this configuration (credentials, database, version): retrying will not help. */
export class RedisRefusedError extends Error {
  readonly code = 'ERR_REDIS_REFUSED';
  constructor(
    readonly reason: 'credentials' | 'database' | 'version',
    message: string,
  ) {
    super(message);
    this.name = 'RedisRefusedError';
  }
}

/** What an error means if Redis refused the configuration; a Cluster reports it as its last node's error. */
function refusal(error: Error & { lastNodeError?: Error }): RedisRefusedError | undefined {
  const message = error.lastNodeError?.message ?? error.message;
  if (/^(WRONGPASS|NOAUTH|NOPERM)\b|^ERR (AUTH|invalid password|Client sent AUTH)/.test(message)) {
    return new RedisRefusedError('credentials', `Redis refused the credentials: ${message.slice(0, 200)}`);
  }
  if (/^ERR (DB index is out of range|invalid DB index)/.test(message)) {
    return new RedisRefusedError('database', `Redis refused the database: ${message.slice(0, 200)}`);
  }
  return undefined;
}

/** `[member, score, member, score, …]` as ZREVRANGE … WITHSCORES answers, as pairs. */
function pairsOf(flat: readonly string[]): [string, number][] {
  const pairs: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i]!, Number(flat[i + 1])]);
  return pairs;
}
