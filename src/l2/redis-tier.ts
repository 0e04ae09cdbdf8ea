import { randomUUID } from 'node:crypto';
import { Cluster, Redis, type ClusterNode } from 'ioredis';
import { definedOnly, OptionError, specOption } from '../util/options.js';
import { REDIS_TIER_DEFAULTS, REDIS_TIER_OPTION_SPECS } from './redis-tier-options.js';
import { parseTierEvent, UNAVAILABLE, type SharedLookup, type SharedTier, type TierEvent, type Unavailable } from '../util/shared-tier.js';
import { keyNames, PREFIX_PATTERN, type KeyNames } from './keys.js';
import { EXTEND_LEASE, FILL_IF_LEASED, LOOKUP_OR_LEASE, RELEASE_LEASE } from './scripts.js';

export type RedisClient = Redis | Cluster;

export interface RedisTierOptions {
  /** An existing ioredis client (standalone or Cluster). It is duplicated for pub/sub and never closed by the tier. */
  client?: RedisClient;
  /** `redis://` or `rediss://` URL of a standalone Redis (credentials in the URL). */
  url?: string;
  /** Redis Cluster seed nodes, `host:port`. */
  clusterNodes?: readonly string[];
  /** Credentials for Cluster nodes. */
  username?: string;
  password?: string;
  /** Prefix of every key and of the channel, so deployments can share a Redis. Default `gpp:`. */
  prefix?: string;
  /** Deadline of one Redis command, ms; past it the command counts as failed. Default 50. */
  commandTimeoutMs?: number;
  /** How long a lease protects one load, ms; if its holder dies, another instance takes over after this. Default 3000. */
  leaseTtlMs?: number;
  /** How long an instance waits for another's load before loading by itself, ms. Default 5000. */
  leaseWaitMs?: number;
  /**
   * Notified of the first known state (the first connection or failed attempt, so a Redis
   * unreachable from the start is reported too), then of every change; never twice in a row with
   * the same value, and never after `close()`.
   */
  onHealthChange?: (healthy: boolean, error?: Error) => void;
}

export { REDIS_TIER_DEFAULTS, REDIS_TIER_OPTION_SPECS };

export { UNAVAILABLE, type Unavailable };

/** The change events on the tier's pub/sub channel, as JSON. */
export type BusMessage = TierEvent;

type ScriptClient = RedisClient & {
  gppLookupOrLeaseBuffer(entry: string, lease: string, token: string, leaseMs: number, mode: string): Promise<[number, Buffer | number]>;
  gppFillIfLeased(entry: string, lease: string, token: string, envelope: Buffer, expiryMs: number): Promise<number>;
  gppReleaseLease(entry: string, lease: string, token: string): Promise<number>;
  gppExtendLease(entry: string, lease: string, token: string, leaseMs: number): Promise<number>;
};

/**
 * The shared tier on Redis (standalone or Cluster), best-effort: every
 * command goes through one path with a short deadline, and a failure answers
 * UNAVAILABLE instead of throwing, so a dead Redis degrades the proxy to
 * per-process caching rather than failing requests. ioredis reconnects by
 * itself. Leases are Lua scripts on keys of one hash tag (scripts.ts).
 */
export class RedisTier implements SharedTier {
  readonly instanceId = randomUUID();
  readonly keys: KeyNames;
  readonly leaseTtlMs: number;
  readonly leaseWaitMs: number;
  readonly #client: ScriptClient;
  readonly #subscriber: RedisClient;
  readonly #ownsClient: boolean;
  readonly #commandTimeoutMs: number;
  readonly #listeners = new Set<(event: TierEvent) => void>();
  readonly #onHealthChange: ((healthy: boolean, error?: Error) => void) | undefined;
  /** Undefined until the first connection, failed attempt or command tells: that first state is reported too. */
  #healthy: boolean | undefined;
  #closed = false;
  readonly #detachClient: () => void;
  /** Settles once the first SUBSCRIBE to the channel was confirmed (true) or failed (false). */
  readonly subscribed: Promise<boolean>;

  constructor(options: RedisTierOptions) {
    const o = { ...REDIS_TIER_DEFAULTS, ...definedOnly(options) };
    if (typeof o.prefix !== 'string' || !PREFIX_PATTERN.test(o.prefix)) {
      throw new OptionError('prefix', 'up to 64 characters of [A-Za-z0-9:_.-]', o.prefix);
    }
    const S = REDIS_TIER_OPTION_SPECS;
    this.#commandTimeoutMs = specOption('commandTimeoutMs', o.commandTimeoutMs, S.commandTimeoutMs);
    this.leaseTtlMs = specOption('leaseTtlMs', o.leaseTtlMs, S.leaseTtlMs);
    this.leaseWaitMs = specOption('leaseWaitMs', o.leaseWaitMs, S.leaseWaitMs);
    this.#onHealthChange = o.onHealthChange;
    this.keys = keyNames(o.prefix);

    const sources = [o.client, o.url, o.clusterNodes].filter((v) => v !== undefined).length;
    if (sources !== 1) throw new OptionError('client', 'exactly one of client, url or clusterNodes', sources === 0 ? undefined : 'several');
    let client: RedisClient;
    if (o.client !== undefined) {
      client = o.client;
      this.#ownsClient = false;
    } else {
      this.#ownsClient = true;
      client = o.url !== undefined ? this.#standalone(o.url) : this.#cluster(o.clusterNodes!, o.username, o.password);
    }
    client.defineCommand('gppLookupOrLease', { numberOfKeys: 2, lua: LOOKUP_OR_LEASE });
    client.defineCommand('gppFillIfLeased', { numberOfKeys: 2, lua: FILL_IF_LEASED });
    client.defineCommand('gppReleaseLease', { numberOfKeys: 2, lua: RELEASE_LEASE });
    client.defineCommand('gppExtendLease', { numberOfKeys: 2, lua: EXTEND_LEASE });
    this.#client = client as ScriptClient;
    const onReady = (): void => this.#setHealthy(true);
    const onError = (error: Error): void => this.#setHealthy(false, error);
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

    // The subscriber queues its SUBSCRIBE until connected, however long Redis is down, and
    // resubscribes after reconnects: a proxy started before Redis still gets every later event.
    this.#subscriber =
      client instanceof Cluster
        ? client.duplicate(undefined, { enableOfflineQueue: true, redisOptions: { ...client.options.redisOptions, maxRetriesPerRequest: null } })
        : client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    this.#subscriber.on('error', () => {});
    this.subscribed = this.#subscriber.subscribe(this.keys.channel).then(
      () => true,
      () => false,
    );
    this.#subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.keys.channel) return;
      const message = parseBusMessage(text);
      if (message === undefined || message.from === this.instanceId) return;
      for (const listener of this.#listeners) listener(message);
    });
  }

  /** `ok` when the last command reached Redis and the connection is up. */
  get healthy(): boolean {
    return !this.#closed && this.#healthy !== false && this.#client.status === 'ready';
  }

  onEvent(listener: (event: TierEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  lookupOrLease(key: string, token: string, mode: 'read' | 'force'): Promise<SharedLookup | Unavailable> {
    return this.#run(async () => {
      const [status, payload] = await this.#client.gppLookupOrLeaseBuffer(this.keys.entry(key), this.keys.lease(key), token, this.leaseTtlMs, mode);
      if (status === 1) return { type: 'hit', bytes: payload as Buffer };
      if (status === 2) return { type: 'leased' };
      return { type: 'held', pttlMs: Math.max(0, Number(payload)) };
    });
  }

  /** True when stored; false when the lease was voided (an invalidation) or lost. */
  async fillIfLeased(key: string, token: string, envelope: Buffer, expiryMs: number): Promise<boolean | Unavailable> {
    return this.#run(async () => (await this.#client.gppFillIfLeased(this.keys.entry(key), this.keys.lease(key), token, envelope, Math.max(1, expiryMs))) === 1);
  }

  async releaseLease(key: string, token: string): Promise<void> {
    await this.#run(() => this.#client.gppReleaseLease(this.keys.entry(key), this.keys.lease(key), token));
  }

  /** Keeps a lease alive while its holder loads; a holder that dies stops extending it. */
  async extendLease(key: string, token: string): Promise<void> {
    await this.#run(() => this.#client.gppExtendLease(this.keys.entry(key), this.keys.lease(key), token, this.leaseTtlMs));
  }

  /** Deletes the entries and voids outstanding leases of `keys`. False when Redis could not be reached. */
  async deleteKeys(keys: readonly string[]): Promise<boolean> {
    // One DEL per key: on a Cluster the keys of different groups live in different slots.
    const results = await Promise.all(keys.map((key) => this.#run(() => this.#client.del(this.keys.entry(key), this.keys.lease(key)))));
    return results.every((result) => result !== UNAVAILABLE);
  }

  async publish(message: TierEvent): Promise<boolean> {
    const result = await this.#run(() => this.#client.publish(this.keys.channel, JSON.stringify({ ...message, from: this.instanceId })));
    return result !== UNAVAILABLE;
  }

  /** Raw access for tests and tools: reads the stored bytes of a key's entry. */
  async readEntryBytes(key: string): Promise<Buffer | null | Unavailable> {
    return this.#run(() => this.#client.getBuffer(this.keys.entry(key)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#detachClient();
    this.#listeners.clear();
    this.#subscriber.disconnect();
    if (this.#ownsClient) this.#client.disconnect();
  }

  /** The one path every command takes: a deadline, and UNAVAILABLE instead of an exception. */
  async #run<T>(operation: () => Promise<T>): Promise<T | Unavailable> {
    if (this.#closed || this.#client.status !== 'ready') return UNAVAILABLE;
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

  #setHealthy(healthy: boolean, error?: Error): void {
    // Disconnecting on close is not an outage; repeated failures while down are one report.
    if (this.#closed || healthy === this.#healthy) return;
    this.#healthy = healthy;
    this.#onHealthChange?.(healthy, error);
  }

  #standalone(url: string): Redis {
    if (!/^rediss?:\/\//.test(url)) throw new OptionError('url', 'a redis:// or rediss:// URL', url);
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

/** A message of the channel, or `undefined` for anything that is not a valid change event (see parseTierEvent). */
export function parseBusMessage(text: string): TierEvent | undefined {
  try {
    return parseTierEvent(JSON.parse(text));
  } catch {
    return undefined;
  }
}
